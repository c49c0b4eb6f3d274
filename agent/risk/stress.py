"""Stress: full revaluation of the book over a grid of shocks to the underlying's price and to option vols.

Every position is revalued (no Greek approximation) at each scenario, all scenarios at once: the spot shocks run
along axis 0 and the vol shocks along axis 1. Scenario health factors are float64 (DESIGN.md allows it), with the
chain's truncation of the weighted liquidation threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agent.model import AaveAccount, Position
from agent.risk import lending
from agent.risk.portfolio import value_usd

# −60%..+60% by 5% on the underlying; vols scaled by −50%..+100% by 25%.
SPOT_SHOCKS = np.round(np.arange(-0.60, 0.60 + 1e-9, 0.05), 10)
VOL_SHOCKS = np.round(np.arange(-0.50, 1.00 + 1e-9, 0.25), 10)


@dataclass(frozen=True, slots=True)
class StressResult:
    """P&L (USD) of the book per scenario, shape (spot shocks, vol shocks), and each Aave account's health factor
    per spot shock, shape (accounts, spot shocks) (vols do not move a health factor). Shocks are relative moves:
    −0.6 is a 60% fall of the underlying; +1.0 doubles every option's vol."""

    spot_shocks: NDArray[np.float64]
    vol_shocks: NDArray[np.float64]
    pnl_usd: NDArray[np.float64]
    health_factors: NDArray[np.float64]
    accounts: tuple[str, ...]

    def min_health_factor(self) -> NDArray[np.float64]:
        """Return the lowest health factor of any account per spot shock (inf with no accounts)."""
        if not self.accounts:
            return np.full(self.spot_shocks.shape, np.inf)
        return np.asarray(self.health_factors.min(axis=0))


def stress(
    positions: Iterable[Position],
    underlying: str,
    prices_usd: Mapping[str, float],
    now_ts: int,
    *,
    spot_shocks: NDArray[np.float64] = SPOT_SHOCKS,
    vol_shocks: NDArray[np.float64] = VOL_SHOCKS,
    rate: float = 0.0,
) -> StressResult:
    """Return the book's P&L against today's value and every Aave account's health factor on the shock grid."""
    book = tuple(positions)
    spot_factor = (1.0 + np.asarray(spot_shocks, dtype=np.float64))[:, None]
    vol_factor = (1.0 + np.asarray(vol_shocks, dtype=np.float64))[None, :]
    pnl = np.zeros((spot_factor.shape[0], vol_factor.shape[1]))
    for position in book:
        scenario = value_usd(
            position, underlying, prices_usd, now_ts, spot_factor=spot_factor, vol_factor=vol_factor, rate=rate
        )
        pnl += scenario - value_usd(position, underlying, prices_usd, now_ts, rate=rate)
    accounts = [p for p in book if isinstance(p, AaveAccount)]
    health = np.array(
        [lending.scenario_health_factor(a, (underlying,), spot_factor[:, 0]) for a in accounts]
    ).reshape(len(accounts), spot_factor.shape[0])
    return StressResult(
        spot_shocks=np.asarray(spot_shocks, dtype=np.float64),
        vol_shocks=np.asarray(vol_shocks, dtype=np.float64),
        pnl_usd=pnl,
        health_factors=health,
        accounts=tuple(f"{a.chain}:{a.account}" for a in accounts),
    )
