"""Fleet reading per block: N Aave accounts (every tenth with a Uniswap v3 LP position too) read in one block-pinned
batch per block and assessed where their figures moved, against the per-portfolio path (each portfolio its own
snapshot and its own assessment every cycle, as the daemon ran them before), in the same run on the same chain.

Per block it prints RPC requests, read time, assess+plan time, CPU seconds and resident memory, for a quiet block
(nothing but time moved) and for a block after an oracle move (every portfolio's figures moved). The peer is
measured on up to --peer-sample portfolios and scaled per portfolio (its cost is linear by construction).

Run: .venv/bin/python benchmarks/fleet.py [--sizes 10 100 1000] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from dataclasses import asdict, dataclass

from web3 import Web3

from agent.chain.fleet import ChainFleet, Fleet
from agent.chain.multicall import BatchLimits
from agent.chain.reader import PortfolioReader
from agent.cycle import CycleResult, decide, needs_assessment
from agent.localnet import Anvil, Localnet, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.fleet import FleetAccount, borrow_for_health_factor, fleet_addresses, fleet_policies, seed_fleet
from agent.localnet.market import set_weth_price
from agent.model import Snapshot
from agent.policy import Policy

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class BlockFigures:
    """One block's cost for one way of reading and assessing N portfolios."""

    portfolios: int
    requests: int
    eth_calls: int
    read_s: float
    assess_plan_s: float
    cpu_s: float
    assessed: int
    rss_mb: float


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def fleet_block(chain: ChainFleet, policies: dict[str, Policy], last: dict[str, CycleResult],
                requests: collections.Counter[str]) -> BlockFigures:
    """Read every portfolio at the newest block in one batch; assess and plan those whose figures moved."""
    requests.clear()
    cpu, start = time.process_time(), time.perf_counter()
    block = chain.latest_block()
    read = chain.read(block)
    read_s = time.perf_counter() - start
    assessed = 0
    for name, chain_snapshot in read.items():
        assert not isinstance(chain_snapshot, Exception), chain_snapshot
        portfolio = policies[name].portfolio
        snapshot = Snapshot(name, portfolio.account, portfolio.underlying, (chain_snapshot,))
        if needs_assessment(last.get(name), snapshot, policies[name].triggers.interval_s):
            last[name] = decide(snapshot, policies[name], log_decision=False)
            assessed += 1
    return BlockFigures(len(read), sum(requests.values()), requests["eth_call"], read_s,
                        time.perf_counter() - start - read_s, time.process_time() - cpu, assessed, rss_mb())


def peer_block(readers: list[PortfolioReader], total: int, requests: collections.Counter[str]) -> BlockFigures:
    """Each portfolio's own snapshot and assessment, on a sample, scaled to `total` portfolios."""
    requests.clear()
    cpu, read_s, plan_s = time.process_time(), 0.0, 0.0
    for reader in readers:
        start = time.perf_counter()
        snapshot = reader.read()
        middle = time.perf_counter()
        decide(snapshot, reader.policy, log_decision=False)
        read_s, plan_s = read_s + middle - start, plan_s + time.perf_counter() - middle
    scale = total / len(readers)
    return BlockFigures(total, round(sum(requests.values()) * scale), round(requests["eth_call"] * scale),
                        read_s * scale, plan_s * scale, (time.process_time() - cpu) * scale, total, rss_mb())


def seed(localnet: Localnet, count: int) -> tuple[list[Policy], float]:
    accounts = [FleetAccount(a, 5 + i % 11, borrow_for_health_factor(5 + i % 11, 1.9 + (i % 10) / 10),
                             lp=i % 10 == 0) for i, a in enumerate(fleet_addresses(count))]
    start = time.perf_counter()
    seed_fleet(localnet, accounts)
    return fleet_policies(localnet, accounts), time.perf_counter() - start


def run_size(localnet: Localnet, policies: list[Policy], limits: BatchLimits, sample: int, blocks: int,
             ) -> dict[str, object]:
    chain_helper = LocalChain(Web3(Web3.HTTPProvider(localnet.rpc_url)))
    requests: collections.Counter[str] = collections.Counter()
    count = lambda _i, method, _o: requests.update([method])  # noqa: E731
    fleet = Fleet(limits, on_request=count)
    for policy in policies:
        PortfolioReader(policy, fleet=fleet)
    (chain,) = fleet.chains.values()
    by_name = {p.portfolio.name: p for p in policies}
    last: dict[str, CycleResult] = {}
    first = fleet_block(chain, by_name, last, requests)  # discovery and every first assessment
    quiet, moved = [], []
    price = 2_000.0
    for _ in range(blocks):
        chain_helper.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        quiet.append(fleet_block(chain, by_name, last, requests))
        price *= 0.99
        set_weth_price(chain_helper, localnet, price)
        moved.append(fleet_block(chain, by_name, last, requests))
    set_weth_price(chain_helper, localnet, 2_000.0)
    readers = [PortfolioReader(p, on_request=count) for p in policies[:sample]]
    for reader in readers:
        reader.read()  # discovery is not part of a cycle
    peer = peer_block(readers, len(policies), requests)
    best = lambda figures: min(figures, key=lambda f: f.cpu_s)  # noqa: E731  # the machine is shared
    return {"portfolios": len(policies), "first_block": asdict(first), "quiet_block": asdict(best(quiet)),
            "moved_block": asdict(best(moved)), "peer": asdict(peer), "peer_sample": len(readers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--blocks", type=int, default=3, help="quiet and moved blocks per size (best is shown)")
    parser.add_argument("--peer-sample", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    limits = BatchLimits()  # the defaults fit anvil's 2 MB request and 30M gas limits
    results = []
    with Anvil() as node:
        localnet = build_localnet(node.url, node.chain_id)
        policies, seed_s = seed(localnet, max(args.sizes))
        for size in sorted(args.sizes):
            results.append(run_size(localnet, policies[:size], limits, min(size, args.peer_sample), args.blocks))
    report = {"seeded_accounts": len(policies), "seed_s": round(seed_s, 2), "limits": asdict(limits),
              "sizes": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"seeded {len(policies):,} Aave accounts (every tenth with an LP position) in {seed_s:.1f} s")
    print(f"{'N':>5} {'block':8} {'requests':>8} {'eth_call':>8} {'read ms':>8} {'assess ms':>9} {'CPU s':>6} "
          f"{'assessed':>8} {'RSS MB':>7}")
    for size in results:
        for label in ("quiet_block", "moved_block", "peer"):
            f = BlockFigures(**size[label])  # type: ignore[arg-type]
            print(f"{f.portfolios:>5} {label.removesuffix('_block'):8} {f.requests:>8} {f.eth_calls:>8} "
                  f"{f.read_s * 1e3:>8.1f} {f.assess_plan_s * 1e3:>9.1f} {f.cpu_s:>6.3f} {f.assessed:>8} "
                  f"{f.rss_mb:>7.0f}")
        peer, moved = BlockFigures(**size["peer"]), BlockFigures(**size["moved_block"])  # type: ignore[arg-type]
        wall = (peer.read_s + peer.assess_plan_s) / (moved.read_s + moved.assess_plan_s)
        print(f"      peer / fleet after a move: requests {peer.requests / moved.requests:.0f}x, "
              f"CPU {peer.cpu_s / moved.cpu_s:.1f}x, wall {wall:.1f}x")


if __name__ == "__main__":
    main()
