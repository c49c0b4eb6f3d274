"""Every priced asset is a risk factor: the book revalued under any set of simultaneous price moves, and its desk
Greeks against each factor alone and beta-weighted to the policy's underlying.

A move is a price multiplier per symbol (1 = unchanged, 0.92 = an 8% fall), broadcast like numpy arrays. Aave
accounts move with the factor their Aave price follows (an e-mode price source, else the asset's own oracle price);
a Morpho position's collateral with its collateral token and its debt with its loan token; an LP with both of its
tokens' prices; perps and options with their underlying's, options also with a vol multiplier per underlying.
Greeks per factor are central differences of the full revaluation (relative bump `BUMP`): delta_usd = S·dV/dS,
gamma_usd_1pct = 0.01·S²·d²V/dS², exact for linear positions and within ~1e-6 of the closed forms for options and
LPs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from agent.model import AaveAccount, FactorRisk, LpPosition, MorphoPosition, PerpPosition, Position
from agent.risk import lending, lp, morpho, perps
from agent.risk.greeks import black_scholes

SECONDS_PER_YEAR = 365 * 86_400
BUMP = 1e-3
_NO_MOVES: Mapping[str, ArrayLike] = {}


def years_to_expiry(expiry_ts: int, now_ts: int) -> float:
    """Return the time from `now_ts` to `expiry_ts` (unix seconds) in years of 365 days, 0 once expired."""
    return max(expiry_ts - now_ts, 0) / SECONDS_PER_YEAR


def value_at(
    position: Position,
    prices_usd: Mapping[str, float],
    now_ts: int,
    moves: Mapping[str, ArrayLike] = _NO_MOVES,
    vol_moves: Mapping[str, ArrayLike] = _NO_MOVES,
    rate: float = 0.0,
) -> NDArray[np.float64]:
    """Return the position's value (USD) with each symbol's price multiplied by `moves[symbol]` and the vols of
    options on an underlying by `vol_moves[underlying]`; the shape is the moves' broadcast shape.

    Aave accounts are worth supplied − borrowed at the prices Aave uses; a Morpho position its collateral at its
    oracle's price less its debt, each moving with its token; an LP its tokens (and tokens owed) at the
    pool price its tokens' prices imply; a perp its equity; an option its BSM price × quantity at `vol_annual`.
    """

    def move(symbol: str) -> NDArray[np.float64]:
        return np.asarray(moves.get(symbol, 1.0), dtype=np.float64)

    if isinstance(position, AaveAccount):
        total = np.zeros(())
        for reserve in position.reserves:
            net = reserve.collateral_base_units - reserve.variable_debt_base_units - reserve.stable_debt_base_units
            usd = net / 10**reserve.token.decimals * lending.effective_price_1e8(position, reserve) / 1e8
            total = total + usd * move(lending.price_follows(position, reserve))
        return total
    if isinstance(position, MorphoPosition):
        collateral_usd, debt_usd = morpho.usd_values(position, prices_usd)
        return collateral_usd * move(position.collateral_token.symbol) - debt_usd * move(position.loan_token.symbol)
    if isinstance(position, LpPosition):
        t0, t1 = position.token0.symbol, position.token1.symbol
        return lp.valuation(position, t0, prices_usd[t0] * move(t0), prices_usd[t1] * move(t1)).value_usd
    spot = prices_usd[position.underlying] * move(position.underlying)
    if isinstance(position, PerpPosition):
        return perps.equity_usd(position, spot)
    vol = position.vol_annual * np.asarray(vol_moves.get(position.underlying, 1.0), dtype=np.float64)
    greeks = black_scholes(position.is_call, spot, position.strike_usd, years_to_expiry(position.expiry_ts, now_ts),
                           vol, rate)
    return np.asarray(greeks.price * position.quantity, dtype=np.float64)


def book_value_at(
    positions: Iterable[Position],
    prices_usd: Mapping[str, float],
    now_ts: int,
    moves: Mapping[str, ArrayLike] = _NO_MOVES,
    vol_moves: Mapping[str, ArrayLike] = _NO_MOVES,
    rate: float = 0.0,
) -> NDArray[np.float64]:
    """Return the sum of `value_at` over the positions (USD)."""
    total = np.zeros(())
    for position in positions:
        total = total + value_at(position, prices_usd, now_ts, moves, vol_moves, rate)
    return total


def factor_symbols(positions: Iterable[Position]) -> tuple[str, ...]:
    """Return every symbol whose price moves some position's value, sorted: the book's risk factors."""
    symbols: set[str] = set()
    for position in positions:
        if isinstance(position, AaveAccount):
            symbols.update(lending.price_follows(position, r) for r in position.reserves)
        elif isinstance(position, MorphoPosition):
            symbols.update((position.collateral_token.symbol, position.loan_token.symbol))
        elif isinstance(position, LpPosition):
            symbols.update((position.token0.symbol, position.token1.symbol))
        else:
            symbols.add(position.underlying)
    return tuple(sorted(symbols))


def factor_risks(
    positions: Iterable[Position],
    prices_usd: Mapping[str, float],
    now_ts: int,
    betas: Mapping[str, float],
    rate: float = 0.0,
) -> tuple[FactorRisk, ...]:
    """Return the book's delta and gamma (desk units, USD) against each of its factors that `prices_usd` prices,
    with the factor's beta to the underlying (`betas`, 0 where it has none)."""
    book = tuple(positions)
    bumps = np.array([1.0 - BUMP, 1.0, 1.0 + BUMP])
    out = []
    for symbol in factor_symbols(book):
        if symbol not in prices_usd:
            continue
        down, mid, up = book_value_at(book, prices_usd, now_ts, {symbol: bumps}, rate=rate)
        delta = (up - down) / (2 * BUMP)
        gamma = (up - 2 * mid + down) / BUMP**2 * 0.01
        out.append(FactorRisk(symbol, prices_usd[symbol], betas.get(symbol, 0.0), float(delta), float(gamma)))
    return tuple(out)
