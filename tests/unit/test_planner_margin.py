"""Perp margin: a perp whose liquidation price comes within 25% of the underlying's price gets margin until it is 50%
away, from the idle margin token first, then from Aave collateral as far as the health factor stays at its band's
min, else the perp is reduced (limited by no_funds); the prediction includes the deposit."""

from __future__ import annotations

import pytest
from policy_support import OWNER, local_policy

from agent.model import (
    AaveAccount,
    AaveReserve,
    ChainSnapshot,
    PerpMarket,
    PerpPosition,
    PriceReading,
    Snapshot,
    Token,
    TokenBalance,
)
from agent.planner import HedgeState, plan
from agent.planner.margin import MIN_DISTANCE, TARGET_DISTANCE, liquidation_distance, margin_needed_usd
from agent.policy import Policy
from agent.risk.perps import liquidation_price_usd
from agent.risk.portfolio import risk_report

WETH = Token("WETH", "0x5FbDB2315678afecb367f032d93F642f64180aa3", 18)
USDC = Token("USDC", "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0", 6)
NOW = 1_800_000_000
SPOT = 2000.0
VENUE = "local:0x0000000000000000000000000000000000000B0b"


def policy(instruments: str = "[aave_borrow, spot_swap]") -> Policy:
    return local_policy("margin", f"""\
bands:
  health_factor: {{min: 1.5, target: 1.8, max: 3.0}}
hedging: {{instruments: {instruments}, max_slippage_bps: 30, min_trade_usd: 500}}
""")


def short(margin_usd: float) -> PerpPosition:
    """A 10 WETH short entered at 1,500, 5% maintenance: liquidation price (15,000 + margin) / 10.5."""
    return PerpPosition(VENUE, "WETH", -10.0, 1500.0, margin_usd, 0.05, 0.0)


def snapshot(perp: PerpPosition, idle_usdc: float, usdc_collateral: float = 0.0, weth_debt: float = 0.0) -> Snapshot:
    positions: tuple = (perp,)
    if usdc_collateral or weth_debt:
        account = AaveAccount("localnet", OWNER, (
            AaveReserve(WETH, 0, round(weth_debt * 1e18), round(SPOT * 1e8), 8000, 8250, 10500, False),
            AaveReserve(USDC, round(usdc_collateral * 1e6), 0, 10**8, 7500, 7800, 10450, True)))
        positions = (account, perp)
    balances = (TokenBalance("localnet", OWNER, USDC, round(idle_usdc * 1e6)), TokenBalance("localnet", OWNER, WETH, 0))
    prices = (PriceReading("localnet", "WETH", SPOT, "chainlink:WETH", NOW, 0),
              PriceReading("localnet", "USDC", 1.0, "chainlink:USDC", NOW, 0))
    market = PerpMarket("localnet", VENUE, "0x0000000000000000000000000000000000000B0b", "WETH", "USDC", SPOT, 0.0,
                        1e6, 0.0005, 0.0, 0.1, 0.05)
    chain = ChainSnapshot("localnet", 31337, 100, "0x00", NOW, 10**9, positions, prices, balances, (), (), (market,))
    return Snapshot("margin", OWNER, "WETH", (chain,))


def planned(snap: Snapshot, pol: Policy | None = None):
    report = risk_report(snap.positions, "WETH", {"WETH": SPOT, "USDC": 1.0}, NOW)
    return plan(snap, report, pol or policy(), HedgeState())


def test_the_margin_needed_puts_the_liquidation_price_at_the_target_distance() -> None:
    perp = short(5000.0)  # liquidation at 20,000 / 10.5 = 1,904.76: 4.8% below spot, already past for a short
    need = margin_needed_usd(perp, SPOT)
    after = PerpPosition(VENUE, "WETH", -10.0, 1500.0, 5000.0 + need, 0.05, 0.0)
    assert liquidation_price_usd(after) == pytest.approx(SPOT * (1 + TARGET_DISTANCE))
    assert margin_needed_usd(after, SPOT) == pytest.approx(0.0, abs=1e-6)


def test_a_perp_near_liquidation_gets_margin_from_the_idle_balance() -> None:
    # Given: the short's liquidation price 2,380.95 is 19% above spot, 40,000 USDC idle, every band inside
    perp = short(10_000.0)
    assert liquidation_distance(perp, SPOT) < MIN_DISTANCE
    chosen = planned(snapshot(perp, idle_usdc=40_000.0))
    # Then: one deposit of what moves it 50% away, with its reason
    need = margin_needed_usd(perp, SPOT)  # 10 × (3,000 × 1.05 − 1,500) − 10,000 = 6,500
    assert need == pytest.approx(6500.0)
    assert [(a.kind, a.protocol, a.asset) for a in chosen.actions] == [("perp_deposit", "perps", "USDC")]
    assert chosen.actions[0].amount_base_units == 6_500_000_000
    assert "liquidation price 2,380.95" in chosen.actions[0].reason and "50% away" in chosen.actions[0].reason
    assert chosen.limited_by == ""
    # And: the prediction has the new margin (equity 16,500 − 10 × 500)
    perp_risk = next(r for r in chosen.predicted.positions if r.label.startswith("perp:"))
    assert perp_risk.value_usd == pytest.approx(16_500.0 - 5_000.0)


def test_a_perp_far_from_liquidation_gets_nothing() -> None:
    chosen = planned(snapshot(short(20_000.0), idle_usdc=40_000.0))  # liquidation at 3,333: 67% away
    assert chosen.actions == ()


def test_without_idle_funds_usdc_is_withdrawn_from_aave_while_the_health_factor_stays_at_its_min() -> None:
    # Given: no idle USDC, 100,000 USDC collateral against 20 WETH (40,000 USD) debt: HF 1.95
    chosen = planned(snapshot(short(10_000.0), idle_usdc=0.0, usdc_collateral=100_000.0, weth_debt=20.0))
    # Then: withdraw, then deposit the same amount
    assert [a.kind for a in chosen.actions] == ["withdraw", "perp_deposit"]
    withdraw, deposit = chosen.actions
    assert withdraw.asset == "USDC" and withdraw.amount_base_units == deposit.amount_base_units == 6_500_000_000
    assert withdraw.predicted_health_factor == pytest.approx(93_500 * 0.78 / 40_000, rel=1e-6)
    assert withdraw.predicted_health_factor >= 1.5 and chosen.limited_by == ""


def test_with_too_little_health_factor_room_the_withdrawal_stops_at_the_min_and_the_plan_says_so() -> None:
    # Given: HF 1.56, so only about 3,000 USDC can leave Aave before HF 1.5
    chosen = planned(snapshot(short(10_000.0), idle_usdc=0.0, usdc_collateral=80_000.0, weth_debt=20.0))
    withdraw, deposit = chosen.actions
    assert withdraw.amount_base_units == deposit.amount_base_units < 6_500_000_000
    assert withdraw.predicted_health_factor == pytest.approx(1.5, abs=1e-4)
    assert chosen.limited_by == "no_funds"


def test_with_too_little_funds_and_perps_allowed_the_perp_is_reduced() -> None:
    perp = short(10_000.0)
    chosen = planned(snapshot(perp, idle_usdc=1_000.0), policy("[perp, aave_borrow, spot_swap]"))
    assert [a.kind for a in chosen.actions] == ["perp_deposit", "perp"]
    reduce = chosen.actions[1]
    assert 0 < reduce.amount_base_units < 10 * 10**18  # a buy: part of the short
    assert "reduce the perp" in reduce.reason and chosen.limited_by == "no_funds"
