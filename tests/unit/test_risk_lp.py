"""Uniswap v3: exact tick math and amounts, and value, delta and gamma of a range position in USD."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import LpPosition, Token
from agent.risk import lp

USDC = Token("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
WETH = Token("WETH", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18)
WETH_LOW = Token("WETH", "0x0000000000000000000000000000000000000001", 18)  # same token, sorting below USDC

ticks = st.integers(lp.MIN_TICK, lp.MAX_TICK)


@pytest.mark.parametrize(
    "tick,expected",
    [
        (0, 2**96),
        (lp.MIN_TICK, lp.MIN_SQRT_RATIO),
        (lp.MAX_TICK, lp.MAX_SQRT_RATIO),
        (lp.MIN_TICK + 1, 4295343490),
        (lp.MAX_TICK - 1, 1461373636630004318706518188784493106690254656249),
        (50, 79426470787362580746886972461),
        (-250000, 295440463448801648376846),
        (150000, 143194173941309278083010301478497),
        (500000, 5697689776495288729098254600827762987878),
    ],
)
def test_sqrt_ratio_at_tick_matches_uniswap_published_values(tick, expected):
    assert lp.sqrt_ratio_at_tick(tick) == expected


def test_tick_at_sqrt_ratio_matches_uniswap_published_edges():
    assert lp.tick_at_sqrt_ratio(lp.MIN_SQRT_RATIO) == lp.MIN_TICK
    assert lp.tick_at_sqrt_ratio(4295343490) == lp.MIN_TICK + 1
    assert lp.tick_at_sqrt_ratio(lp.MAX_SQRT_RATIO - 1) == lp.MAX_TICK - 1
    with pytest.raises(ValueError):
        lp.tick_at_sqrt_ratio(lp.MIN_SQRT_RATIO - 1)
    with pytest.raises(ValueError):
        lp.sqrt_ratio_at_tick(lp.MAX_TICK + 1)


@settings(max_examples=200, deadline=None)
@given(ticks)
def test_tick_math_is_a_consistent_inverse_and_close_to_the_real_power(tick):
    ratio = lp.sqrt_ratio_at_tick(tick)
    if tick < lp.MAX_TICK:
        assert lp.tick_at_sqrt_ratio(ratio) == tick
    if tick > lp.MIN_TICK:
        assert lp.tick_at_sqrt_ratio(ratio - 1) == tick - 1
    assert ratio / 2**96 == pytest.approx(math.exp(tick * math.log(1.0001) / 2), rel=1e-10)


@settings(max_examples=200, deadline=None)
@given(ticks, ticks, st.integers(1, 2**128 - 1))
def test_amounts_are_the_closed_forms_rounded_the_way_the_pool_rounds(t1, t2, liquidity):
    a, b = sorted((lp.sqrt_ratio_at_tick(t1), lp.sqrt_ratio_at_tick(t2)))
    exact0 = Fraction(liquidity * 2**96 * (b - a), a * b)
    exact1 = Fraction(liquidity * (b - a), 2**96)
    assert lp.amount0_delta(a, b, liquidity, False) == math.floor(exact0)
    assert lp.amount0_delta(b, a, liquidity, True) == math.ceil(exact0)
    assert lp.amount1_delta(a, b, liquidity, False) == math.floor(exact1)
    assert lp.amount1_delta(a, b, liquidity, True) == math.ceil(exact1)


def _position(token0: Token, token1: Token, spot: float, low: float, high: float, liquidity: int) -> LpPosition:
    """A position between USD prices `low` and `high` of WETH, with the pool at `spot` (USDC at $1)."""

    def tick_for(usd: float) -> int:
        raw = usd * 10.0 ** (token1.decimals - token0.decimals) if token0.symbol == "WETH" else (
            10.0 ** (token1.decimals - token0.decimals) / usd
        )
        return round(math.log(raw) / math.log(1.0001) / 10) * 10

    lower, upper = sorted((tick_for(low), tick_for(high)))
    pool = lp.pool_price(
        LpPosition("l", "o", 1, token0, token1, 500, lower, upper, liquidity, 0, 0, 2**96, 0), "WETH", spot, 1.0
    )
    sqrt_price = int(math.sqrt(float(pool)) * 2**96)
    return LpPosition(
        "localnet", "0xowner", 1, token0, token1, 500, lower, upper, liquidity, 0, 0, sqrt_price,
        lp.tick_at_sqrt_ratio(sqrt_price),
    )


USDC_FIRST = _position(USDC, WETH, 2000.0, 1500.0, 2500.0, 10**16)
WETH_FIRST = _position(WETH_LOW, USDC, 2000.0, 1500.0, 2500.0, 10**16)


def test_underlying_index_finds_the_underlying_on_either_side():
    assert lp.underlying_index(USDC_FIRST, "WETH") == 1
    assert lp.underlying_index(WETH_FIRST, "WETH") == 0
    with pytest.raises(ValueError):
        lp.underlying_index(USDC_FIRST, "WBTC")


def test_value_at_the_pool_price_equals_the_exact_burn_amounts():
    for position in (USDC_FIRST, WETH_FIRST):
        amount0, amount1 = lp.position_amounts(position)
        side = lp.underlying_index(position, "WETH")
        spot = 2000.0
        weth, usdc = (amount0, amount1) if side == 0 else (amount1, amount0)
        exact_usd = weth / 1e18 * spot + usdc / 1e6
        value = float(lp.valuation(position, "WETH", spot).value_usd)
        assert value == pytest.approx(exact_usd, rel=1e-6)
        assert weth > 0 and usdc > 0


def test_the_same_range_has_the_same_value_delta_and_gamma_whichever_token_sorts_first():
    spots = np.array([1000.0, 1600.0, 2000.0, 2400.0, 3000.0])
    a = lp.valuation(USDC_FIRST, "WETH", spots)
    b = lp.valuation(WETH_FIRST, "WETH", spots)
    np.testing.assert_allclose(a.value_usd, b.value_usd, rtol=1e-9)
    np.testing.assert_allclose(a.delta_underlying, b.delta_underlying, rtol=1e-9)
    np.testing.assert_allclose(a.gamma_underlying_per_usd, b.gamma_underlying_per_usd, rtol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(800.0, 4000.0), st.booleans())
def test_delta_and_gamma_are_finite_differences_of_value(spot, usdc_first):
    position = USDC_FIRST if usdc_first else WETH_FIRST
    h = spot * 1e-6
    here = lp.valuation(position, "WETH", spot)
    up, down = lp.valuation(position, "WETH", spot + h), lp.valuation(position, "WETH", spot - h)
    fd_delta = float(up.value_usd - down.value_usd) / (2 * h)
    assert float(here.delta_underlying) == pytest.approx(fd_delta, rel=1e-5, abs=1e-9)
    if not any(abs(spot - edge) < 2 * h for edge in _edges(position)):
        fd_gamma = float(up.delta_underlying - down.delta_underlying) / (2 * h)
        assert float(here.gamma_underlying_per_usd) == pytest.approx(fd_gamma, rel=1e-4, abs=1e-12)


def _edges(position: LpPosition) -> list[float]:
    roots = [lp.sqrt_ratio_at_tick(t) / 2**96 for t in (position.tick_lower, position.tick_upper)]
    scale = 10.0 ** (position.token1.decimals - position.token0.decimals)
    side = lp.underlying_index(position, "WETH")
    return [r * r / scale if side == 0 else scale / (r * r) for r in roots]


def test_range_position_is_short_gamma_inside_and_flat_outside():
    spots = np.array([1000.0, 2000.0, 4000.0])
    v = lp.valuation(USDC_FIRST, "WETH", spots)
    assert v.gamma_underlying_per_usd[1] < 0
    assert v.gamma_underlying_per_usd[0] == 0 and v.gamma_underlying_per_usd[2] == 0
    # Below the range it is all WETH, above it all USDC.
    assert v.delta_underlying[0] > v.delta_underlying[1] > v.delta_underlying[2] == 0


def test_liquidity_for_amounts_mints_no_more_than_the_amounts_allow():
    a, b = lp.sqrt_ratio_at_tick(USDC_FIRST.tick_lower), lp.sqrt_ratio_at_tick(USDC_FIRST.tick_upper)
    amount0, amount1 = 10_000 * 10**6, 5 * 10**18
    liquidity = lp.liquidity_for_amounts(USDC_FIRST.sqrt_price_x96, a, b, amount0, amount1)
    need0 = lp.amount0_delta(USDC_FIRST.sqrt_price_x96, b, liquidity, True)
    need1 = lp.amount1_delta(a, USDC_FIRST.sqrt_price_x96, liquidity, True)
    assert need0 <= amount0 and need1 <= amount1
    # One side is the binding one: it is used up to rounding.
    assert min(amount0 - need0, (amount1 - need1) // 10**12) <= 1
