"""Implied volatility of European options under BSM with a continuous yield, vectorised.

Method: work with the out-of-the-money side (put-call parity), normalise by √(F·K) so the price is a function of
log-moneyness x and total vol v = σ√t alone, start from the better of the at-the-money and the far-wing
approximations, and iterate Halley steps on ln(price), safeguarded by a bracket [v_lo, v_hi] that every iteration
narrows (a step that leaves the bracket bisects instead). The round trip recovers vols to ~1e-8 relative or better
from deep ITM to deep OTM and from an hour to years; where the time value is below ~1e-9 of spot, the price no
longer determines the vol in float64 and the solver returns a vol that reprices it.

"No solution": prices outside the no-arbitrage bounds (below the discounted intrinsic value or above the
discounted forward for a call / strike for a put) have no implied vol. `implied_vol` returns NaN there and
`no_solution` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

_ITERATIONS = 60
_TOLERANCE = 1e-14  # on the normalised price, relative
_V_MAX = 50.0
_PARITY_SLACK = 1e-13  # total vol above which an option is worth its upper bound to machine precision


@dataclass(frozen=True, slots=True)
class ImpliedVol:
    """Annual implied vols (NaN where there is none) and the mask of prices outside no-arbitrage bounds."""

    vol: NDArray[np.float64]
    no_solution: NDArray[np.bool_]


def implied_vol(
    price: ArrayLike,
    is_call: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike = 0.0,
) -> ImpliedVol:
    """Return the annual BSM vol that reproduces each `price` (same units as spot and strike), broadcasting.

    A price at the intrinsic bound (to rounding, 1e-13 of the forward) has vol 0; prices outside the bounds, or
    t ≤ 0, give NaN and are flagged in `no_solution`.
    """
    arrays = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (price, spot, strike, t_years, rate, div_yield)),
        np.asarray(is_call, dtype=bool),
    )
    p, s, k, t, r, q = (np.array(a, dtype=np.float64) for a in arrays[:6])
    call = np.array(arrays[6], dtype=bool)
    t_ok = t > 0
    t_safe = np.where(t_ok, t, 1.0)
    discount = np.exp(-r * t_safe)
    forward = s * np.exp((r - q) * t_safe)
    # Normalised undiscounted price per √(F·K), the form in which only x = ln(F/K) and v matter.
    root_fk = np.sqrt(forward * k)
    x = np.log(forward / k)
    undiscounted = p / discount
    # The out-of-the-money option carries all the time value: convert ITM prices by parity.
    otm_call = x <= 0.0
    intrinsic = np.where(call, forward - k, k - forward)
    otm_price = np.where(call == otm_call, undiscounted, undiscounted - intrinsic)
    upper = np.where(otm_call, forward, k)
    # Converting a deep ITM price by parity cancels digits: a time value a few ulps below zero is rounding, not
    # arbitrage, and means vol 0.
    lower_ok = otm_price >= -_PARITY_SLACK * np.maximum(forward, k)
    otm_price = np.maximum(otm_price, 0.0)
    beta = otm_price / root_fk
    upper_ok = otm_price < upper
    no_solution = ~(t_ok & lower_ok & upper_ok)
    # Unsolvable entries get a solvable stand-in so the vectorised iteration stays finite; they are masked below.
    beta = np.where(no_solution, 0.5 * np.exp(-0.5 * np.abs(x)), beta)
    v = _solve_total_vol(beta, -np.abs(x))
    vol = np.where(no_solution, np.nan, v / np.sqrt(t_safe))
    return ImpliedVol(vol.reshape(arrays[0].shape), no_solution.reshape(arrays[0].shape))


def _normalised_call(x: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.float64]:
    """Out-of-the-money (x ≤ 0) call per √(F·K): e^(x/2)·N(x/v + v/2) − e^(−x/2)·N(x/v − v/2)."""
    h = x / v
    return np.exp(0.5 * x) * ndtr(h + 0.5 * v) - np.exp(-0.5 * x) * ndtr(h - 0.5 * v)


def _solve_total_vol(beta: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return v = σ√t with _normalised_call(x, v) = beta, for x ≤ 0 and 0 ≤ beta < e^(x/2).

    The iteration runs on ln(price): deep out of the money the price is exponentially small in 1/v², and the log
    makes it nearly linear there, so Halley's step stays good from the wings to the money.
    """
    zero = beta <= 0.0
    beta = np.where(zero, 0.5 * np.exp(0.5 * x), beta)  # a solvable stand-in; the answer there is 0
    target = np.log(beta)
    lo = np.zeros_like(beta)
    hi = np.full_like(beta, _V_MAX)
    v = _initial_guess(beta, x)
    for _ in range(_ITERATIONS):
        price = _normalised_call(x, v)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            error = np.log(price) - target
            # The price rises with v, so the sign of the error narrows the bracket.
            lo = np.where(error < 0, v, lo)
            hi = np.where(error > 0, v, hi)
            h = x / v
            vega = np.exp(-0.5 * (h * h + 0.25 * v * v)) / np.sqrt(2.0 * np.pi)  # ∂price/∂v
            slope = vega / price  # ∂ln(price)/∂v
            curvature = slope * (h * h / v - 0.25 * v) - slope * slope  # ∂²ln(price)/∂v²
            newton = error / slope
            step = newton / (1.0 - 0.5 * newton * curvature / slope)
            proposed = v - np.where(np.isfinite(step), step, newton)
        inside = np.isfinite(proposed) & (proposed > lo) & (proposed < hi)
        v = np.where(inside, proposed, 0.5 * (lo + hi))
        # Done when the price is matched, or when the bracket has shrunk to rounding (deep wings, where the
        # price itself carries only a few correct digits).
        if np.all((np.abs(error) <= _TOLERANCE) | (hi - lo <= 4 * np.finfo(np.float64).eps * v)):
            break
    return np.where(zero, 0.0, v)


def _initial_guess(beta: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return a first v: near the money β ≈ v/√(2π) (Brenner-Subrahmanyam); far out of the money the leading
    term of ln β is x/2 − x²/(2v²), so v ≈ |x| / √(2(x/2 − ln β)). The larger of the two is the better one."""
    atm = beta * np.sqrt(2.0 * np.pi)
    wing = np.abs(x) / np.sqrt(2.0 * np.maximum(0.5 * x - np.log(beta), 1e-300))
    return np.clip(np.maximum(atm, wing), 1e-8, 0.5 * _V_MAX)
