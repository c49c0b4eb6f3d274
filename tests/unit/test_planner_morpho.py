"""The planner on a cross-protocol book: a breached Morpho position is deleveraged (from the idle loan token, or
atomically through a free Morpho flash loan), a healthy Aave account next to it is left alone, and the other way
round."""

from __future__ import annotations

import dataclasses

import pytest
from policy_support import OWNER, local_policy
from test_planner_flash import in_a_safe
from test_planner_properties import NOW, USDC, WETH, quotes, reserve

from agent.model import AaveAccount, ChainSnapshot, MorphoPosition, PriceReading, Snapshot, TokenBalance
from agent.planner import HedgeState, plan
from agent.planner.book import Book
from agent.planner.costs import CostModel
from agent.planner.morpho import plan_morpho_deleverage
from agent.risk import morpho
from agent.risk.portfolio import risk_report

MARKET = "0x" + "cd" * 32
POLICY = local_policy("cross", """\
bands:
  health_factor: {min: 1.5, target: 1.8, max: 3.0}
hedging: {instruments: [aave_borrow, spot_swap], max_slippage_bps: 30, min_trade_usd: 500}
""")


def morpho_position(price: float, weth: float, debt_usdc: float, liquidity_usdc: float = 10e6) -> MorphoPosition:
    shares = round(debt_usdc * 1e6) * 10**6
    return MorphoPosition("localnet", OWNER, "0x0000000000000000000000000000000000000B1e", MARKET, USDC, WETH,
                          "0x01", "0x02", 86 * 10**16, round(weth * 1e18), shares, 10**13, 10**19,
                          round(price * 10**24), round(liquidity_usdc * 1e6))


def book_snapshot(price: float, aave_hf: float, morpho_hf: float, idle_usdc: float) -> Snapshot:
    aave = AaveAccount("localnet", OWNER, (reserve(WETH, price, collateral=50),
                                           reserve(USDC, 1.0, debt=50 * price * 0.825 / aave_hf)))
    position = morpho_position(price, 50, 50 * price * 0.86 / morpho_hf)
    balances = (TokenBalance("localnet", OWNER, USDC, round(idle_usdc * 1e6)), TokenBalance("localnet", OWNER, WETH, 0))
    prices = (PriceReading("localnet", "WETH", price, "chainlink:WETH", NOW, 0),
              PriceReading("localnet", "USDC", 1.0, "chainlink:USDC", NOW, 0))
    chain = ChainSnapshot("localnet", 31337, 100, "0x00", NOW, 10**9, (aave, position), prices, balances,
                          quotes(price, 50e6), ())
    return Snapshot("cross", OWNER, "WETH", (chain,))


def report(snap: Snapshot):
    return risk_report(snap.positions, "WETH", {"WETH": snap.chains[0].prices[0].price_usd, "USDC": 1.0}, NOW)


def test_a_breached_morpho_position_is_repaid_from_idle_funds_and_aave_is_left_alone():
    snap = book_snapshot(1700.0, aave_hf=1.9, morpho_hf=1.36, idle_usdc=80_000)

    chosen = plan(snap, report(snap), POLICY, HedgeState())

    assert [(a.kind, a.protocol) for a in chosen.actions] == [("repay", "morpho_blue")]
    (aave_after, morpho_after) = chosen.predicted.accounts
    assert morpho_after.protocol == "morpho_blue"
    assert morpho_after.health_factor == pytest.approx(1.8, abs=1e-6)
    assert aave_after.health_factor == pytest.approx(1.9, rel=1e-6)
    assert chosen.actions[0].predicted_health_factor == pytest.approx(1.8, abs=1e-6)


def test_a_breached_aave_account_is_deleveraged_and_a_healthy_morpho_position_is_left_alone():
    snap = book_snapshot(1700.0, aave_hf=1.3, morpho_hf=2.0, idle_usdc=80_000)

    chosen = plan(snap, report(snap), POLICY, HedgeState())

    assert {a.protocol for a in chosen.actions} == {"aave_v3"}
    aave_after, morpho_after = chosen.predicted.accounts
    assert aave_after.health_factor == pytest.approx(1.8, abs=1e-3)
    assert morpho_after.health_factor == pytest.approx(2.0, rel=1e-6)


def test_without_idle_funds_a_safe_uses_a_free_morpho_flash_loan():
    snap = book_snapshot(1700.0, aave_hf=1.9, morpho_hf=1.36, idle_usdc=0)
    book, costs = Book.from_snapshot(snap), CostModel(snap, 86_400, {"WETH": 1700.0, "USDC": 1.0})

    outcome = plan_morpho_deleverage(book, costs, in_a_safe(POLICY), 1.8, 1.5)

    kinds = [(a.kind, a.protocol) for a in outcome.actions]
    assert kinds == [("flash_loan", "morpho_blue"), ("repay", "morpho_blue"), ("withdraw", "morpho_blue"),
                     ("swap", "uniswap_v3"), ("flash_repay", "morpho_blue")]
    loan, _repay, _withdraw, swap, repaid = outcome.actions
    assert loan.cost_usd == costs.gas_usd("flash_loan", "localnet")  # gas only: no premium
    assert swap.min_amount_out_base_units >= repaid.amount_base_units == loan.amount_base_units
    (after,) = (p for p in outcome.book.others if isinstance(p, MorphoPosition))
    assert morpho.health_factor_wad(after) >= 18 * 10**17
    assert morpho.health_factor_wad(after) < 1801 * 10**15  # the least loan that reaches the target
    assert outcome.limited_by == ""


def test_an_aave_flash_loan_only_when_morpho_cannot_lend_enough():
    snap = book_snapshot(1700.0, aave_hf=1.9, morpho_hf=1.36, idle_usdc=0)
    chain = snap.chains[0]
    dry = tuple(dataclasses.replace(p, flash_liquidity_base_units=10**6) if isinstance(p, MorphoPosition) else p
                for p in chain.positions)
    snap = dataclasses.replace(snap, chains=(dataclasses.replace(chain, positions=dry),))
    book, costs = Book.from_snapshot(snap), CostModel(snap, 86_400, {"WETH": 1700.0, "USDC": 1.0})
    costs.flash_premium_bps["localnet"] = 5  # the Aave pool's, as the adapter reads it

    outcome = plan_morpho_deleverage(book, costs, in_a_safe(POLICY), 1.8, 1.5)

    loan, *_, repaid = outcome.actions
    assert (loan.kind, loan.protocol) == ("flash_loan", "aave_v3")
    assert repaid.amount_base_units == loan.amount_base_units + (loan.amount_base_units * 5 + 5_000) // 10_000


def test_a_plain_account_without_funds_gets_no_flash_loan_and_the_plan_names_the_limit():
    snap = book_snapshot(1700.0, aave_hf=1.9, morpho_hf=1.36, idle_usdc=0)

    chosen = plan(snap, report(snap), POLICY, HedgeState())

    assert chosen.actions == () and chosen.limited_by == "no_funds"


def test_an_aave_deleverage_in_a_safe_borrows_from_morpho_for_free():
    snap = book_snapshot(1700.0, aave_hf=1.03, morpho_hf=2.0, idle_usdc=0)
    chain = snap.chains[0]
    priced = tuple(dataclasses.replace(p, flash_loan_premium_bps=5) if isinstance(p, AaveAccount) else p
                   for p in chain.positions)
    snap = dataclasses.replace(snap, chains=(dataclasses.replace(chain, positions=priced),))

    chosen = plan(snap, report(snap), in_a_safe(POLICY), HedgeState())

    loans = [a for a in chosen.actions if a.kind in ("flash_loan", "flash_repay")]
    assert [(a.kind, a.protocol) for a in loans] == [("flash_loan", "morpho_blue"), ("flash_repay", "morpho_blue")]
    assert loans[0].amount_base_units == loans[1].amount_base_units  # no premium
    assert {a.protocol for a in chosen.actions if a.kind in ("repay", "withdraw")} == {"aave_v3"}
    aave_after, morpho_after = chosen.predicted.accounts
    assert aave_after.health_factor == pytest.approx(1.8, abs=0.01)
    assert morpho_after.health_factor == pytest.approx(2.0, rel=1e-6)
