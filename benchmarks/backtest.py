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
    """Return (seconds, liquidations, actions) of one run."""
    spec = load_portfolio(ROOT / "config" / f"portfolio.{spec_name}.yaml")
    policy = load_policy(ROOT / "config" / "backtest" / f"policy.{spec_name}.yaml") if managed else None
    sim = Simulation(spec, path)
    start = time.perf_counter()
    run = sim.run(PolicyKeeper(policy, gate=gate) if policy is not None else None)
    return time.perf_counter() - start, len(run.liquidations), len(run.actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES)
    parser.add_argument("--sample-bars", type=int, default=1_000, help="bars for the ungated peer")
    args = parser.parse_args()
    path = load_prices(args.prices)
    first, last = path.window()
    print(f"{args.prices}: {len(path):,} hourly bars, {first} .. {last}")
    for name in ("leveraged-long", "protected-long", "delta-neutral-lp"):
        seconds, liquidations, actions = timed(name, path, gate=True)
        verdict = "under" if seconds < TARGET_S else "OVER"
        print(f"{name:17} managed   {seconds:6.2f} s  {len(path) / seconds:8,.0f} bars/s  ({verdict} the "
              f"{TARGET_S:g} s target; {liquidations} liquidations, {actions} actions)")
        seconds_u, liquidations_u, _ = timed(name, path, gate=True, managed=False)
        print(f"{name:17} unmanaged {seconds_u:6.2f} s  {len(path) / seconds_u:8,.0f} bars/s  "
              f"({liquidations_u} liquidations)")
    sample = PricePath(path.source, path.unix[: args.sample_bars], path.open[: args.sample_bars],
                       path.high[: args.sample_bars], path.low[: args.sample_bars], path.close[: args.sample_bars],
                       path.volume[: args.sample_bars])
    gated, _l, _a = timed("leveraged-long", sample, gate=True)
    naive, _l, _a = timed("leveraged-long", sample, gate=False)
    print(f"leveraged-long, first {len(sample):,} bars: gated {len(sample) / gated:,.0f} bars/s, full cycle every "
          f"bar {len(sample) / naive:,.0f} bars/s: ratio {naive / gated:.1f}x")


if __name__ == "__main__":
    main()
