"""Aave v3 health factor in Aave's integer math, liquidation prices, close factor, liquidation cost, e-mode."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import AaveAccount, AaveReserve, EModeCategory, Token
from agent.risk import crossing, lending

WETH = Token("WETH", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18)
USDC = Token("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
WSTETH = Token("wstETH", "0x7f39C581F595B53c5cb19bD0b3f8dA6c935E2Ca0", 18)


def _weth(coll: float = 10, debt: float = 0, price: int = 2000 * 10**8) -> AaveReserve:
    return AaveReserve(WETH, int(coll * 10**18), int(debt * 10**18), price, 8000, 8300, 10500, True, 1)


def _usdc(coll: float = 5000, debt: float = 12000) -> AaveReserve:
    return AaveReserve(USDC, int(coll * 10**6), int(debt * 10**6), 10**8, 7500, 7800, 10450, True)


DESIGN_EXAMPLE = AaveAccount("localnet", "0x1", (_weth(), _usdc()))


def test_design_example_health_factor_is_exact():
    data = lending.account_data(DESIGN_EXAMPLE)
    assert data.total_collateral_1e8 == 25_000 * 10**8
    assert data.liquidation_threshold_bps == 8200
    assert data.health_factor_wad == 1708333333333333333


def test_weighted_threshold_and_values_are_truncated_like_the_pool():
    # 1 wei of USDC-value dust and an LT mix whose average is not a whole bps.
    account = AaveAccount("l", "0x1", (_weth(coll=1.000000000000000001), _usdc(coll=333.333333, debt=1000)))
    data = lending.account_data(account)
    weth_value = 1_000000000000000001 * 2000 * 10**8 // 10**18
    usdc_value = 333_333333 * 10**8 // 10**6
    collateral = weth_value + usdc_value
    avg = (weth_value * 8300 + usdc_value * 7800) // collateral
    assert data.liquidation_threshold_bps == avg
    assert data.health_factor_wad == ((collateral * avg + 5000) // 10_000 * 10**18 + 1000 * 10**8 // 2) // (
        1000 * 10**8
    )


def test_no_debt_is_the_max_uint_health_factor():
    account = AaveAccount("l", "0x1", (_weth(),))
    assert lending.health_factor_wad(account) == 2**256 - 1
    assert lending.health_factor_float(lending.health_factor_wad(account)) == float("inf")


def test_design_example_closed_form_liquidation_price_is_975_9036():
    assert lending.liquidation_price_estimate_1e8(DESIGN_EXAMPLE, "WETH") / 1e8 == pytest.approx(975.9036, abs=1e-4)


def test_exact_liquidation_price_is_the_integer_boundary_of_the_onchain_health_factor():
    price = lending.liquidation_price_1e8(DESIGN_EXAMPLE, "WETH")
    assert price is not None
    hf_at = lending.health_factor_wad
    assert hf_at(_set_weth(DESIGN_EXAMPLE, price)) < 10**18 <= hf_at(_set_weth(DESIGN_EXAMPLE, price + 1))
    # The truncated weighted threshold (8130 bps instead of 8130.6 there) moves it above the closed form.
    assert price / 1e8 == pytest.approx(976.0148, abs=1e-4)


def _set_weth(account: AaveAccount, price: int) -> AaveAccount:
    return lending.shocked_account(account, ("WETH",), price / account.reserves[0].price_1e8)


accounts = st.builds(
    lambda c, d, u, bd, p: AaveAccount(
        "l", "0x1", (_weth(coll=c, debt=bd, price=p * 10**8), _usdc(coll=u, debt=d))
    ),
    st.floats(0.1, 100),
    st.floats(100, 200_000),
    st.floats(0, 50_000),
    st.sampled_from([0.0, 0.5]),
    st.integers(500, 5000),
)


@settings(max_examples=60, deadline=None)
@given(accounts)
def test_oracle_at_liquidation_price_plus_minus_1e4_lands_on_the_right_side_of_1(account):
    price = lending.liquidation_price_1e8(account, "WETH")
    if price is None:
        return
    below = lending.health_factor_wad(dataclasses.replace(account, reserves=(
        dataclasses.replace(account.reserves[0], price_1e8=int(price * (1 - 1e-4))), account.reserves[1])))
    above = lending.health_factor_wad(dataclasses.replace(account, reserves=(
        dataclasses.replace(account.reserves[0], price_1e8=int(price * (1 + 1e-4)) + 1), account.reserves[1])))
    # One side is liquidatable and the other is not: which one depends on whether WETH is net collateral or debt.
    assert (below < 10**18) != (above < 10**18)
    net_collateral = account.reserves[0].collateral_base_units * 0.83 > account.reserves[0].variable_debt_base_units
    assert (below < 10**18) == net_collateral


@settings(max_examples=60, deadline=None)
@given(accounts, st.floats(0.3, 2.0))
def test_scenario_health_factor_matches_the_integer_one(account, factor):
    exact = lending.health_factor_wad(lending.shocked_account(account, ("WETH",), factor))
    scenario = float(lending.scenario_health_factor(account, ("WETH",), factor))
    assert scenario == pytest.approx(exact / 1e18, rel=1e-8)


def test_short_underlying_account_is_liquidated_in_a_rally():
    account = AaveAccount("l", "0x2", (_weth(coll=0, debt=5), _usdc(coll=20_000, debt=0)))
    price = lending.liquidation_price_1e8(account, "WETH")
    assert price is not None and price > 2000 * 10**8
    down, up = lending.account_liquidation_shocks(account, ("WETH",))
    assert down is None
    assert up == pytest.approx(price / (2000 * 10**8), rel=1e-8)


def test_close_factor_is_half_until_095_then_all():
    assert lending.close_factor_bps(10**18 - 1) == 5000
    assert lending.close_factor_bps(95 * 10**16 + 1) == 5000
    assert lending.close_factor_bps(95 * 10**16) == 10_000


def test_liquidation_repays_half_the_debt_and_costs_the_bonus():
    liq = lending.liquidation(_set_weth(DESIGN_EXAMPLE, 970 * 10**8), "USDC", "WETH")
    assert liq.debt_repaid_base_units == 6000 * 10**6
    # 6,000 USD of WETH at $970 plus the 5% bonus.
    base = 6000 * 10**8 * 10**18 // (970 * 10**8)
    assert liq.collateral_seized_base_units == (base * 10500 + 5000) // 10_000
    assert liq.cost_1e8 == pytest.approx(300 * 10**8, abs=2)


def test_liquidation_is_capped_by_the_collateral_balance():
    account = AaveAccount("l", "0x3", (_weth(coll=1), _usdc(coll=0, debt=3000)))
    liq = lending.liquidation(_set_weth(account, 1000 * 10**8), "USDC", "WETH")
    assert liq.collateral_seized_base_units == 10**18
    assert liq.debt_repaid_base_units == (1000 * 10**6 * 10**4 + 10500 // 2) // 10500


def test_emode_category_threshold_and_price_source_apply_to_its_assets_only():
    emode = EModeCategory(1, 9000, 9300, 10100, price_1e8=2100 * 10**8, price_source_symbol="WETH")
    wsteth = AaveReserve(WSTETH, 10 * 10**18, 0, 2300 * 10**8, 7000, 7500, 10700, True, 1)
    weth_debt = AaveReserve(WETH, 0, 8 * 10**18, 2000 * 10**8, 8000, 8300, 10500, False, 1)
    plain = AaveAccount("l", "0x4", (wsteth, weth_debt))
    in_emode = dataclasses.replace(plain, emode=emode)
    plain_data = lending.account_data(plain)
    emode_data = lending.account_data(in_emode)
    assert plain_data.liquidation_threshold_bps == 7500
    assert emode_data.liquidation_threshold_bps == 9300
    # Both assets are priced by the category's source: 10·2100·0.93 / (8·2100).
    assert emode_data.health_factor_wad == 1_162500000000000000
    assert emode_data.total_collateral_1e8 == 21_000 * 10**8
    # A move of ETH moves collateral and debt together: no liquidation price in e-mode, one without it.
    assert lending.account_liquidation_shocks(in_emode, ("WETH",)) == (None, None)
    assert lending.liquidation_price_1e8(plain, "WETH") is not None


@settings(max_examples=40, deadline=None)
@given(accounts)
def test_closed_form_search_and_general_scan_find_the_same_crossing(account):
    fast = lending.account_liquidation_shocks(account, ("WETH",))
    scanned = crossing.liquidation_shocks(
        lambda f: lending.health_factor_wad(lending.shocked_account(account, ("WETH",), f))
    )
    for a, b in zip(fast, scanned, strict=True):
        if a is None or b is None:
            # The scan only looks within 1%..100x of spot.
            assert b is None and (a is None or not 0.01 <= a <= 100)
        else:
            assert a == pytest.approx(b, rel=1e-9)


_EMODE = EModeCategory(1, 9000, 9300, 10100, price_1e8=2100 * 10**8, price_source_symbol="WETH")


@settings(max_examples=80, deadline=None)
@given(accounts, st.booleans(), st.sampled_from([("WETH",), ("USDC",), ("WETH", "USDC")]), st.floats(1e-9, 50.0))
def test_shocked_health_factor_is_the_integer_health_factor_of_the_shocked_account(account, emode, moved, factor):
    if emode:  # WETH in the category, priced by its source; USDC outside it
        weth = dataclasses.replace(account.reserves[0], emode_category=1)
        account = dataclasses.replace(account, reserves=(weth, account.reserves[1]), emode=_EMODE)
    fast = lending.shocked_health_factor(account, moved)(factor)
    assert fast == lending.health_factor_wad(lending.shocked_account(account, moved, factor))
