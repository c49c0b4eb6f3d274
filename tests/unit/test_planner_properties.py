"""The planner over random portfolios (hypothesis): inside every band nothing is done; a plan leaves every band
inside (or names the limit that stopped it); no step takes the health factor below where the plan allows; the same
input gives the same plan; and the cheaper of two instruments wins, until their costs flip."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from policy_support import OWNER, local_policy

from agent.model import AaveAccount, AaveReserve, ChainSnapshot, PriceReading, Snapshot, SwapQuote, Token, TokenBalance
from agent.planner import HedgeState, plan
from agent.planner.bands import band_readings
from agent.planner.costs import CostModel
from agent.planner.deleverage import withdraw_floor
from agent.planner.plan import KNOWN_LIMITS
from agent.policy import Policy
from agent.risk.portfolio import risk_report

WETH = Token("WETH", "0x5FbDB2315678afecb367f032d93F642f64180aa3", 18)
USDC = Token("USDC", "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0", 6)
NOW = 1_800_000_000
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    phases=[Phase.explicit, Phase.generate], database=None)


def policy(bands: str, hedging: str = "{instruments: [aave_borrow, spot_swap], max_slippage_bps: 30, "
           "min_trade_usd: 500}", limits: str = "{max_notional_per_tx_usd: 250000}") -> Policy:
    return local_policy("random", f"""\
bands:
{bands}
hedging: {hedging}
limits: {limits}
""")


def quotes(price: float, depth_usd: float, fee_pips: int = 500) -> tuple[SwapQuote, ...]:
    """QuoterV2-like quotes of a constant-product pool `depth_usd` deep on each side, at 10k and 100k USD."""
    out = []
    for notional in (10_000.0, 100_000.0):
        for token_in, token_out, p_in, p_out in ((WETH, USDC, price, 1.0), (USDC, WETH, 1.0, price)):
            amount_in = round(notional / p_in * 10**token_in.decimals)
            net = notional * (1 - fee_pips / 1e6)
            received_usd = net * depth_usd / (depth_usd + net)
            out.append(SwapQuote("localnet", token_in, token_out, fee_pips, amount_in,
                                 round(received_usd / p_out * 10**token_out.decimals), 120_000))
    return tuple(out)


def reserve(token: Token, price: float, collateral: float = 0.0, debt: float = 0.0, *, borrow_apr: float = 0.03,
            supply_apr: float = 0.01) -> AaveReserve:
    lt, ltv, bonus = (8250, 8000, 10500) if token is WETH else (7800, 7500, 10450)
    return AaveReserve(token, round(collateral * 10**token.decimals), round(debt * 10**token.decimals),
                       round(price * 1e8), ltv, lt, bonus, collateral > 0, variable_borrow_apr=borrow_apr,
                       supply_apr=supply_apr)


def snapshot(reserves: tuple[AaveReserve, ...], price: float, idle: dict[str, float], depth_usd: float = 10e6,
             base_fee_wei: int = 10**9) -> Snapshot:
    account = AaveAccount("localnet", OWNER, reserves)
    balances = tuple(TokenBalance("localnet", OWNER, t, round(idle.get(t.symbol, 0.0) * 10**t.decimals))
                     for t in (USDC, WETH))
    prices = (PriceReading("localnet", "WETH", price, "chainlink:WETH", NOW, 0),
              PriceReading("localnet", "USDC", 1.0, "chainlink:USDC", NOW, 0))
    chain = ChainSnapshot("localnet", 31337, 100, "0x00", NOW, base_fee_wei, (account,), prices, balances,
                          quotes(price, depth_usd), ())
    return Snapshot("random", OWNER, "WETH", (chain,))


def report_of(snap: Snapshot):
    return risk_report(snap.positions, "WETH", {"WETH": snap.chains[0].prices[0].price_usd, "USDC": 1.0}, NOW)


LONG_BANDS = "  health_factor: {min: 1.5, target: 1.8, max: 3.0}\n  delta_usd: {min: -1000000, max: 1000000}"
NEUTRAL_BANDS = "  health_factor: {min: 1.5, target: 1.8, max: 3.0}\n  delta_usd: {min: -5000, target: 0, max: 5000}"


@st.composite
def leveraged_longs(draw: st.DrawFn) -> Snapshot:
    """WETH collateral, USDC debt, some idle USDC: the health factor anywhere from 1.05 to 4."""
    price = draw(st.floats(800, 4000))
    weth = draw(st.floats(5, 300))
    hf = draw(st.floats(1.05, 4.0))
    debt = weth * price * 0.825 / hf
    idle = draw(st.sampled_from([0.0, 0.05, 0.5])) * debt
    return snapshot((reserve(WETH, price, collateral=weth), reserve(USDC, 1.0, debt=debt)), price, {"USDC": idle})


@st.composite
def short_books(draw: st.DrawFn) -> Snapshot:
    """USDC collateral, WETH debt, idle USDC and WETH: delta anywhere in ±60k USD, HF from 1.1 up."""
    price = draw(st.floats(1000, 4000))
    collateral = draw(st.floats(50_000, 400_000))
    hf = draw(st.floats(1.1, 3.5))
    debt_usd = collateral * 0.78 / hf
    idle_weth_usd = debt_usd + draw(st.floats(-60_000, 60_000))
    idle_usdc = draw(st.floats(0, 200_000))
    return snapshot((reserve(WETH, price, debt=debt_usd / price), reserve(USDC, 1.0, collateral=collateral)), price,
                    {"USDC": idle_usdc, "WETH": max(idle_weth_usd, 0.0) / price})


def check_plan(snap: Snapshot, pol: Policy) -> None:
    report = report_of(snap)
    chosen = plan(snap, report, pol, HedgeState())
    readings = band_readings(report, pol)
    if all(r.inside for r in readings):
        assert chosen.empty and chosen.reason.startswith("all bands inside")
        return
    # the same input gives the same plan
    assert plan(snap, report, pol, HedgeState()) == chosen
    assert chosen.predicted is not None
    after = {r.name: r for r in band_readings(chosen.predicted, pol)}
    settled = all(r.inside or (r.name == "health_factor" and r.value > r.max) for r in after.values())
    assert settled or chosen.limited_by in KNOWN_LIMITS, chosen.reason
    assert chosen.limited_by == "" or chosen.limited_by in KNOWN_LIMITS
    # health factor along the way: never below the withdraw floor; repays, swaps and removals never lower it
    start = min(a.health_factor for a in report.accounts)
    floor = min(withdraw_floor(start), pol.bands.health_factor.min) if pol.bands.health_factor else 1.0
    previous = start
    for action in chosen.actions:
        hf = action.predicted_health_factor
        assert hf is not None and hf >= min(floor, start) * (1 - 1e-9), chosen.reason
        if action.kind not in ("withdraw", "borrow"):
            assert hf >= previous * (1 - 1e-12), f"{action.kind} lowered the HF: {chosen.reason}"
        previous = hf
    for action in chosen.actions:
        assert action.reason and action.cost_usd >= -1e-6 and action.notional_usd >= 0
        assert action.notional_usd <= pol.limits.max_notional_per_tx_usd * (1 + 1e-6)


@EXAMPLES
@given(leveraged_longs())
def test_leveraged_long_plans_restore_bands_without_unsafe_steps(snap: Snapshot) -> None:
    check_plan(snap, policy(LONG_BANDS))


@EXAMPLES
@given(short_books())
def test_short_delta_books_plans_restore_bands_without_unsafe_steps(snap: Snapshot) -> None:
    check_plan(snap, policy(NEUTRAL_BANDS))


@settings(max_examples=15, deadline=None)
@given(leveraged_longs(), st.floats(5_000, 40_000))
def test_small_notional_cap_splits_trades_or_names_the_cap(snap: Snapshot, cap: float) -> None:
    check_plan(snap, policy(LONG_BANDS, limits=f"{{max_notional_per_tx_usd: {cap}, max_daily_turnover_usd: 1e9}}"))


def test_inside_every_band_gives_an_empty_plan_with_its_reason() -> None:
    snap = snapshot((reserve(WETH, 2000, collateral=100), reserve(USDC, 1.0, debt=90_000)), 2000, {})
    chosen = plan(snap, report_of(snap), policy(LONG_BANDS))
    assert chosen.empty and chosen.limited_by == ""
    assert chosen.reason == "all bands inside: HF 1.833 in [1.5, 3], delta_usd 200000 in [-1000000, 1000000]"


def test_deleverage_repays_from_idle_funds_first_and_never_withdraws_then() -> None:
    snap = snapshot((reserve(WETH, 1400, collateral=100), reserve(USDC, 1.0, debt=97_000)), 1400,
                    {"USDC": 97_000})
    chosen = plan(snap, report_of(snap), policy(LONG_BANDS))
    assert [a.kind for a in chosen.actions] == ["repay"]
    assert chosen.actions[0].predicted_health_factor == pytest.approx(1.8, abs=1e-6)


def test_deleverage_without_idle_funds_withdraws_swaps_and_repays_in_rounds() -> None:
    snap = snapshot((reserve(WETH, 1300, collateral=100), reserve(USDC, 1.0, debt=97_000)), 1300, {})
    chosen = plan(snap, report_of(snap), policy(LONG_BANDS))
    assert chosen.limited_by == ""
    kinds = [a.kind for a in chosen.actions]
    assert kinds[:3] == ["withdraw", "swap", "repay"] and len(kinds) % 3 == 0 and len(kinds) > 3
    swap = chosen.actions[1]
    assert swap.asset_out == "USDC" and swap.min_amount_out_base_units > 0
    assert chosen.actions[2].amount_base_units == swap.min_amount_out_base_units
    assert chosen.predicted is not None
    assert chosen.predicted.accounts[0].health_factor == pytest.approx(1.8, rel=1e-3)
    assert "HF" in chosen.actions[0].reason and "withdraw" in chosen.actions[0].reason


def test_health_factor_too_close_to_one_for_a_withdrawal_names_the_floor() -> None:
    snap = snapshot((reserve(WETH, 1180, collateral=100), reserve(USDC, 1.0, debt=97_000)), 1180, {})
    chosen = plan(snap, report_of(snap), policy(LONG_BANDS))
    assert chosen.empty and chosen.limited_by == "health_factor_floor"


def test_delta_gap_below_min_trade_trades_the_minimum_when_that_lands_inside_the_band() -> None:
    # delta -300 outside [-200, 200]: a 500 USD trade (the minimum) lands at +200, inside
    snap = snapshot((reserve(WETH, 2000, debt=0.15), reserve(USDC, 1.0, collateral=100_000)), 2000,
                    {"USDC": 50_000})
    chosen = plan(snap, report_of(snap), policy("  delta_usd: {min: -200, target: 0, max: 200}"))
    assert not chosen.empty and chosen.limited_by == ""
    assert chosen.predicted is not None and chosen.predicted.total.delta_usd == pytest.approx(200, abs=1e-3)


def test_delta_gap_that_the_minimum_trade_would_overshoot_names_the_limit() -> None:
    snap = snapshot((reserve(WETH, 2000, debt=0.15), reserve(USDC, 1.0, collateral=100_000)), 2000,
                    {"USDC": 50_000})
    pol = policy("  delta_usd: {min: -200, target: 0, max: 200}",
                 hedging="{instruments: [aave_borrow, spot_swap], min_trade_usd: 1000}")
    chosen = plan(snap, report_of(snap), pol)
    assert chosen.empty and chosen.limited_by == "min_trade_usd"
    assert "limited by min_trade_usd" in chosen.reason


def flip_snapshot(weth_borrow_apr: float, weth_supply_apr: float) -> Snapshot:
    """Long 100 WETH against 40k USDC of debt, delta target 140k: sell about 60k of delta by borrowing WETH or by
    withdrawing WETH collateral; the carry over the horizon is what tells them apart."""
    weth = reserve(WETH, 2000, collateral=100, borrow_apr=weth_borrow_apr, supply_apr=weth_supply_apr)
    return snapshot((weth, reserve(USDC, 1.0, debt=40_000)), 2000, {}, base_fee_wei=10**8)


FLIP_POLICY = "  delta_usd: {min: 130000, target: 140000, max: 150000}"


def test_cheaper_instrument_is_chosen_and_the_choice_flips_when_costs_flip() -> None:
    pol = policy(FLIP_POLICY, limits="{max_notional_per_tx_usd: 250000}")
    pol = pol.model_copy(update={"triggers": pol.triggers.model_copy(update={"max_hedge_age_s": 30 * 86400})})

    # borrowing WETH costs 20%/year, withdrawing collateral forgoes 1%: withdraw and sell
    dear_borrow = flip_snapshot(0.20, 0.01)
    chosen = plan(dear_borrow, report_of(dear_borrow), pol)
    kinds = {(a.kind, a.asset) for a in chosen.actions}
    assert ("withdraw", "WETH") in kinds and ("borrow", "WETH") not in kinds
    assert "spot_swap:withdraw_and_sell" in chosen.actions[0].reason

    # costs flipped: borrowing costs 0.1%, the collateral earns 30%: borrow and sell
    cheap_borrow = flip_snapshot(0.001, 0.30)
    flipped = plan(cheap_borrow, report_of(cheap_borrow), pol)
    kinds = {(a.kind, a.asset) for a in flipped.actions}
    assert ("borrow", "WETH") in kinds and ("withdraw", "WETH") not in kinds
    for result in (chosen, flipped):
        assert result.predicted is not None and 130_000 <= result.predicted.total.delta_usd <= 150_000


def test_quotes_are_reproduced_at_their_sizes_and_interpolated_between() -> None:
    snap = snapshot((reserve(WETH, 2000, collateral=1), reserve(USDC, 1.0, debt=100)), 2000, {})
    costs = CostModel(snap, 86400, {"WETH": 2000.0, "USDC": 1.0})
    for quote in snap.chains[0].quotes:
        estimate = costs.swap("localnet", quote.token_in.symbol, quote.token_out.symbol, quote.amount_in_base_units)
        assert estimate.expected_out_base_units == pytest.approx(quote.amount_out_base_units, rel=1e-9)
    small = costs.swap_cost_rate("localnet", "USDC", "WETH", 10_000)
    mid = costs.swap_cost_rate("localnet", "USDC", "WETH", 50_000)
    large = costs.swap_cost_rate("localnet", "USDC", "WETH", 100_000)
    assert 0.0005 < small < mid < large < 0.02
    # gas: 150k units at 1 gwei and ETH at $2,000 is $0.30
    assert costs.gas_usd("swap", "localnet", 150_000) == pytest.approx(0.30)
    assert costs.carry_usd("WETH", 100_000, "borrow") == pytest.approx(100_000 * 0.03 / 365)


def test_plan_json_fields_are_finite_or_marked() -> None:
    snap = snapshot((reserve(WETH, 1400, collateral=100), reserve(USDC, 1.0, debt=97_000)), 1400, {"USDC": 1e6})
    chosen = plan(snap, report_of(snap), policy(LONG_BANDS))
    assert all(math.isfinite(a.notional_usd) for a in chosen.actions)
    assert dataclasses.asdict(chosen)["limited_by"] == ""
