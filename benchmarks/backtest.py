"""Backtest speed: hourly bars per second of `ballast backtest` over the full hourly file for each demo portfolio
(the policy's run and the unmanaged one), and, in the same run, the same simulation without the trigger gate (the
full cycle — risk report with its liquidation search, and the plan — on every bar, as a naive backtest loop would
run it) on a sample of the file.

Run: .venv/bin/python benchmarks/backtest.py [--prices ../shared/data/market/eth_usd_1h.csv] [--sample-bars N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agent.policy import load_policy
from agent.sim.engine import Simulation
from agent.sim.keepers import PolicyKeeper
from agent.sim.market import PricePath, load_prices
from agent.sim.portfolio import load_portfolio

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRICES = ROOT.parent / "shared" / "data" / "market" / "eth_usd_1h.csv"
TARGET_S = 10.0


def timed(spec_name: str, path: PricePath, gate: bool, managed: bool = True) -> tuple[float, int, int]:
    """Return (CPU seconds, liquidations, actions) of one run: CPU time, since the machine is shared and its wall
    clock depends on the others' load."""
    spec = load_portfolio(ROOT / "config" / f"portfolio.{spec_name}.yaml")
    policy = load_policy(ROOT / "config" / "backtest" / f"policy.{spec_name}.yaml") if managed else None
    sim = Simulation(spec, path)
    start = time.process_time()
    run = sim.run(PolicyKeeper(policy, gate=gate) if policy is not None else None)
    return time.process_time() - start, len(run.liquidations), len(run.actions)


def first_bars(path: PricePath, n: int) -> PricePath:
    """Return the path's first `n` bars."""
    return PricePath(path.source, path.unix[:n], path.open[:n], path.high[:n], path.low[:n], path.close[:n],
                     path.volume[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES)
    parser.add_argument("--sample-bars", type=int, default=1_000, help="bars for the ungated peer")
    # From 2020-03-01: the sample holds the March 2020 crash, so both runs have decisions to agree on.
    parser.add_argument("--sample-start", type=int, default=1_440, help="first bar of the peer's sample")
    parser.add_argument("--sample-only", action="store_true", help="only the gated run against its peer")
    args = parser.parse_args()
    path = load_prices(args.prices)
    # Compile (or load from numba's cache) the option kernels first: the first run after `risk/greeks.py` changes
    # spends tens of seconds compiling, which is not the backtest's cost.
    timed("protected-long", first_bars(path, 48), gate=True)
    first, last = path.window()
    print(f"{args.prices}: {len(path):,} hourly bars, {first} .. {last}")
    for name in () if args.sample_only else ("leveraged-long", "protected-long", "delta-neutral-lp"):
        seconds, liquidations, actions = timed(name, path, gate=True)
        verdict = "under" if seconds < TARGET_S else "OVER"
        print(f"{name:17} managed   {seconds:6.2f} CPU s  {len(path) / seconds:8,.0f} bars/s  ({verdict} the "
              f"{TARGET_S:g} s target; {liquidations} liquidations, {actions} actions)")
        seconds_u, liquidations_u, _ = timed(name, path, gate=True, managed=False)
        print(f"{name:17} unmanaged {seconds_u:6.2f} CPU s  {len(path) / seconds_u:8,.0f} bars/s  "
              f"({liquidations_u} liquidations)")
    window = slice(args.sample_start, args.sample_start + args.sample_bars)
    sample = PricePath(path.source, path.unix[window], path.open[window], path.high[window], path.low[window],
                       path.close[window], path.volume[window])
    # The peer: the same simulation, keeper and policy with the full cycle on every bar, which is how a competent
    # backtest without a trigger gate runs the daemon's cycle. Both must take the same decisions, or the ratio
    # would compare different work.
    gated, liquidations_g, actions_g = timed("leveraged-long", sample, gate=True)
    naive, liquidations_n, actions_n = timed("leveraged-long", sample, gate=False)
    same = "the same" if (liquidations_g, actions_g) == (liquidations_n, actions_n) else "DIFFERENT"
    print(f"leveraged-long, {len(sample):,} bars from {sample.window()[0]}: gated {len(sample) / gated:,.0f} "
          f"bars/s, full cycle every bar {len(sample) / naive:,.0f} bars/s: ratio {naive / gated:.1f}x "
          f"({same} decisions: {actions_g} vs {actions_n} actions, {liquidations_g} vs {liquidations_n} liquidations)")


if __name__ == "__main__":
    main()
