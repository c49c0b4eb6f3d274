"""Portfolio: desk-unit conventions, one per test, and the accounts' liquidation distances."""

from __future__ import annotations

import math

import pytest

from agent.model import AaveAccount, AaveReserve, LpPosition, OptionPosition, PerpPosition, Token
from agent.risk import lending, lp
from agent.risk.greeks import black_scholes
from agent.risk.portfolio import (
    SECONDS_PER_YEAR,
    account_health,
    position_risk,
    risk_report,
    value_usd,
    years_to_expiry,
)

WETH = Token("WETH", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18)
USDC = Token("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
NOW = 1_700_000_000
PRICES = {"WETH": 2000.0, "USDC": 1.0}
CALL = OptionPosition("ref", "WETH", True, 2200.0, NOW + SECONDS_PER_YEAR // 4, 3.0, 0.6)
RATE = 0.04


def _call_greeks():
    return black_scholes(True, 2000.0, 2200.0, 0.25, 0.6, RATE)


def test_option_delta_usd_is_delta_times_spot_times_quantity():
    risk = position_risk(CALL, "WETH", PRICES, NOW, RATE)
    assert risk.greeks.delta_usd == pytest.approx(float(_call_greeks().delta) * 2000.0 * 3.0, rel=1e-12)


def test_option_value_in_its_risk_is_exactly_its_value_usd():
    # position_risk prices an option once for its mark and its Greeks; the mark must be value_usd's to the bit.
    for option in (CALL, OptionPosition("ref", "WETH", False, 1800.0, NOW + 3600, 2.0, 0.9)):
        assert position_risk(option, "WETH", PRICES, NOW, RATE).value_usd == float(
            value_usd(option, "WETH", PRICES, NOW, rate=RATE))


def test_option_gamma_usd_1pct_is_gamma_times_spot_times_one_percent_of_spot():
    risk = position_risk(CALL, "WETH", PRICES, NOW, RATE)
    assert risk.greeks.gamma_usd_1pct == pytest.approx(float(_call_greeks().gamma) * 2000 * 0.01 * 2000 * 3.0)


def test_option_vega_usd_1vol_is_vega_per_vol_point():
    risk = position_risk(CALL, "WETH", PRICES, NOW, RATE)
    assert risk.greeks.vega_usd_1vol == pytest.approx(float(_call_greeks().vega) / 100 * 3.0)


def test_option_theta_usd_1d_is_theta_per_calendar_day():
    risk = position_risk(CALL, "WETH", PRICES, NOW, RATE)
    assert risk.greeks.theta_usd_1d == pytest.approx(float(_call_greeks().theta) / 365 * 3.0)


def test_option_rho_usd_1pct_is_rho_per_percent_of_rate():
    risk = position_risk(CALL, "WETH", PRICES, NOW, RATE)
    assert risk.greeks.rho_usd_1pct == pytest.approx(float(_call_greeks().rho) / 100 * 3.0)


def test_time_to_expiry_comes_from_the_block_timestamp():
    assert years_to_expiry(NOW + SECONDS_PER_YEAR, NOW) == 1.0
    assert years_to_expiry(NOW - 1, NOW) == 0.0
    expired = position_risk(CALL, "WETH", PRICES, CALL.expiry_ts + 1, RATE)
    assert expired.value_usd == 0.0 and expired.greeks.vega_usd_1vol == 0.0


def test_aave_supply_is_long_delta_and_debt_is_short_delta():
    supply = AaveAccount("l", "0x1", (AaveReserve(WETH, 3 * 10**18, 0, 2000 * 10**8, 8000, 8300, 10500, True),))
    borrow = AaveAccount("l", "0x2", (
        AaveReserve(WETH, 0, 2 * 10**18, 2000 * 10**8, 8000, 8300, 10500, False),
        AaveReserve(USDC, 10_000 * 10**6, 0, 10**8, 7500, 7800, 10450, True),
    ))
    assert position_risk(supply, "WETH", PRICES, NOW).greeks.delta_usd == pytest.approx(6000.0)
    short = position_risk(borrow, "WETH", PRICES, NOW)
    assert short.greeks.delta_usd == pytest.approx(-4000.0)
    assert short.value_usd == pytest.approx(6000.0)


def test_perp_delta_usd_is_notional_and_theta_is_a_day_of_funding():
    perp = PerpPosition("ref", "WETH", -1.5, 1900.0, 500.0, 0.05, 0.00001)
    greeks = position_risk(perp, "WETH", PRICES, NOW).greeks
    assert greeks.delta_usd == -3000.0
    assert greeks.theta_usd_1d == pytest.approx(1.5 * 2000 * 0.00001 * 24)


def _lp(owner: str = "0x3") -> LpPosition:
    lower, upper = sorted(round(math.log(1e12 / p) / math.log(1.0001) / 10) * 10 for p in (1500.0, 2500.0))
    sqrt_price = int(math.sqrt(1e12 / 2000.0) * 2**96)
    return LpPosition("l", owner, 7, USDC, WETH, 500, lower, upper, 10**16, 0, 0, sqrt_price,
                      lp.tick_at_sqrt_ratio(sqrt_price))


def test_lp_is_long_delta_and_short_gamma_in_desk_units():
    position = _lp()
    v = lp.valuation(position, "WETH", 2000.0)
    greeks = position_risk(position, "WETH", PRICES, NOW).greeks
    assert greeks.delta_usd == pytest.approx(float(v.delta_underlying) * 2000.0)
    assert greeks.gamma_usd_1pct == pytest.approx(float(v.gamma_underlying_per_usd) * 2000.0 * 20.0)
    assert greeks.delta_usd > 0 > greeks.gamma_usd_1pct


def _delta_neutral(owner: str = "0x3") -> AaveAccount:
    return AaveAccount("l", owner, (
        AaveReserve(USDC, 30_000 * 10**6, 0, 10**8, 7500, 7800, 10450, True),
        AaveReserve(WETH, 0, 8 * 10**18, 2000 * 10**8, 8000, 8300, 10500, False),
    ))


def test_report_totals_are_the_sum_of_positions_and_distances_come_from_the_accounts():
    perp = PerpPosition("ref", "WETH", 1.0, 2000.0, 500.0, 0.05, 0.0)
    report = risk_report([_delta_neutral(), _lp(), CALL, perp], "WETH", PRICES, NOW, rate=RATE)
    assert report.total.delta_usd == pytest.approx(sum(p.greeks.delta_usd for p in report.positions))
    assert report.value_usd == pytest.approx(sum(p.value_usd for p in report.positions))
    (health,) = report.accounts
    assert health.health_factor_wad == lending.health_factor_wad(_delta_neutral())
    down, up = lending.account_liquidation_shocks(_delta_neutral(), ("WETH",))
    assert down is None and up is not None
    assert report.liquidation_distance_up_pct == pytest.approx((up - 1) * 100, rel=1e-9)
    assert report.liquidation_distance_down_pct == math.inf
    assert health.liquidation_price_usd == pytest.approx(2000.0 * up)


def test_counting_the_same_owners_lp_as_collateral_moves_the_liquidation_distance():
    book = [_delta_neutral(), _lp()]
    without = risk_report(book, "WETH", PRICES, NOW)
    with_lp = risk_report(book, "WETH", PRICES, NOW, lp_counts_as_collateral=True)
    assert with_lp.accounts[0].health_factor > without.accounts[0].health_factor
    assert with_lp.liquidation_distance_up_pct > without.liquidation_distance_up_pct
    # Another owner's LP does not count.
    other = risk_report([_delta_neutral(), _lp(owner="0x9")], "WETH", PRICES, NOW, lp_counts_as_collateral=True)
    assert other.accounts[0].health_factor == without.accounts[0].health_factor


def test_liquidatable_account_has_zero_distance():
    health = account_health(_delta_neutral(), "WETH", 2000.0)
    assert health.distance_down_pct == math.inf
    at_risk = account_health(AaveAccount("l", "0x4", (
        AaveReserve(USDC, 10_000 * 10**6, 0, 10**8, 7500, 7800, 10450, True),
        AaveReserve(WETH, 0, 4 * 10**18, 2000 * 10**8, 8000, 8300, 10500, False),
    )), "WETH", 2000.0)
    assert at_risk.health_factor < 1
    assert at_risk.distance_down_pct == 0.0 == at_risk.distance_up_pct


def test_aave_theta_is_a_day_of_interest():
    account = AaveAccount("l", "0x5", (
        AaveReserve(USDC, 10_000 * 10**6, 0, 10**8, 7500, 7800, 10450, True, supply_apr=0.0365),
        AaveReserve(WETH, 0, 2 * 10**18, 2000 * 10**8, 8000, 8300, 10500, False, variable_borrow_apr=0.073),
    ))
    theta = position_risk(account, "WETH", PRICES, NOW).greeks.theta_usd_1d
    assert theta == pytest.approx((10_000 * 0.0365 - 4000 * 0.073) / 365)
