"""Where a health factor crosses 1 as the prices move: a scan outward from spot and a bisection of the first
bracket, for any health factor given as a function of the price factor (an Aave account, an account with LPs)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

WAD = 10**18
LIQUIDATION_THRESHOLD_WAD = WAD  # liquidation is allowed strictly below HF 1
# How far the root finder looks for a crossing: down to 1% of spot, up to 100× spot.
_MIN_FACTOR = 0.01
_MAX_FACTOR = 100.0
_SCAN_STEPS = 96
_BISECTIONS = 60


def liquidation_shocks(
    health_at: Callable[[float], int],
) -> tuple[float | None, float | None]:
    """Return the factors on the underlying (1 = no move), down and up, nearest to 1 at which `health_at(factor)`
    (a health factor in wad) first falls below 1; None on a side where no move within 1%..100× of spot does.

    A factor of exactly 1 on both sides means the account is liquidatable now. The search scans a geometric grid
    outward from 1 and bisects the first interval where the health factor crosses 1, so it also finds crossings of
    health factors that are not monotone in the price (an LP whose composition changes with the price).
    """
    if health_at(1.0) < LIQUIDATION_THRESHOLD_WAD:
        return 1.0, 1.0
    return _first_crossing(health_at, _MIN_FACTOR), _first_crossing(health_at, _MAX_FACTOR)


def _first_crossing(health_at: Callable[[float], int], bound: float) -> float | None:
    grid = np.geomspace(1.0, bound, _SCAN_STEPS + 1)
    healthy = 1.0
    for factor in grid[1:]:
        if health_at(float(factor)) < LIQUIDATION_THRESHOLD_WAD:
            return bisect(health_at, healthy, float(factor))
        healthy = float(factor)
    return None


def bisect(health_at: Callable[[float], int], healthy: float, liquidatable: float) -> float:
    """Return the liquidatable end of a bracket narrowed to 1e-12 relative (or _BISECTIONS halvings)."""
    for _ in range(_BISECTIONS):
        if abs(liquidatable - healthy) <= 1e-12 * abs(healthy):
            break
        mid = 0.5 * (healthy + liquidatable)
        if health_at(mid) < LIQUIDATION_THRESHOLD_WAD:
            liquidatable = mid
        else:
            healthy = mid
    return liquidatable
