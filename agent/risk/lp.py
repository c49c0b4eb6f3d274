"""Uniswap v3 concentrated liquidity: the pool's exact integer tick math, and value, delta and gamma in USD.

The integer functions reproduce TickMath, SqrtPriceMath and LiquidityAmounts of Uniswap v3 bit for bit (Python
ints have no overflow, so FullMath.mulDiv is a floor division of the exact product). The float functions value a
position as a function of the USD price of one of its tokens (the underlying), the other token's USD price fixed.

The pool price is token1 per token0 in base units; token0 is the token with the lower address. For WETH (18
decimals) and USDC (6) the pool may quote WETH in USDC or USDC in WETH depending on their addresses:
`underlying_index` says which side a position's underlying is on, and the valuation handles both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from agent.model import LpPosition

Q96 = 2**96
MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342

# sqrt(1.0001)^(-2^i) as Q128.128 for bit i of |tick| (bit 0 is the starting value): TickMath's constants.
_TICK_BIT_RATIOS = (
    0xFFFCB933BD6FAD37AA2D162D1A594001,
    0xFFF97272373D413259A46990580E213A,
    0xFFF2E50F5F656932EF12357CF3C7FDCC,
    0xFFE5CACA7E10E4E61C3624EAA0941CD0,
    0xFFCB9843D60F6159C9DB58835C926644,
    0xFF973B41FA98C081472E6896DFB254C0,
    0xFF2EA16466C96A3843EC78B326B52861,
    0xFE5DEE046A99A2A811C461F1969C3053,
    0xFCBE86C7900A88AEDCFFC83B479AA3A4,
    0xF987A7253AC413176F2B074CF7815E54,
    0xF3392B0822B70005940C7A398E4B70F3,
    0xE7159475A2C29B7443B29C7FA6E889D9,
    0xD097F3BDFD2022B8845AD8F792AA5825,
    0xA9F746462D870FDF8A65DC1F90E061E5,
    0x70D869A156D2A1B890BB3DF62BAF32F7,
    0x31BE135F97D08FD981231505542FCFA6,
    0x9AA508B5B7A84E1C677DE54F3E99BC9,
    0x5D6AF8DEDB81196699C329225EE604,
    0x2216E584F5FA1EA926041BEDFE98,
    0x48A170391F7DC42444E8FA2,
)
_UINT256_MAX = 2**256 - 1


@dataclass(frozen=True, slots=True)
class LpValuation:
    """A position's value and sensitivities to the USD price S of its underlying (arrays shaped like S).

    `value_usd` includes tokens owed; `delta_underlying` = dV/dS, the amount of the underlying the position holds
    (in whole tokens); `gamma_underlying_per_usd` = d²V/dS² (negative inside the range, 0 outside).
    """

    value_usd: NDArray[np.float64]
    delta_underlying: NDArray[np.float64]
    gamma_underlying_per_usd: NDArray[np.float64]


@lru_cache(maxsize=4096)  # a book's range ticks recur every revaluation; the 20-step bit ladder is not free
def sqrt_ratio_at_tick(tick: int) -> int:
    """Return sqrt(1.0001^tick)·2^96 as a Q64.96 integer, exactly as TickMath.getSqrtRatioAtTick."""
    abs_tick = abs(tick)
    if abs_tick > MAX_TICK:
        raise ValueError(f"tick {tick} outside [{MIN_TICK}, {MAX_TICK}]")
    ratio = _TICK_BIT_RATIOS[0] if abs_tick & 1 else 1 << 128
    for bit, factor in enumerate(_TICK_BIT_RATIOS[1:], start=1):
        if abs_tick & (1 << bit):
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = _UINT256_MAX // ratio
    # Round up from Q128.128 to Q64.96 so that tick_at_sqrt_ratio of the result gives the tick back.
    return (ratio >> 32) + (1 if ratio % (1 << 32) else 0)


def tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """Return the greatest tick whose sqrt ratio is ≤ `sqrt_price_x96` (TickMath.getTickAtSqrtRatio)."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise ValueError(f"sqrt price {sqrt_price_x96} outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO)")
    lo, hi = MIN_TICK, MAX_TICK
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if sqrt_ratio_at_tick(mid) <= sqrt_price_x96:
            lo = mid
        else:
            hi = mid
    return lo


def amount0_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int, round_up: bool) -> int:
    """Return the token0 base units between two sqrt prices for `liquidity` (SqrtPriceMath.getAmount0Delta)."""
    lower, upper = sorted((sqrt_a_x96, sqrt_b_x96))
    numerator1 = liquidity << 96
    numerator2 = upper - lower
    if round_up:
        return _div_up(_div_up(numerator1 * numerator2, upper), lower)
    return numerator1 * numerator2 // upper // lower


def amount1_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int, round_up: bool) -> int:
    """Return the token1 base units between two sqrt prices for `liquidity` (SqrtPriceMath.getAmount1Delta)."""
    lower, upper = sorted((sqrt_a_x96, sqrt_b_x96))
    product = liquidity * (upper - lower)
    return _div_up(product, Q96) if round_up else product // Q96


def position_amounts(position: LpPosition) -> tuple[int, int]:
    """Return (amount0, amount1) in base units that burning all of the position's liquidity pays out: what
    NonfungiblePositionManager.decreaseLiquidity returns (rounded down; tokens owed not included)."""
    sqrt_lower = sqrt_ratio_at_tick(position.tick_lower)
    sqrt_upper = sqrt_ratio_at_tick(position.tick_upper)
    liquidity = position.liquidity
    # The pool picks the region by its current tick, and uses its exact sqrt price inside the range.
    if position.tick < position.tick_lower:
        return amount0_delta(sqrt_lower, sqrt_upper, liquidity, False), 0
    if position.tick < position.tick_upper:
        return (
            amount0_delta(position.sqrt_price_x96, sqrt_upper, liquidity, False),
            amount1_delta(sqrt_lower, position.sqrt_price_x96, liquidity, False),
        )
    return 0, amount1_delta(sqrt_lower, sqrt_upper, liquidity, False)


def liquidity_for_amounts(
    sqrt_price_x96: int, sqrt_a_x96: int, sqrt_b_x96: int, amount0: int, amount1: int
) -> int:
    """Return the most liquidity that `amount0` and `amount1` (base units) can mint at the given sqrt price
    (LiquidityAmounts.getLiquidityForAmounts)."""
    lower, upper = sorted((sqrt_a_x96, sqrt_b_x96))

    def for_amount0(a: int, b: int) -> int:
        return amount0 * (a * b // Q96) // (b - a)

    def for_amount1(a: int, b: int) -> int:
        return amount1 * Q96 // (b - a)

    if sqrt_price_x96 <= lower:
        return for_amount0(lower, upper)
    if sqrt_price_x96 < upper:
        return min(for_amount0(sqrt_price_x96, upper), for_amount1(lower, sqrt_price_x96))
    return for_amount1(lower, upper)


def underlying_index(position: LpPosition, underlying: str) -> Literal[0, 1]:
    """Return 0 if `underlying` is the position's token0, 1 if it is token1; ValueError if neither."""
    if position.token0.symbol == underlying:
        return 0
    if position.token1.symbol == underlying:
        return 1
    raise ValueError(f"position {position.token_id} holds neither token0 nor token1 as {underlying}")


def pool_price(
    position: LpPosition, underlying: str, spot_usd: ArrayLike, other_usd: ArrayLike
) -> NDArray[np.float64]:
    """Return the pool price (token1 per token0, base units) at which the underlying is worth `spot_usd` and the
    other token `other_usd` (both broadcast)."""
    spot = np.asarray(spot_usd, dtype=np.float64)
    other = np.asarray(other_usd, dtype=np.float64)
    scale = 10.0 ** (position.token1.decimals - position.token0.decimals)
    if underlying_index(position, underlying) == 0:
        return spot / other * scale
    return other / spot * scale


def valuation(
    position: LpPosition, underlying: str, spot_usd: ArrayLike, other_usd: ArrayLike = 1.0
) -> LpValuation:
    """Return value (USD), delta (underlying tokens) and gamma (underlying tokens per USD) of the position at each
    underlying price in `spot_usd`, the other token priced at `other_usd`, in float64.

    Inside the range the position holds x0 = L(1/√p − 1/√pb) and x1 = L(√p − √pa); outside, all of one token.
    Its value's derivative is the underlying it holds (the other side's change in amount is paid for exactly at
    the pool price), and gamma is the rate at which that amount falls as the price rises.
    """
    spot = np.asarray(spot_usd, dtype=np.float64)
    side = underlying_index(position, underlying)
    root = np.sqrt(pool_price(position, underlying, spot, other_usd))
    x0, x1 = holdings(position, root)
    amount0 = x0 / 10.0**position.token0.decimals
    amount1 = x1 / 10.0**position.token1.decimals
    root_lower = sqrt_ratio_at_tick(position.tick_lower) / Q96
    root_upper = sqrt_ratio_at_tick(position.tick_upper) / Q96
    in_range = (root > root_lower) & (root < root_upper)
    liquidity = float(position.liquidity)
    if side == 0:
        value = amount0 * spot + amount1 * np.asarray(other_usd, dtype=np.float64)
        delta = amount0
        gamma = np.where(in_range, -liquidity / (2.0 * root * spot * 10.0**position.token0.decimals), 0.0)
    else:
        value = amount0 * np.asarray(other_usd, dtype=np.float64) + amount1 * spot
        delta = amount1
        gamma = np.where(in_range, -liquidity * root / (2.0 * spot * 10.0**position.token1.decimals), 0.0)
    return LpValuation(value, delta, gamma)


def holdings(position: LpPosition, sqrt_price: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return (token0, token1) in base units, as float64, that the position holds when the pool's sqrt price
    (√(token1/token0) in base units, not Q96) is `sqrt_price`: its liquidity's amounts plus the tokens owed."""
    root = np.asarray(sqrt_price, dtype=np.float64)
    root_lower = sqrt_ratio_at_tick(position.tick_lower) / Q96
    root_upper = sqrt_ratio_at_tick(position.tick_upper) / Q96
    inside = np.clip(root, root_lower, root_upper)
    liquidity = float(position.liquidity)
    x0 = liquidity * (1.0 / inside - 1.0 / root_upper) + position.tokens_owed0
    x1 = liquidity * (inside - root_lower) + position.tokens_owed1
    return x0, x1


def _div_up(a: int, b: int) -> int:
    return -(-a // b)
