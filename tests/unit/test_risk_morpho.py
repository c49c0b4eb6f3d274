"""Morpho Blue risk: health in Morpho's integer math, the exact liquidation price, the incentive factor, and a
Morpho position next to an Aave account in one risk report."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.model import AaveAccount, AaveReserve, MorphoPosition, Scenario, Token
from agent.risk import morpho
from agent.risk.portfolio import risk_report

WETH = Token("WETH", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18)
USDC = Token("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
PRICE_2000 = 2000 * 10**36 * 10**6 // 10**18  # $2,000 per WETH: loan base units per collateral base unit, ×1e36
MARKET = "0x" + "ab" * 32


def position(collateral: int, borrowed: int, price_1e36: int = PRICE_2000, lltv_wad: int = 86 * 10**16,
             shares_per_asset: int = 10**6, total_assets: int = 10**12) -> MorphoPosition:
    """A WETH/USDC position whose debt of `borrowed` assets is held as shares of a market with `total_assets`."""
    return MorphoPosition("localnet", "0x1", "0x2", MARKET, USDC, WETH, "0x3", "0x4", lltv_wad, collateral,
                          borrowed * shares_per_asset, total_assets, total_assets * shares_per_asset, price_1e36)


def test_health_is_max_borrow_over_borrowed_rounded_down():
    # 10 WETH at $2,000 with LLTV 86% may owe 17,200 USDC: owing 10,000 gives 1.72 exactly.
    assert morpho.health_factor_wad(position(10 * 10**18, 10_000 * 10**6)) == 172 * 10**16
    assert morpho.health_factor_wad(position(10 * 10**18, 0)) == morpho.NO_DEBT_HEALTH_FACTOR


def test_borrowed_assets_round_up_as_morpho_rounds_shares():
    # 3 shares of a market with 10 assets and 7 shares: (3·11 + 1e6+7 − 1) // (1e6+7) rounds up to 1 asset.
    p = dataclasses.replace(position(10**18, 0), borrow_shares=3, total_borrow_assets=10, total_borrow_shares=7)
    assert morpho.borrowed_base_units(p) == 1
    # 1e6 + 1 shares of a market with 1e6 assets and 1e12 shares are worth 1.000001 assets: 2, where down gives 1.
    assert morpho.to_assets_up(10**6 + 1, 10**6, 10**12) == 2


def test_liquidation_price_is_where_the_position_stops_being_healthy():
    p = position(10 * 10**18, 10_000 * 10**6)
    price = morpho.liquidation_price_1e36(p)
    assert price is not None
    # $10,000 / (10 · 0.86) = $1,162.79: the boundary is within one oracle unit of it.
    assert price * 10**18 / 10**36 / 10**6 == pytest.approx(10_000 / 8.6, rel=1e-9)
    assert morpho.health_factor_wad(dataclasses.replace(p, oracle_price_1e36=price)) < 10**18
    assert morpho.health_factor_wad(dataclasses.replace(p, oracle_price_1e36=price + 1)) >= 10**18


@given(collateral=st.integers(1, 10**24), borrowed=st.integers(1, 10**13), price=st.integers(1, 10**40),
       lltv=st.sampled_from([77 * 10**16, 86 * 10**16, 915 * 10**15, 945 * 10**15]))
def test_lowest_healthy_price_is_exact(collateral: int, borrowed: int, price: int, lltv: int) -> None:
    p = position(collateral, borrowed, price, lltv, shares_per_asset=10**6 + 7, total_assets=10**13 + 3)
    healthy = morpho.lowest_healthy_price_1e36(p)
    assert healthy is not None
    assert morpho.health_factor_wad(dataclasses.replace(p, oracle_price_1e36=healthy)) >= 10**18
    assert morpho.health_factor_wad(dataclasses.replace(p, oracle_price_1e36=healthy - 1)) < 10**18


def test_incentive_factor_is_morphos_formula_with_its_cap():
    # min(1.15, 1/(0.3·LLTV + 0.7)): LLTV 86% → 1/0.958; 77% → 1/0.931; 50% would be 1/0.85 = 1.176, capped.
    assert morpho.liquidation_incentive_factor_wad(86 * 10**16) == 10**36 // (958 * 10**15)
    assert morpho.liquidation_incentive_factor_wad(77 * 10**16) == 10**36 // (931 * 10**15)
    assert morpho.liquidation_incentive_factor_wad(50 * 10**16) == 115 * 10**16


def test_collateral_fall_or_loan_rise_liquidates():
    p = position(10 * 10**18, 10_000 * 10**6)
    down, up = morpho.account_liquidation_shocks(p, ("WETH",))
    assert up is None and down == pytest.approx(1 / 1.72, rel=1e-9)
    down, up = morpho.account_liquidation_shocks(p, ("USDC",))
    assert down is None and up == pytest.approx(1.72, rel=1e-9)
    assert morpho.account_liquidation_shocks(p, ("WETH", "USDC")) == (None, None)
    assert morpho.account_liquidation_shocks(position(10**18, 1_900 * 10**6), ("WETH",)) == (1.0, 1.0)


def test_scenario_health_scales_with_the_collateral_price():
    p = position(10 * 10**18, 10_000 * 10**6)
    assert morpho.scenario_health_factor(p, ("WETH",), [1.0, 0.5]).tolist() == pytest.approx([1.72, 0.86])
    shocked = morpho.shocked_account(p, ("WETH",), 0.5)
    assert morpho.health_factor_wad(shocked) == 86 * 10**16


def test_risk_report_shows_the_morpho_position_next_to_the_aave_account():
    aave = AaveAccount("localnet", "0x1", (
        AaveReserve(WETH, 10 * 10**18, 0, 2000 * 10**8, 8000, 8250, 10500, True),
        AaveReserve(USDC, 0, 5_000 * 10**6, 10**8, 7500, 7800, 10450, False),
    ))
    book = (aave, position(10 * 10**18, 10_000 * 10**6))

    report = risk_report(book, "WETH", {"WETH": 2000.0, "USDC": 1.0}, 1_700_000_000)

    aave_health, morpho_health = report.accounts
    assert (aave_health.protocol, morpho_health.protocol) == ("aave_v3", "morpho_blue")
    assert morpho_health.market_id == MARKET
    assert aave_health.health_factor == pytest.approx(3.3) and morpho_health.health_factor == 1.72
    assert morpho_health.liquidation_price_usd == pytest.approx(10_000 / 8.6, rel=1e-9)
    assert report.liquidation_distance_down_pct == pytest.approx((1 - 1 / 1.72) * 100, rel=1e-9)
    assert report.liquidation_distance_up_pct == math.inf
    morpho_risk = report.positions[1]
    assert morpho_risk.value_usd == pytest.approx(20_000 - 10_000)
    assert morpho_risk.greeks.delta_usd == pytest.approx(20_000)  # the WETH collateral; the USDC debt has none


def test_morpho_tokens_are_risk_factors_and_its_position_is_stressed_in_every_scenario():
    """The factor view and the joint scenarios (issue 13) cover Morpho positions (issue 15): both tokens are
    factors, and a scenario's health factor is Morpho's own at the moved oracle price, with its liquidation cost."""
    held = position(10 * 10**18, 10_000 * 10**6)  # health 1.72: liquidatable below $1,162.79
    crash = Scenario("WETH -50%", (("WETH", -0.50),))
    usdc_up = Scenario("USDC +10%", (("USDC", 0.10),))

    report = risk_report((held,), "WETH", {"WETH": 2000.0, "USDC": 1.0}, 1_700_000_000, scenarios=(crash, usdc_up))

    assert {f.symbol for f in report.factors} == {"WETH", "USDC"}
    assert report.factor("WETH").delta_usd == pytest.approx(20_000, rel=1e-6)  # type: ignore[union-attr]
    assert report.factor("USDC").delta_usd == pytest.approx(-10_000, rel=1e-6)  # type: ignore[union-attr]
    crashed, risen = (s.accounts[0] for s in report.scenarios)
    assert (crashed.protocol, crashed.market_id) == ("morpho_blue", MARKET)
    assert crashed.health_factor == morpho.health_factor_wad(morpho.shocked_account(held, ("WETH",), 0.5)) / 1e18
    assert crashed.health_factor == pytest.approx(0.86)
    # no close factor: all the debt the collateral can pay with the incentive factor is repaid (here the $10,000 of
    # collateral is less than the $10,000 debt times the factor, so the collateral caps it), the liquidator earning
    # the incentive on it
    incentive = morpho.liquidation_incentive_factor_wad(held.lltv_wad) / 1e18
    assert crashed.liquidated_debt_usd == pytest.approx(10_000 / incentive)
    assert crashed.liquidation_cost_usd == pytest.approx(10_000 / incentive * (incentive - 1))
    assert risen.health_factor == pytest.approx(1.72 / 1.1, rel=1e-6) and risen.liquidation_cost_usd == 0.0
    assert report.scenarios[0].pnl_usd == pytest.approx(-10_000, rel=1e-6)
