"""European option prices and Greeks: Black-Scholes-Merton with a continuous yield, and Black-76.

All functions broadcast numpy arrays and scalars and return raw derivatives (DESIGN.md, units): delta per 1 unit of
the underlying, gamma per unit², vega per 1.00 of vol, theta = −∂V/∂T per year, rho = ∂V/∂r per 1.00 of rate.
Desk units (USD per 1%, per vol point, per day) are made in `risk/portfolio.py`.

At expiry (t = 0) or zero vol the option is worth its discounted forward intrinsic value and its Greeks are those of
that payoff: gamma and vega are 0 and theta is the carry alone (exactly at the forward, delta takes half the digital).
Spot, forward and strike must be positive.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Below this many options one thread is faster than handing blocks to a pool.
_PARALLEL_MIN = 200_000
# Below this total vol σ√t an option is priced at its intrinsic limit: d1² would overflow, and the time value is
# zero to machine precision anyway.
_MIN_TOTAL_VOL = 1e-100
# Options per block: large enough that the ~50 ufunc calls per block cost little Python overhead, small enough
# that a block's arrays stay in cache (measured on the 2-core target: 16k-64k are best).
_BLOCK = 32_768

Array = NDArray[np.float64]
# A scalar stays a float so that numpy broadcasts it without materialising a full array.
_Operand = float | Array


@dataclass(frozen=True, slots=True)
class Greeks:
    """Price and raw Greeks of one option or an array of options, per option (multiply by quantity yourself).

    Fields have the broadcast shape of the inputs: price and vega in the currency of the strike (vega per 1.00 vol),
    delta per 1 unit of the underlying, gamma per unit², theta per year (−∂V/∂T), rho per 1.00 of rate.
    """

    price: Array
    delta: Array
    gamma: Array
    vega: Array
    theta: Array
    rho: Array


def black_scholes(
    is_call: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    vol: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike = 0.0,
) -> Greeks:
    """Return the BSM price and Greeks of European options on a spot paying a continuous yield `div_yield`.

    `vol`, `rate` and `div_yield` are annual and continuously compounded (0.05 = 5%); rho holds `div_yield` fixed.
    """
    return _evaluate(is_call, spot, strike, t_years, vol, rate, div_yield, black76=False)


def black76(
    is_call: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    vol: ArrayLike,
    rate: ArrayLike,
) -> Greeks:
    """Return the Black-76 price and Greeks of European options on a forward (price paid at expiry, discounted).

    Delta and gamma are per unit of the forward; theta and rho hold the forward fixed, so rho = −t·price.
    """
    return _evaluate(is_call, forward, strike, t_years, vol, rate, rate, black76=True)


def _evaluate(
    is_call: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    vol: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    *,
    black76: bool,
) -> Greeks:
    numbers = (spot, strike, t_years, vol, rate, div_yield)
    raw = [np.asarray(is_call), *(np.asarray(x, dtype=np.float64) for x in numbers)]
    shape = np.broadcast_shapes(*(x.shape for x in raw))
    size = math.prod(shape)
    is_call_flat = raw[0] if raw[0].size == 1 else np.broadcast_to(raw[0], shape).reshape(-1)
    operands = [_flat_operand(x, shape) for x in raw[1:]]
    outputs = [np.empty(size) for _ in range(6)]

    workers = min(_cpu_count(), -(-size // _BLOCK)) if size >= _PARALLEL_MIN else 1
    share = -(-size // workers)

    def run(first: int) -> None:
        # One scratch set per worker, reused block after block: fresh large arrays would page-fault on first touch.
        scratch = [np.empty(min(_BLOCK, size)) for _ in range(6)]
        for lo in range(first, min(first + share, size), _BLOCK):
            hi = min(lo + _BLOCK, first + share, size)
            w_phi, *work = (w[: hi - lo] for w in scratch)
            phi = _phi(is_call_flat, lo, hi, w_phi)
            s, k, t, vol, r, q = (_slice(x, lo, hi) for x in operands)
            price, delta, gamma, vega, theta, rho = (o[lo:hi] for o in outputs)
            _kernel(phi, s, k, t, vol, r, q, price, delta, gamma, vega, theta, rho, *work, black76=black76)

    if workers > 1:
        # numpy and scipy ufuncs release the GIL, so the workers' blocks run truly in parallel.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(0, size, share)))
    else:
        run(0)
    return Greeks(*(o.reshape(shape) for o in outputs))


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _flat_operand(x: NDArray[np.float64], shape: tuple[int, ...]) -> _Operand:
    if x.size == 1:
        return float(x.reshape(()))
    return np.ascontiguousarray(np.broadcast_to(x, shape)).reshape(-1)


def _phi(is_call: NDArray[np.bool_], lo: int, hi: int, out: Array) -> _Operand:
    """Return φ = +1 for calls and −1 for puts, as a float when all options share one kind."""
    if is_call.size == 1:
        return 1.0 if bool(is_call.reshape(())) else -1.0
    np.multiply(is_call[lo:hi], 2.0, out=out)
    out -= 1.0
    return out


def _slice(x: _Operand, lo: int, hi: int) -> _Operand:
    return x if isinstance(x, float) else x[lo:hi]


def _kernel(
    phi: _Operand,
    s: _Operand,
    k: _Operand,
    t: _Operand,
    vol: _Operand,
    r: _Operand,
    q: _Operand,
    price: Array,
    delta: Array,
    gamma: Array,
    vega: Array,
    theta: Array,
    rho: Array,
    w_sqrt_t: Array,
    w_v: Array,
    w_fk: Array,
    w_fs: Array,
    w_d1: Array,
    *,
    black76: bool,
) -> None:
    """Fill the six output blocks in place.

    With fs = S·e^(−qt) and fk = K·e^(−rt): price = φ(fs·N(φd1) − fk·N(φd2)). Every Greek is a product of
    fs·n(d1), a1 = φ·fs·N(φd1) and a2 = φ·fk·N(φd2), so each transcendental is evaluated once per option.
    The five `w_` arrays are scratch space, reused through `out=` so no other temporaries are made.
    """
    n = price.shape[0]

    sqrt_t = np.sqrt(t, out=w_sqrt_t) if not isinstance(t, float) else np.full(n, math.sqrt(t))
    v = np.multiply(vol, sqrt_t, out=w_v)  # total vol σ√t
    # One reduction pass; the mask itself is only built in the rare block that needs it.
    any_degenerate = n > 0 and float(v.min()) <= _MIN_TOTAL_VOL
    degenerate = np.less_equal(v, _MIN_TOTAL_VOL) if any_degenerate else np.zeros(0, dtype=bool)
    if any_degenerate:
        # These are overwritten with their intrinsic limit below; 1.0 keeps the arithmetic finite and quiet.
        v[degenerate] = 1.0

    fk = np.multiply(t, -r, out=w_fk)
    np.exp(fk, out=fk)
    fk *= k
    no_yield = not black76 and isinstance(q, float) and q == 0.0
    fs: _Operand = s
    if not no_yield:
        fs = np.multiply(t, -q, out=w_fs)
        np.exp(fs, out=fs)
        fs *= s

    d1 = np.divide(fs, fk, out=w_d1)
    np.log(d1, out=d1)
    d1 /= v
    half_v = np.multiply(v, 0.5, out=price)
    d1 += half_v
    d2 = np.subtract(d1, v, out=rho)
    big_n1 = np.multiply(d1, phi, out=delta)
    ndtr(big_n1, out=big_n1)
    big_n2 = np.multiply(d2, phi, out=rho)
    ndtr(big_n2, out=big_n2)
    pdf = np.square(d1, out=d1)
    pdf *= -0.5
    np.exp(pdf, out=pdf)

    if any_degenerate:
        _set_intrinsic_limit(degenerate, phi, fs, fk, pdf, big_n1, big_n2)

    a1 = big_n1
    a1 *= fs
    a1 *= phi  # φ·fs·N(φd1), in `delta`
    a2 = big_n2
    a2 *= fk
    a2 *= phi  # φ·fk·N(φd2), in `rho`
    fs_pdf = pdf
    fs_pdf *= fs
    fs_pdf *= _INV_SQRT_2PI  # fs·n(d1)

    np.subtract(a1, a2, out=price)
    np.multiply(fs_pdf, sqrt_t, out=vega)
    s_v = np.multiply(v, s, out=w_sqrt_t)
    s_v *= s
    np.divide(fs_pdf, s_v, out=gamma)  # fs·n(d1) / (S²·σ√t)
    diffusion = np.multiply(vol, s, out=w_v)  # σ·S
    np.square(diffusion, out=diffusion)
    diffusion *= gamma
    diffusion *= -0.5  # −½σ²S²Γ: the time decay of the convexity
    if black76:
        np.multiply(price, r, out=theta)
        theta += diffusion
        np.multiply(price, t, out=rho)
        rho *= -1.0
    else:
        np.multiply(a2, -r, out=theta)
        theta += diffusion
        if not no_yield:
            carry = np.multiply(a1, q, out=w_fk)
            theta += carry
        np.multiply(a2, t, out=rho)
    np.divide(a1, s, out=delta)


def _set_intrinsic_limit(
    mask: NDArray[np.bool_],
    phi: _Operand,
    fs: _Operand,
    fk: Array,
    pdf: Array,
    big_n1: Array,
    big_n2: Array,
) -> None:
    """With no diffusion left N(φd1) and N(φd2) are the indicator of ending in the money (½ at the forward)."""
    forward_value = np.broadcast_to(fs, fk.shape)[mask] - fk[mask]
    moneyness = np.sign(forward_value * (phi if isinstance(phi, float) else phi[mask]))
    in_the_money = 0.5 * (moneyness + 1.0)
    big_n1[mask] = in_the_money
    big_n2[mask] = in_the_money
    pdf[mask] = 0.0
