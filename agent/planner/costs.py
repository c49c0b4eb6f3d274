"""What an action costs: swap fee and price impact from the snapshot's QuoterV2 quotes (or the pool's liquidity
math), gas at the snapshot's base fee, and the carry of a position over the hedge horizon (Aave borrow and supply
APRs). All costs are in USD; nothing here reads a clock or the network.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.model import AaveAccount, LpPosition, OptionSeries, PerpMarket, Snapshot, SwapQuote, Token
from agent.risk import lp as lp_math

SECONDS_PER_YEAR = 365 * 86_400
# Gas units per action kind: measured on the local world's Aave v3 and Uniswap v3 with warm storage, rounded up.
GAS_UNITS = {
    "repay": 200_000,
    "withdraw": 200_000,
    "supply": 220_000,
    "borrow": 280_000,
    "swap": 150_000,
    "remove_liquidity": 250_000,
    # The reference derivatives venues (an option trade prices the series on-chain: ~130k of it).
    "perp": 150_000,
    "perp_deposit": 80_000,
    "perp_withdraw": 100_000,
    "option_buy": 250_000,
    "option_sell": 250_000,
    # A flash loan through the keeper module: the lender's bookkeeping, the callback, the transfer into the Safe
    # and back, the approval of the repayment (its `flash_repay` is part of it).
    "flash_loan": 160_000,
}
TX_BASE_GAS = 21_000  # what every transaction pays before its first opcode: a recipe pays it once
# Largest price-impact fraction the extrapolation of quotes may reach: past it, a swap is not worth modelling.
_MAX_LOSS = 0.95


@dataclass(frozen=True, slots=True)
class SwapEstimate:
    """A swap of `amount_in_base_units` through the pool with fee `fee_pips`: the expected output, and what it
    costs against oracle prices (fee + price impact) and in gas, in USD."""

    fee_pips: int
    amount_in_base_units: int
    expected_out_base_units: int
    slippage_cost_usd: float
    gas_usd: float

    @property
    def cost_usd(self) -> float:
        return self.slippage_cost_usd + self.gas_usd


@dataclass(frozen=True, slots=True)
class SwapCurve:
    """One pool direction's output as a function of the amount in, interpolated from quotes.

    `marginal_out_per_in` is the pool's price before fees (out base units per in base unit); `loss_points` hold
    (amount in, fraction of the marginal value lost to fee and impact), starting at (0, fee). Between points the
    loss is linear in the amount; past the last it is extrapolated with the last segment's slope.
    """

    chain: str
    token_in: Token
    token_out: Token
    fee_pips: int
    marginal_out_per_in: float
    loss_points: tuple[tuple[int, float], ...]
    gas_units: int

    def loss_fraction(self, amount_in: float) -> float:
        points = self.loss_points
        if len(points) == 1:
            return points[0][1]
        for (a0, f0), (a1, f1) in itertools.pairwise(points):
            if amount_in <= a1:
                return f0 + (f1 - f0) * (amount_in - a0) / (a1 - a0)
        (a0, f0), (a1, f1) = points[-2], points[-1]
        slope = max((f1 - f0) / (a1 - a0), 0.0)
        return min(f1 + slope * (amount_in - a1), _MAX_LOSS)

    def amount_out(self, amount_in: int) -> int:
        """Return the expected output (base units) of swapping `amount_in` base units from the pool's state."""
        if amount_in <= 0:
            return 0
        return max(int(amount_in * self.marginal_out_per_in * (1.0 - self.loss_fraction(amount_in))), 0)


def curve_from_quotes(quotes: Iterable[SwapQuote], marginal_out_per_in: float) -> SwapCurve:
    """Return the curve through the quotes of one pool direction (same chain, tokens and fee)."""
    ordered = sorted(quotes, key=lambda q: q.amount_in_base_units)
    first = ordered[0]
    points: list[tuple[int, float]] = [(0, first.fee_pips / 1e6)]
    for quote in ordered:
        if quote.amount_in_base_units <= points[-1][0]:
            continue
        value = quote.amount_in_base_units * marginal_out_per_in
        loss = 1.0 - quote.amount_out_base_units / value
        points.append((quote.amount_in_base_units, max(loss, points[-1][1])))
    gas = max(q.gas_estimate for q in ordered)
    return SwapCurve(first.chain, first.token_in, first.token_out, first.fee_pips, marginal_out_per_in,
                     tuple(points), max(gas, GAS_UNITS["swap"]))


def curve_from_liquidity(
    chain: str, token_in: Token, token_out: Token, fee_pips: int, sqrt_price_x96: int, liquidity: int,
    zero_for_one: bool,
) -> SwapCurve:
    """Return a curve from Uniswap v3's constant-liquidity math in one tick range: a conservative estimate when
    only a lower bound of the pool's active liquidity (an LP position's own) is known."""
    root = sqrt_price_x96 / lp_math.Q96
    marginal = root * root if zero_for_one else 1.0 / (root * root)
    points = [(0, fee_pips / 1e6)]
    for scale in (1e-4, 1e-3, 1e-2, 1e-1):
        # Amounts in proportion to the range's depth on the input side.
        amount = max(int(liquidity * (1.0 / root if zero_for_one else root) * scale), 1)
        net = amount * (1.0 - fee_pips / 1e6)
        if zero_for_one:
            new_root = 1.0 / (1.0 / root + net / liquidity)
            out = liquidity * (root - new_root)
        else:
            new_root = root + net / liquidity
            out = liquidity * (1.0 / root - 1.0 / new_root)
        points.append((amount, max(1.0 - out / (amount * marginal), points[-1][1])))
    return SwapCurve(chain, token_in, token_out, fee_pips, marginal, tuple(points), GAS_UNITS["swap"])


class CostModel:
    """Costs for one snapshot: swap curves per pool direction, gas price, ETH price, APRs and the hedge horizon."""

    def __init__(self, snapshot: Snapshot, horizon_s: float, prices_usd: dict[str, float]) -> None:
        self.prices_usd = dict(prices_usd)
        self.horizon_years = horizon_s / SECONDS_PER_YEAR
        self.base_fee_wei = {c.chain: c.base_fee_wei for c in snapshot.chains}
        self.curves: dict[tuple[str, str, str], list[SwapCurve]] = {}
        self.borrow_apr: dict[str, float] = {}
        self.supply_apr: dict[str, float] = {}
        self.now_ts = snapshot.timestamp
        self.flash_premium_bps: dict[str, int] = {}  # per chain: the Aave pool's flash-loan premium
        self.perp_markets = tuple(m for m in snapshot.markets if isinstance(m, PerpMarket))
        self.option_series = tuple(m for m in snapshot.markets if isinstance(m, OptionSeries))
        pool_prices: dict[tuple[str, str, str, int], tuple[int, int, bool]] = {}
        for position in snapshot.positions:
            if isinstance(position, AaveAccount):
                if position.flash_loan_premium_bps is not None:
                    self.flash_premium_bps.setdefault(position.chain, position.flash_loan_premium_bps)
                for reserve in position.reserves:
                    self.borrow_apr.setdefault(reserve.token.symbol, reserve.variable_borrow_apr)
                    self.supply_apr.setdefault(reserve.token.symbol, reserve.supply_apr)
            if isinstance(position, LpPosition):
                t0, t1 = position.token0.symbol, position.token1.symbol
                pool_prices[(position.chain, t0, t1, position.fee_pips)] = (
                    position.sqrt_price_x96, position.liquidity, position.tick_lower <= position.tick <
                    position.tick_upper)
        grouped: dict[tuple[str, str, str, int], list[SwapQuote]] = {}
        for chain in snapshot.chains:
            for quote in chain.quotes:
                if quote.amount_out_base_units > 0:
                    key = (chain.chain, quote.token_in.symbol, quote.token_out.symbol, quote.fee_pips)
                    grouped.setdefault(key, []).append(quote)
        for (chain_name, sym_in, sym_out, fee), quotes in sorted(grouped.items()):
            first = quotes[0]
            marginal = self._marginal(pool_prices, chain_name, first.token_in, first.token_out, fee)
            if marginal is None:
                continue
            self.curves.setdefault((chain_name, sym_in, sym_out), []).append(curve_from_quotes(quotes, marginal))
        # Pools of LP positions without quotes: the position's own liquidity is a lower bound of the pool's.
        for position in snapshot.positions:
            if not isinstance(position, LpPosition):
                continue
            _root, liquidity, in_range = pool_prices[
                (position.chain, position.token0.symbol, position.token1.symbol, position.fee_pips)]
            for token_in, token_out, zero_for_one in ((position.token0, position.token1, True),
                                                      (position.token1, position.token0, False)):
                direction = (position.chain, token_in.symbol, token_out.symbol)
                if in_range and liquidity > 0 and not any(c.fee_pips == position.fee_pips
                                                          for c in self.curves.get(direction, [])):
                    self.curves.setdefault(direction, []).append(curve_from_liquidity(
                        position.chain, token_in, token_out, position.fee_pips, position.sqrt_price_x96, liquidity,
                        zero_for_one))

    def _marginal(
        self, pool_prices: dict[tuple[str, str, str, int], tuple[int, int, bool]], chain: str, token_in: Token,
        token_out: Token, fee: int,
    ) -> float | None:
        """Out base units per in base unit at the pool's price (an LP position's pool), else the oracle's."""
        for (c, t0, t1, f), (root_x96, _l, _r) in pool_prices.items():
            if c == chain and f == fee and {t0, t1} == {token_in.symbol, token_out.symbol}:
                price = (root_x96 / lp_math.Q96) ** 2  # token1 per token0, base units
                return price if token_in.symbol == t0 else 1.0 / price
        p_in, p_out = self.prices_usd.get(token_in.symbol), self.prices_usd.get(token_out.symbol)
        if not p_in or not p_out:
            return None
        return p_in / p_out * 10.0 ** (token_out.decimals - token_in.decimals)

    def perp_market(self, chain: str, underlying: str) -> PerpMarket | None:
        """Returns the first perp market on `underlying` on the chain (None: no perp venue there)."""
        return next((m for m in self.perp_markets if m.chain == chain and m.underlying == underlying), None)

    def series(self, chain: str, series_id: int) -> OptionSeries:
        """Returns the listed option series with this id on the chain (KeyError when none)."""
        for series in self.option_series:
            if series.chain == chain and series.series_id == series_id:
                return series
        raise KeyError(f"no option series {series_id} on {chain}")

    def can_swap(self, chain: str, symbol_in: str, symbol_out: str) -> bool:
        """Whether the snapshot has a route (quotes or pool data) from one token to the other."""
        return bool(self.curves.get((chain, symbol_in, symbol_out)))

    def swap(
        self, chain: str, symbol_in: str, symbol_out: str, amount_in: int, already_in: Mapping[int, int] | None = None
    ) -> SwapEstimate:
        """Return the best pool's estimate for swapping `amount_in` base units, after `already_in[fee]` base units
        were swapped the same way through the pool with that fee earlier in the plan (their price impact is not
        undone). KeyError with no route."""
        best: SwapEstimate | None = None
        for curve in sorted(self.curves[(chain, symbol_in, symbol_out)], key=lambda c: c.fee_pips):
            before = (already_in or {}).get(curve.fee_pips, 0)
            out = curve.amount_out(before + amount_in) - curve.amount_out(before)
            value_in = amount_in / 10**curve.token_in.decimals * self.prices_usd[symbol_in]
            value_out = out / 10**curve.token_out.decimals * self.prices_usd[symbol_out]
            estimate = SwapEstimate(curve.fee_pips, amount_in, out, value_in - value_out,
                                    self.gas_usd("swap", chain, curve.gas_units))
            if best is None or estimate.expected_out_base_units > best.expected_out_base_units:
                best = estimate
        assert best is not None
        return best

    def swap_cost_rate(self, chain: str, symbol_in: str, symbol_out: str, notional_usd: float,
                       already_in: Mapping[int, int] | None = None) -> float:
        """Return fee + price impact as a fraction of the input's USD value, for a swap of `notional_usd`."""
        if notional_usd <= 0:
            notional_usd = 1.0
        curve = self.curves[(chain, symbol_in, symbol_out)][0]
        amount = int(notional_usd / self.prices_usd[symbol_in] * 10**curve.token_in.decimals)
        estimate = self.swap(chain, symbol_in, symbol_out, max(amount, 1), already_in)
        return max(estimate.slippage_cost_usd / notional_usd, 0.0)

    def gas_usd(self, kind: str, chain: str, gas_units: int | None = None) -> float:
        """Return the gas cost of one action of `kind` at the chain's base fee, in USD (ETH priced as WETH)."""
        units = gas_units if gas_units is not None else GAS_UNITS[kind]
        eth = self.prices_usd.get("ETH") or self.prices_usd.get("WETH") or 0.0
        return units * self.base_fee_wei.get(chain, 0) / 1e18 * eth

    def carry_usd(self, symbol: str, notional_usd: float, side: str) -> float:
        """Return what holding `notional_usd` of `symbol` borrowed (`side`="borrow") costs, or supplied
        ("supply") earns, over the hedge horizon, in USD (positive for both)."""
        apr = (self.borrow_apr if side == "borrow" else self.supply_apr).get(symbol, 0.0)
        return notional_usd * apr * self.horizon_years


def flash_loan_premium(amount_base_units: int, premium_bps: int) -> int:
    """Return the premium Aave v3 charges on a flash loan of `amount_base_units` (its `percentMul`, half up)."""
    return (amount_base_units * premium_bps + 5_000) // 10_000


def usd(amount_base_units: int | float, token: Token, price_usd: float) -> float:
    """Return base units of `token` in USD."""
    return amount_base_units / 10**token.decimals * price_usd


def base_units(notional_usd: float, token: Token, price_usd: float) -> int:
    """Return the base units of `token` worth `notional_usd` (rounded down)."""
    if price_usd <= 0 or not math.isfinite(notional_usd):
        return 0
    return max(int(notional_usd / price_usd * 10**token.decimals), 0)
