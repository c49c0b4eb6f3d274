"""European option prices and Greeks: Black-Scholes-Merton with a continuous yield.

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
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Below this many options one thread is faster than handing blocks to a pool.
_PARALLEL_MIN = 200_000
# Below this total vol σ√t an option is priced at its intrinsic limit: d1² would overflow, and the time value is
# zero to machine precision anyway.
_MIN_TOTAL_VOL = 1e-100
# Options per block: large enough that the nine calls per block cost little Python overhead, small enough that a
# block's dozen arrays stay in the core's cache (measured on the 2-core target: 4k-16k are best).
_BLOCK = 8_192

Array = NDArray[np.float64]
_SQRT1_2 = math.sqrt(0.5)
# ln of the largest double: beyond e^(−_MAX_LOG) cephes' erfc returns 0 rather than a subnormal.
_MAX_LOG = 7.09782712893383996843e2
# Cephes' rational approximations of erf on |x| < 1 (T/U, in x²) and of erfc·e^(x²) on 1 ≤ x < 8 (P/Q) and x ≥ 8
# (R/S), the ones scipy.special.ndtr evaluates; highest power first, the denominators' leading 1 implied.
_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3, 7.00332514112805075473e3,
      5.55923013010394962768e4)
_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3, 2.26290000613890934246e4,
      4.92673942608635921086e4)
_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0, 4.86371970985681366614e1,
      1.96520832956077098242e2, 5.26445194995477358631e2, 9.34528527171957607540e2, 1.02755188689515710272e3,
      5.57535335369399327526e2)
_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2, 9.75708501743205489753e2,
      1.82390916687909736289e3, 2.24633760818710981792e3, 1.65666309194161350182e3, 5.57535340817727675546e2)
_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0, 6.16021097993053585195e0,
      7.40974269950448939160e0, 2.97886665372100240670e0)
_S = (2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1, 1.70814450747565897222e1,
      9.60896809063285878198e0, 3.36907645100081516050e0)


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
    raw = (spot, strike, t_years, vol, rate, div_yield)
    operands = [np.asarray(x, dtype=np.float64) for x in raw]
    call = np.asarray(is_call, dtype=np.bool_)
    shape = np.broadcast_shapes(call.shape, *(x.shape for x in operands))
    size = math.prod(shape)
    outputs = np.empty((6, size))
    no_yield = operands[5].size == 1 and float(operands[5].reshape(())) == 0.0
    if size == 1:
        # One option (a backtest marks its book one bar at a time): the same kernels on the same one-element
        # arrays as the block path below, without its broadcasting, scratch and worker set-up (most of a scalar
        # call's cost).
        s, k, t, vol, r, q = (x.reshape(1) for x in operands)
        _block(call.reshape(1), s, k, t, vol, r, q, outputs, np.empty((5, 1)), no_yield)
        return Greeks(*(o.reshape(shape) for o in outputs))
    flat = [_flat(x, shape) for x in (call, *operands)]
    workers = min(_cpu_count(), -(-size // _BLOCK)) if size >= _PARALLEL_MIN else 1
    share = -(-size // workers)

    def run(first: int) -> None:
        # One scratch set per worker, reused block after block: fresh large arrays would page-fault on first touch.
        # A scalar operand becomes one constant block, so that every kernel reads contiguous arrays of one type.
        width = min(_BLOCK, size)
        scratch = np.empty((5, width))
        constant = [np.full(width, x[0]) if x.size == 1 else None for x in flat]
        for lo in range(first, min(first + share, size), _BLOCK):
            hi = min(lo + _BLOCK, first + share, size)
            n = hi - lo
            kind, s, k, t, vol, r, q = (x[lo:hi] if c is None else c[:n] for x, c in zip(flat, constant, strict=True))
            _block(kind, s, k, t, vol, r, q, outputs[:, lo:hi], scratch[:, :n], no_yield)

    if workers > 1:
        # numpy's ufuncs and the compiled kernel release the GIL, so the workers' blocks run truly in parallel.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(0, size, share)))
    else:
        run(0)
    return Greeks(*(o.reshape(shape) for o in outputs))


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _flat(x: NDArray[Any], shape: tuple[int, ...]) -> NDArray[Any]:
    """Return a one-element array for a scalar operand (filled into a constant block per worker), else a flat
    contiguous copy of the broadcast operand."""
    if x.size == 1:
        return x.reshape(1)
    return np.ascontiguousarray(np.broadcast_to(x, shape)).reshape(-1)


def _block(
    is_call: NDArray[np.bool_], s: Array, k: Array, t: Array, vol: Array, r: Array, q: Array, out: Array,
    scratch: Array, no_yield: bool,
) -> None:
    """Fill `out` (price, delta, gamma, vega, theta, rho rows) for one block of options.

    With fs = S·e^(−qt) and fk = K·e^(−rt): d1 = ln(fs/fk)/σ√t + σ√t/2. The exponentials and the logarithm run as
    numpy ufuncs (SIMD on this hardware, ~1 ns each, against ~10 ns for a scalar libm call in compiled code);
    the compiled kernels do the arithmetic and the normal CDF, which needs e^(−d²/2) and otherwise only rational
    functions.
    """
    exp_rt, exp_qt, log_ratio, exp_d1, exp_d2 = scratch
    np.multiply(t, r, out=exp_rt)
    exp_rt *= -1.0
    np.exp(exp_rt, out=exp_rt)
    if not no_yield:
        np.multiply(t, q, out=exp_qt)
        exp_qt *= -1.0
        np.exp(exp_qt, out=exp_qt)
    _forward_log_ratio(s, k, exp_rt, exp_qt, no_yield, log_ratio)
    np.log(log_ratio, out=log_ratio)
    _half_squares(log_ratio, t, vol, exp_d1, exp_d2)
    np.exp(exp_d1, out=exp_d1)
    np.exp(exp_d2, out=exp_d2)
    _greeks(is_call, s, k, t, vol, r, q, exp_rt, exp_qt, log_ratio, exp_d1, exp_d2, no_yield, *out)


# The kernels: compiled once to the on-disk cache, release the GIL, and divide by zero as IEEE does (no checks that
# would stop the loops from vectorising). fastmath stays off: results must match the reference to the last bits.
_kernel = njit(nogil=True, cache=True, error_model="numpy", fastmath=False)
# Helpers are inlined into the kernels' loops: a call would stop them from vectorising.
_inline = njit(inline="always", cache=True, error_model="numpy", fastmath=False)


@_kernel
def _forward_log_ratio(s: Array, k: Array, exp_rt: Array, exp_qt: Array, no_yield: bool, out: Array) -> None:
    """Write fs/fk = S·e^(−qt) / (K·e^(−rt)) into `out` (the logarithm is taken by numpy)."""
    for i in range(out.size):
        fs = s[i] if no_yield else exp_qt[i] * s[i]
        out[i] = fs / (exp_rt[i] * k[i])


@_kernel
def _half_squares(log_ratio: Array, t: Array, vol: Array, out_d1: Array, out_d2: Array) -> None:
    """Write −d1²/2 and −d2²/2 (to be exponentiated by numpy)."""
    for i in range(log_ratio.size):
        d1, d2 = _d1_d2(log_ratio[i], _total_vol(vol[i], t[i]))
        out_d1[i] = d1 * d1 * -0.5
        out_d2[i] = d2 * d2 * -0.5


@_inline
def _total_vol(vol: float, t: float) -> float:
    """σ√t, or 1.0 below _MIN_TOTAL_VOL (those options take their intrinsic limit; 1.0 keeps the arithmetic quiet)."""
    v = vol * math.sqrt(t)
    return 1.0 if v <= _MIN_TOTAL_VOL else v


@_inline
def _d1_d2(log_ratio: float, v: float) -> tuple[float, float]:
    d1 = log_ratio / v + v * 0.5
    return d1, d1 - v


@_inline
def _horner(x: float, coefficients: tuple[float, ...], leading: float) -> float:
    p = leading
    for c in coefficients:
        p = p * x + c
    return p


@_inline
def _ndtr(x: float, exp_half_x2: float) -> float:
    """Return the standard normal CDF at `x`, given e^(−x²/2), as scipy.special.ndtr evaluates it (cephes).

    All three approximations are evaluated and one is selected, so that the loops calling this vectorise.
    """
    y = x * _SQRT1_2
    z = abs(y)
    w = y * y
    central = 0.5 + 0.5 * (y * _horner(w, _T[1:], _T[0]) / _horner(w, _U, 1.0))
    zc = min(z, 64.0)  # past 27 the tail is 0 anyway; this keeps the polynomials finite
    near = _horner(zc, _P[1:], _P[0]) / _horner(zc, _Q, 1.0)
    far = _horner(zc, _R[1:], _R[0]) / _horner(zc, _S, 1.0)
    tail = 0.0 if z * z > _MAX_LOG else 0.5 * (exp_half_x2 * (near if z < 8.0 else far))
    return central if z < 1.0 else (1.0 - tail if y > 0.0 else tail)


@_kernel
def _greeks(
    is_call: NDArray[np.bool_], s: Array, k: Array, t: Array, vol: Array, r: Array, q: Array, exp_rt: Array,
    exp_qt: Array,
    log_ratio: Array, exp_d1: Array, exp_d2: Array, no_yield: bool, price: Array, delta: Array,
    gamma: Array, vega: Array, theta: Array, rho: Array,
) -> None:
    """Fill the six output blocks from the exponentials (e^(−rt), e^(−qt), e^(−d1²/2), e^(−d2²/2)) and ln(fs/fk).

    price = φ(fs·N(φd1) − fk·N(φd2)); every Greek is a product of fs·n(d1), a1 = φ·fs·N(φd1) and a2 = φ·fk·N(φd2).
    With no diffusion left (σ√t ≤ _MIN_TOTAL_VOL) N(φd1) and N(φd2) are the indicator of ending in the money
    (½ at the forward) and n(d1) is 0.
    """
    for i in range(price.size):
        si, ri, ti = s[i], r[i], t[i]
        p = 1.0 if is_call[i] else -1.0  # φ
        fk = exp_rt[i] * k[i]
        fs = si if no_yield else exp_qt[i] * si
        sqrt_t = math.sqrt(ti)
        v = _total_vol(vol[i], ti)
        d1, d2 = _d1_d2(log_ratio[i], v)
        n1, n2, pdf = _ndtr(d1 * p, exp_d1[i]), _ndtr(d2 * p, exp_d2[i]), exp_d1[i]
        if vol[i] * sqrt_t <= _MIN_TOTAL_VOL:
            moneyness = (fs - fk) * p
            in_the_money = 1.0 if moneyness > 0.0 else (0.5 if moneyness == 0.0 else 0.0)
            n1, n2, pdf = in_the_money, in_the_money, 0.0
        a1 = n1 * fs * p
        a2 = n2 * fk * p
        fs_pdf = pdf * fs * _INV_SQRT_2PI
        price[i] = a1 - a2
        gamma[i] = fs_pdf / (v * si * si)
        diffusion = vol[i] * si
        diffusion = diffusion * diffusion * gamma[i] * -0.5  # −½σ²S²Γ: the time decay of the convexity
        carry = 0.0 if no_yield else a1 * q[i]
        theta[i] = a2 * -ri + diffusion + carry
        rho[i] = a2 * ti
        delta[i] = a1 / si
        vega[i] = fs_pdf * sqrt_t
