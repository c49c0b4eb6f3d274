"""Perpetual futures: notional, equity, leverage, liquidation price, funding carry and delta, in USD.

A position is isolated: its margin plus unrealised P&L is its equity, and it is liquidated when equity falls to the
maintenance margin, `maintenance_margin_fraction` × notional at the mark price. All functions broadcast over the
mark price.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from agent.model import PerpPosition

HOURS_PER_YEAR = 24 * 365


def notional_usd(position: PerpPosition, mark_usd: ArrayLike) -> NDArray[np.float64]:
    """Return |size| × mark price, in USD."""
    return np.abs(position.size_underlying) * np.asarray(mark_usd, dtype=np.float64)


def equity_usd(position: PerpPosition, mark_usd: ArrayLike) -> NDArray[np.float64]:
    """Return margin + unrealised P&L at the mark price, in USD: what the position is worth to its owner."""
    mark = np.asarray(mark_usd, dtype=np.float64)
    return position.margin_usd + position.size_underlying * (mark - position.entry_price_usd)


def leverage(position: PerpPosition, mark_usd: ArrayLike) -> NDArray[np.float64]:
    """Return notional / equity (dimensionless; inf when equity is not positive)."""
    equity = equity_usd(position, mark_usd)
    notional = notional_usd(position, mark_usd)
    with np.errstate(divide="ignore"):
        return np.where(equity > 0, notional / np.where(equity > 0, equity, 1.0), np.inf)


def liquidation_price_usd(position: PerpPosition) -> float | None:
    """Return the mark price (USD) at which equity equals the maintenance margin, or None if there is none.

    Solves margin + q(P − entry) = m·|q|·P for P: P = (q·entry − margin) / (q − m·|q|). A long with margin at
    least its notional, or a short with m ≥ 1, has no liquidation price.
    """
    q = position.size_underlying
    if q == 0:
        return None
    m = position.maintenance_margin_fraction
    denominator = q - m * abs(q)
    if denominator == 0:
        return None
    price = (q * position.entry_price_usd - position.margin_usd) / denominator
    return price if price > 0 else None


def funding_carry_usd(position: PerpPosition, mark_usd: ArrayLike, horizon_hours: float) -> NDArray[np.float64]:
    """Return the funding the position receives (+) or pays (−) over `horizon_hours` at today's rate, in USD.

    A long pays size × mark × rate per hour when the rate is positive.
    """
    mark = np.asarray(mark_usd, dtype=np.float64)
    return -position.size_underlying * mark * position.funding_rate_per_hour * horizon_hours


def delta_underlying(position: PerpPosition) -> float:
    """Return dV/dS: the signed size in units of the underlying."""
    return position.size_underlying
