"""Revalue a book of options with `black_scholes` and, in the same run, with peers; print options/second.

Peers: a straightforward vectorised scipy.stats.norm implementation of the same formulas, on one thread and split
over the same threads as `black_scholes` (numpy and scipy release the GIL inside their ufuncs), and QuantLib's
AnalyticEuropeanEngine in a per-option loop (on a subsample). All compute price, delta, gamma, vega, theta and rho.
Run: .venv/bin/python benchmarks/greeks.py [--options N] [--quantlib-options M] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import QuantLib as ql
from scipy.stats import norm

from agent.risk.greeks import black_scholes

RATE = 0.03
YIELD = 0.01
# The threaded peer's chunk: the best of 16k..1M on the 2-core target (scipy.stats' per-call overhead is ~30 µs).
PEER_CHUNK = 131_072
THREADS = len(os.sched_getaffinity(0))


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


def threaded(peer: Callable[..., tuple[np.ndarray, ...]], pool: ThreadPoolExecutor, *args: np.ndarray | float):
    """Run `peer` on chunks of PEER_CHUNK options across `pool` and join the six outputs."""
    n = len(args[0])  # type: ignore[arg-type]
    chunks = [[a[lo : lo + PEER_CHUNK] if isinstance(a, np.ndarray) else a for a in args]
              for lo in range(0, n, PEER_CHUNK)]
    parts = list(pool.map(lambda chunk: peer(*chunk), chunks))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def rates(n: int, runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Options per second of each run, `repeats` times, interleaved so that a busy spell slows every line alike
    (after one warm-up each)."""
    for run in runs.values():
        run()
    out: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            out[name].append(n / (time.perf_counter() - start))
    return out


def cpu_seconds_per_option(n: int, run: Callable[[], object]) -> float:
    """Process CPU seconds per option of one run: the cost when the cores are shared, whatever the load."""
    start = time.process_time()
    run()
    return (time.process_time() - start) / n


def line(name: str, samples: list[float]) -> str:
    best, median, worst = max(samples), statistics.median(samples), min(samples)
    return f"{name:<28} best {best / 1e6:7.2f}  median {median / 1e6:7.2f}  worst {worst / 1e6:7.2f} M options/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", type=int, default=1_000_000)
    parser.add_argument("--quantlib-options", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    n, m = args.options, args.quantlib_options
    is_call, s, k, t, vol = book(n)
    print(f"options revalued (price + 5 Greeks): {n:,}; threads {THREADS}; QuantLib subsample {m:,}; "
          f"{args.repeats} interleaved runs each; load average {os.getloadavg()[0]:.1f}")
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for q in (0.0, YIELD):
            runs = {
                "black_scholes": lambda q=q: black_scholes(is_call, s, k, t, vol, RATE, q),
                f"scipy.stats.norm x{THREADS} threads": lambda q=q: threaded(
                    scipy_norm_greeks, pool, is_call, s, k, t, vol, RATE, q),
                "scipy.stats.norm 1 thread": lambda q=q: scipy_norm_greeks(is_call, s, k, t, vol, RATE, q),
            }
            measured = rates(n, runs, args.repeats)
            ours, peer, single = (max(v) for v in measured.values())
            print(f"  yield {q:4.0%}:")
            for name, samples in measured.items():
                print("    " + line(name, samples))
            cpu = {name: cpu_seconds_per_option(n, run) for name, run in runs.items()}
            print("    CPU ns per option: " + ", ".join(f"{name} {c * 1e9:.1f}" for name, c in cpu.items()))
            print(f"    ratio to the threaded peer {ours / peer:4.1f}x (best runs), "
                  f"{cpu[f'scipy.stats.norm x{THREADS} threads'] / cpu['black_scholes']:4.1f}x (CPU per option); "
                  f"to one thread {ours / single:4.1f}x; capacity of {THREADS} free cores at the CPU cost: "
                  f"{THREADS / cpu['black_scholes'] / 1e6:5.1f} M options/s")
    sub = (is_call[:m], s[:m], k[:m], t[:m], vol[:m])
    quantlib = max(rates(m, {"ql": lambda: quantlib_loop(*sub, RATE, YIELD)}, 1)["ql"])
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
