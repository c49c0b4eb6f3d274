"""Revalue a book of options with `black_scholes` and, in the same run, with two peers; print options/second.

Peers: a straightforward vectorised scipy.stats.norm implementation of the same formulas, and QuantLib's
AnalyticEuropeanEngine in a per-option loop (on a subsample). All three compute price, delta, gamma, vega, theta
and rho. Run: .venv/bin/python benchmarks/greeks.py [--options N] [--quantlib-options M]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import QuantLib as ql
from scipy.stats import norm

from agent.risk.greeks import black_scholes

RATE = 0.03
YIELD = 0.01


def book(n: int, seed: int = 3) -> tuple[np.ndarray, ...]:
    """Mixed calls and puts on a spot of 2,000: strikes ±50%, 1 day to 2 years, vols 20%..150%."""
    rng = np.random.default_rng(seed)
    is_call = rng.random(n) < 0.5
    spot = np.full(n, 2000.0)
    strike = spot * rng.uniform(0.5, 1.5, n)
    t = rng.uniform(1 / 365, 2.0, n)
    vol = rng.uniform(0.2, 1.5, n)
    return is_call, spot, strike, t, vol


def scipy_norm_greeks(is_call, s, k, t, vol, r, q):
    """The textbook implementation: scipy.stats.norm for N and n, one numpy expression per Greek."""
    phi = np.where(is_call, 1.0, -1.0)
    sqrt_t = np.sqrt(t)
    d1 = (np.log(s / k) + (r - q + 0.5 * vol**2) * t) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    n1, n2 = norm.cdf(phi * d1), norm.cdf(phi * d2)
    pdf = norm.pdf(d1)
    price = phi * (s * dq * n1 - k * dr * n2)
    delta = phi * dq * n1
    gamma = dq * pdf / (s * vol * sqrt_t)
    vega = s * dq * pdf * sqrt_t
    theta = -s * dq * pdf * vol / (2 * sqrt_t) - phi * r * k * dr * n2 + phi * q * s * dq * n1
    rho = phi * k * t * dr * n2
    return price, delta, gamma, vega, theta, rho


def quantlib_loop(is_call, s, k, t, vol, r, q) -> list[tuple[float, ...]]:
    """One AnalyticEuropeanEngine valuation per option, all six outputs."""
    today = ql.Date(1, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    out = []
    for c, s_i, k_i, t_i, v_i in zip(is_call, s, k, t, vol, strict=True):
        expiry = today + max(1, round(t_i * 365))
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(float(s_i))),
            ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), float(v_i), dc)),
        )
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if c else ql.Option.Put, float(k_i))
        option = ql.EuropeanOption(payoff, ql.EuropeanExercise(expiry))
        option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        out.append((option.NPV(), option.delta(), option.gamma(), option.vega(), option.theta(), option.rho()))
    return out


def best_rate(n: int, run: Callable[[], object], repeats: int) -> float:
    """Options per second of the fastest of `repeats` runs (after one warm-up run)."""
    run()
    best = min(_timed(run) for _ in range(repeats))
    return n / best


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", type=int, default=1_000_000)
    parser.add_argument("--quantlib-options", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    n, m = args.options, args.quantlib_options
    is_call, s, k, t, vol = book(n)
    print(f"options revalued (price + 5 Greeks): {n:,}; QuantLib subsample {m:,}")
    for q in (0.0, YIELD):
        ours = best_rate(n, lambda q=q: black_scholes(is_call, s, k, t, vol, RATE, q), args.repeats)
        peer = best_rate(n, lambda q=q: scipy_norm_greeks(is_call, s, k, t, vol, RATE, q), args.repeats)
        print(f"  yield {q:4.0%}: black_scholes {ours / 1e6:6.2f} M options/s, scipy.stats.norm "
              f"{peer / 1e6:6.2f} M options/s, ratio {ours / peer:4.1f}x")
    sub = (is_call[:m], s[:m], k[:m], t[:m], vol[:m])
    quantlib = best_rate(m, lambda: quantlib_loop(*sub, RATE, YIELD), 1)
    print(f"  yield {YIELD:4.0%}: QuantLib loop {quantlib / 1e6:8.4f} M options/s, black_scholes/QuantLib "
          f"ratio {ours / quantlib:,.0f}x")

    # The peers compute the same numbers, so the comparison is of equal work.
    g = black_scholes(is_call, s, k, t, vol, RATE, YIELD)
    reference = scipy_norm_greeks(is_call, s, k, t, vol, RATE, YIELD)
    worst = max(
        float(np.max(np.abs(a - b) / (1.0 + np.abs(b))))
        for a, b in zip((g.price, g.delta, g.gamma, g.vega, g.theta, g.rho), reference, strict=True)
    )
    print(f"  largest difference between black_scholes and the scipy peer (relative): {worst:.1e}")


if __name__ == "__main__":
    main()
