"""The simulated Uniswap v3 pool: a full-range pool is a constant-product pool; concentrated liquidity is deeper
inside its range and runs out at its edge; swaps move the price and the arbitrageurs move it back."""

from __future__ import annotations

import math

import pytest

from agent.risk import lp as lp_math
from agent.sim.pool import Pool, liquidity_for_usd
from agent.sim.portfolio import TOKENS

USDC, WETH = TOKENS["USDC"], TOKENS["WETH"]  # USDC is token0 (the lower address)
PRICE = 2000.0


def root_at(price: float) -> int:
    return int(math.sqrt(1.0 / price * 10.0 ** (WETH.decimals - USDC.decimals)) * lp_math.Q96)


def pool_with(*ranges: tuple[tuple[float, float] | None, float]) -> Pool:
    """A pool at $2,000 holding each (WETH price range or None for full range, USD) range."""
    pool = Pool(USDC, WETH, 500, 10)
    root = root_at(PRICE)
    laid = []
    for bounds, usd in ranges:
        if bounds is None:
            lower, upper = pool.full_range()
        else:
            raw = (root / lp_math.Q96) ** 2
            lower, upper = pool.tick_bounds(raw * PRICE / bounds[1], raw * PRICE / bounds[0])
        laid.append((lower, upper, liquidity_for_usd(root, lower, upper, usd, 1.0, PRICE, USDC, WETH)))
    pool.lay_out(root, laid)
    return pool


def weth(usd: float) -> int:
    return int(usd / PRICE * 1e18)


@pytest.mark.parametrize("notional", [1e3, 1e5, 1e7])
def test_a_full_range_pool_pays_what_a_constant_product_pool_would(notional: float) -> None:
    pool = pool_with((None, 200e6))
    out = pool.quote(WETH, weth(notional)) / 1e6
    net = notional * (1 - 500 / 1e6)
    assert out == pytest.approx(net * 100e6 / (100e6 + net), rel=1e-6)


def test_concentrated_liquidity_is_deeper_in_range_and_thin_past_its_edge() -> None:
    narrow = pool_with((None, 5e6), ((1990.0, 2010.0), 1e6))
    full = pool_with((None, 5e6))
    loss = {}
    for name, pool in (("narrow", narrow), ("full", full)):
        loss[name] = [1 - pool.quote(WETH, weth(n)) / 1e6 / n for n in (1e4, 1e5, 1e6)]
    # inside the range the narrow pool is far cheaper; past its edge the marginal cost jumps to the thin pool's
    assert loss["narrow"][0] < loss["full"][0] / 2
    marginal_in = (loss["narrow"][1] * 1e5 - loss["narrow"][0] * 1e4) / 9e4
    marginal_out = (loss["narrow"][2] * 1e6 - loss["narrow"][1] * 1e5) / 9e5
    assert marginal_out > 5 * marginal_in


def test_a_swap_moves_the_price_and_liquidity_and_the_arbitrageurs_bring_it_back() -> None:
    pool = pool_with((None, 5e6), ((1990.0, 2010.0), 1e6))
    start_root, start_liquidity = pool.sqrt_price_x96, pool.liquidity
    fill = pool.swap(False, weth(1e6))  # WETH in: the WETH price falls past the range's lower edge
    assert fill.amount_in_base_units == weth(1e6) and fill.fee_base_units == pytest.approx(weth(1e6) * 5e-4, rel=1e-3)
    assert pool.sqrt_price_x96 > start_root  # token1 per token0 rises: WETH is cheaper
    assert pool.liquidity < start_liquidity  # only the full range is left
    price_after = 1.0 / ((pool.sqrt_price_x96 / lp_math.Q96) ** 2 / 1e12)
    assert price_after < 1990.0
    pool.move_to(root_at(PRICE))
    assert pool.sqrt_price_x96 == start_root and pool.liquidity == start_liquidity


def test_a_pool_with_no_liquidity_left_fills_only_part_of_a_swap() -> None:
    pool = pool_with(((1990.0, 2010.0), 1e6))
    fill = pool.swap(False, weth(5e6), commit=False)
    assert 0 < fill.amount_in_base_units < weth(5e6)
    assert fill.amount_out_base_units / 1e6 < 1e6
