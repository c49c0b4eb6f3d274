"""The simulated Uniswap v3 pool: finite concentrated liquidity that arbitrageurs move to the path's price and the
keeper's swaps trade against, so that a swap's price impact is the pool's, not the planner's estimate of it.

The pool's liquidity sits in ranges given as multiples of a reference price, each holding a USD value at that
price (the portfolio file's `market.pool`). Other LPs re-centre: every `recentre_hours` hours the ranges are laid
out again around the close with the same USD values, so the pool's depth follows the market; between re-centrings
a fast move can carry the price out of the narrow ranges, and the pool thins just when a keeper needs it.

Swaps are exact-input and walk the initialised ticks as Uniswap v3's `SwapMath.computeSwapStep` does: the
`risk.lp` tick math (`sqrt_ratio_at_tick`, `amount0_delta`, `amount1_delta`) in integers, the fee taken from the
input of each step, liquidity crossing at each initialised tick. The book's own LP position is not part of this
liquidity (the pool's depth is what others provide).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.model import Token
from agent.risk import lp as lp_math

FULL_RANGE = "full"
_FEE_SCALE = 1_000_000


@dataclass(frozen=True, slots=True)
class Fill:
    """An exact-input swap's outcome: base units taken in (fee included) and paid out, and the fee (input base
    units) left to the pool's LPs."""

    amount_in_base_units: int
    amount_out_base_units: int
    fee_base_units: int


class Pool:
    """A token0/token1 pool (pool price: token1 per token0 in base units) with liquidity in tick ranges."""

    def __init__(self, token0: Token, token1: Token, fee_pips: int, tick_spacing: int) -> None:
        self.token0, self.token1 = token0, token1
        self.fee_pips = fee_pips
        self.spacing = tick_spacing
        self.sqrt_price_x96 = lp_math.Q96
        self.ticks: list[int] = []  # initialised ticks, ascending
        self.net: dict[int, int] = {}  # liquidity added when the price crosses the tick upwards
        self.liquidity = 0  # active at the current price

    # --- state -------------------------------------------------------------------------------------------------

    def lay_out(self, sqrt_price_x96: int, ranges: list[tuple[int, int, int]]) -> None:
        """Replace the pool's liquidity with `ranges` of (tick_lower, tick_upper, liquidity) at the sqrt price."""
        self.sqrt_price_x96 = sqrt_price_x96
        self.net = {}
        for lower, upper, liquidity in ranges:
            self.net[lower] = self.net.get(lower, 0) + liquidity
            self.net[upper] = self.net.get(upper, 0) - liquidity
        self.ticks = sorted(t for t, n in self.net.items() if n)
        self.liquidity = self._active()

    def _active(self) -> int:
        return sum(n for t, n in self.net.items() if lp_math.sqrt_ratio_at_tick(t) <= self.sqrt_price_x96)

    def tick_bounds(self, lower_price: float, upper_price: float) -> tuple[int, int]:
        """Return the spacing-aligned ticks around two pool prices (token1 per token0, base units)."""
        spacing = self.spacing
        low = math.floor(math.log(lower_price) / math.log(1.0001) / spacing) * spacing
        high = math.ceil(math.log(upper_price) / math.log(1.0001) / spacing) * spacing
        top = lp_math.MAX_TICK // spacing * spacing
        return max(low, -top), min(max(high, low + spacing), top)

    def full_range(self) -> tuple[int, int]:
        top = lp_math.MAX_TICK // self.spacing * self.spacing
        return -top, top

    # --- swaps -------------------------------------------------------------------------------------------------

    def swap(self, zero_for_one: bool, amount_in: int, sqrt_limit_x96: int | None = None,
             commit: bool = True) -> Fill:
        """Return the fill of swapping `amount_in` base units of token0 (`zero_for_one`) or token1, walking the
        ticks until the input is spent, the price reaches `sqrt_limit_x96`, or the liquidity runs out (the rest of
        the input is not taken); the pool's state moves only when `commit`."""
        root, liquidity = self.sqrt_price_x96, self.liquidity
        if sqrt_limit_x96 is None:
            sqrt_limit_x96 = lp_math.MIN_SQRT_RATIO + 1 if zero_for_one else lp_math.MAX_SQRT_RATIO - 1
        remaining, taken, out, fees = amount_in, 0, 0, 0
        keep = _FEE_SCALE - self.fee_pips
        while remaining > 0 and root != sqrt_limit_x96:
            tick = self._next_tick(root, zero_for_one)
            if tick is None and liquidity == 0:
                break
            edge = lp_math.sqrt_ratio_at_tick(tick) if tick is not None else sqrt_limit_x96
            target = max(edge, sqrt_limit_x96) if zero_for_one else min(edge, sqrt_limit_x96)
            net_available = remaining * keep // _FEE_SCALE
            if liquidity > 0:
                need = (lp_math.amount0_delta(target, root, liquidity, True) if zero_for_one
                        else lp_math.amount1_delta(root, target, liquidity, True))
            else:
                need = 0
            if liquidity > 0 and net_available < need:
                new_root = _next_sqrt(root, liquidity, net_available, zero_for_one)
                used_net, gross = net_available, remaining
            else:
                new_root, used_net = target, need
                gross = min(-(-used_net * _FEE_SCALE // keep), remaining)
            if liquidity > 0:
                out += (lp_math.amount1_delta(new_root, root, liquidity, False) if zero_for_one
                        else lp_math.amount0_delta(root, new_root, liquidity, False))
            fees += gross - used_net
            taken += gross
            remaining -= gross
            root = new_root
            if root == edge and tick is not None:
                liquidity += -self.net[tick] if zero_for_one else self.net[tick]
                if zero_for_one:
                    root = edge - 1 if edge - 1 >= lp_math.MIN_SQRT_RATIO else edge  # just below the tick
        if commit:
            self.sqrt_price_x96, self.liquidity = root, max(liquidity, 0)
        return Fill(taken, out, fees)

    def _next_tick(self, root: int, zero_for_one: bool) -> int | None:
        """The nearest initialised tick in the direction of the swap (None: none left): going down, the highest
        at or below the price (a tick the price sits on is crossed first); going up, the lowest above it."""
        if zero_for_one:
            below = [t for t in self.ticks if lp_math.sqrt_ratio_at_tick(t) <= root]
            return below[-1] if below else None
        return next((t for t in self.ticks if lp_math.sqrt_ratio_at_tick(t) > root), None)

    def move_to(self, sqrt_price_x96: int) -> None:
        """The arbitrageurs' trade: the pool's price goes to `sqrt_price_x96` (the path's), its active liquidity
        is the one there. (Their trade's size is not needed: the backtest takes LP fees from the file's volume.)"""
        if sqrt_price_x96 != self.sqrt_price_x96:
            self.sqrt_price_x96 = sqrt_price_x96
            self.liquidity = self._active()

    def quote(self, token_in: Token, amount_in: int) -> int:
        """Return what swapping `amount_in` base units of `token_in` would pay out now (QuoterV2's answer)."""
        return self.swap(token_in.address == self.token0.address, amount_in, commit=False).amount_out_base_units


def _next_sqrt(root: int, liquidity: int, amount_net: int, zero_for_one: bool) -> int:
    """The sqrt price after adding `amount_net` of the input inside one range (SqrtPriceMath, rounding as v3)."""
    if zero_for_one:
        numerator = liquidity << 96
        return -(-(numerator * root) // (numerator + amount_net * root))
    return root + (amount_net << 96) // liquidity


def liquidity_for_usd(sqrt_price_x96: int, lower: int, upper: int, usd: float, price0_usd: float, price1_usd: float,
                      token0: Token, token1: Token) -> int:
    """Return the liquidity that a range [lower, upper) holding `usd` of value at the sqrt price carries."""
    unit = 10**30  # liquidity large enough for exact amounts
    a, b = lp_math.sqrt_ratio_at_tick(lower), lp_math.sqrt_ratio_at_tick(upper)
    root = min(max(sqrt_price_x96, a), b)
    amount0 = lp_math.amount0_delta(root, b, unit, False)
    amount1 = lp_math.amount1_delta(a, root, unit, False)
    value = amount0 / 10**token0.decimals * price0_usd + amount1 / 10**token1.decimals * price1_usd
    return int(unit * usd / value) if value > 0 else 0
