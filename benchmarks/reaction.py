"""Reaction in the next block at fleet size: the oracle moves accounts under their health-factor band at block B;
in how many blocks after B do their protective transactions land, with 1 and with 1,000 portfolios watched?

The chain mines a block a second (anvil's interval mining, switched on after seeding). Movers are Safes, as a
fund's accounts are, each with its keeper module and a keeper key of its own; they hold idle USDC and staggered
health factors, so that each 3% oracle step pushes exactly one of them under 1.5 (to ~1.48) while the others sit
above it; after its repay a mover sits at its target 2.9, out of reach of the remaining steps. The rest of the
fleet sits at 2.85-2.95, inside the band through every step. The daemon runs live (`agent.daemon.Daemon`, its own
journal): with 1 portfolio it watches only the mover of the step (a daemon per step), with 1,000 the movers and the
idle fleet together. After each move the blocks B+1, B+2, ... are scanned for the mover's keeper's transactions:
the lag of its first one and of the one that completes the protection (the recipe, to the module: approve and
repay in one transaction; a direct account would need two, B+2 at best for the second).

Run: .venv/bin/python benchmarks/reaction.py [--moves 20] [--watched 1 1000] [--json]
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from web3 import Web3

from agent.daemon import Daemon
from agent.localnet import Anvil, Localnet, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.fleet import (
    FleetAccount,
    borrow_for_health_factor,
    fleet_addresses,
    fleet_policies,
    fleet_policy,
    keyed_account,
    seed_fleet,
)
from agent.localnet.keeper import install_keeper_module
from agent.localnet.safe import SafeAccount, create_safe
from agent.localnet.world import FEED_DECIMALS
from agent.policy import Policy
from agent.settings import Settings
from agent.telemetry import configure_logging

STEP = 0.03  # each move lowers WETH by 3%
START_USD = 2_000.0
MAX_LAG = 12  # blocks scanned after each move
SUPPLY_WETH = 5.0


@dataclass(frozen=True)
class Mover:
    keeper: str  # signs the mover's transactions
    key: str
    policy: Policy
    module: str  # the Safe's keeper module: a transaction to it is a whole protective recipe


@dataclass(frozen=True)
class Reaction:
    """One move: the block that carried it and the lags (blocks after it) of the mover's transactions."""

    block: int
    first_lag: int | None
    complete_lag: int | None
    transactions: int


def mover_health_factor(step: int) -> float:
    """Health factor at the start price that the `step`-th move (0-based) takes from ~1.52 to ~1.48."""
    return 1.5 / (1 - STEP) ** (step + 0.5)


def mover_safes(localnet: Localnet, moves: int) -> list[tuple[SafeAccount, str]]:
    """One Safe per mover, owned by a dev account, its keeper module's keeper a keyed account with gas money;
    returns (the Safe, the keeper's key) per mover."""
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    chain, world, owner = LocalChain(w3), localnet.world, localnet.accounts[1].address
    safes = []
    for g in range(moves):
        keeper, key = keyed_account(g)
        w3.provider.make_request("anvil_setBalance", [keeper, hex(10**18)])  # type: ignore[arg-type]
        safe = create_safe(chain, world, owner, salt=10_000 + g)
        safes.append((install_keeper_module(chain, world, safe, owner, keeper), key))
    return safes


def seed(localnet: Localnet, moves: int, watched: int) -> tuple[list[Mover], list[Policy]]:
    safes = mover_safes(localnet, moves)
    movers = [FleetAccount(safe.address, SUPPLY_WETH, borrow_for_health_factor(SUPPLY_WETH, mover_health_factor(g)),
                           idle_usdc=20_000) for g, (safe, _key) in enumerate(safes)]
    idle = [FleetAccount(a, 5 + i % 11, borrow_for_health_factor(5 + i % 11, 2.85 + (i % 10) / 100))
            for i, a in enumerate(fleet_addresses(max(0, watched - moves)))]
    seed_fleet(localnet, movers + idle)
    policies = [fleet_policy(localnet, f"mover-{g}", safe.address, mode="live", interval_s=60,
                             health_factor_target=2.9, module=safe.module) for g, (safe, _key) in enumerate(safes)]
    return ([Mover(safe.keeper, key, policy, safe.module) for (safe, key), policy in zip(safes, policies, strict=True)],
            fleet_policies(localnet, idle, interval_s=60) if idle else [])


def move_oracle(chain: LocalChain, localnet: Localnet, price_usd: float) -> int:
    """Set the WETH feed (what Aave prices with); return the block that carried it."""
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    receipt = chain.send(feed.functions.setAnswer(round(price_usd * 10**FEED_DECIMALS)), localnet.accounts[0].address)
    return int(receipt["blockNumber"])


def scan(w3: Web3, keeper: str, module: str, after: int) -> Reaction:
    """Follow blocks after `after` until the mover's recipe lands (or MAX_LAG blocks); return the lags."""
    first = complete = None
    sent = 0
    for number in range(after + 1, after + MAX_LAG + 1):
        while w3.eth.block_number < number:
            time.sleep(0.05)
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] != keeper:  # type: ignore[index]
                continue
            sent += 1
            first = first if first is not None else number - after
            if tx["to"] == module:  # type: ignore[index]
                complete = number - after
        if complete is not None:
            break
    return Reaction(after, first, complete, sent)


def block_a_second(w3: Web3, on: bool) -> None:
    """Mine a block a second, or (off) only on a transaction."""
    if on:
        w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
    else:
        w3.provider.make_request("evm_setIntervalMining", [0])  # type: ignore[arg-type]
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


def start_daemon(w3: Web3, policies: list[Policy], movers: list[Mover], directory: Path) -> Daemon:
    """Start a live daemon on `policies` and return it once it has assessed each. The chain stands still while it
    starts: discovery reads pinned to one block, which a block a second can overtake at a thousand portfolios."""
    block_a_second(w3, False)
    settings = Settings(db=str(directory / "journal.sqlite"), metrics_addr="127.0.0.1:0",
                        kill_switch=directory / "KILL", state_dir=directory,
                        private_key=SecretStr(",".join(m.key for m in movers)))
    daemon = Daemon({directory / f"{p.portfolio.name}.yaml": p for p in policies}, settings)
    daemon.start()
    deadline = time.monotonic() + 600
    while not all(p.last_result for p in daemon.portfolios.values()):  # every portfolio assessed once
        if time.monotonic() > deadline:
            raise SystemExit("the daemon did not assess every portfolio within 10 minutes")
        time.sleep(0.2)
    block_a_second(w3, True)
    time.sleep(10)  # the follower learns the block time (the median of its last 8 block gaps)
    return daemon


def run(localnet: Localnet, movers: list[Mover], idle: list[Policy], watched: int, directory: Path,
        ) -> list[Reaction]:
    """Every move in turn, the daemon watching `watched` portfolios; return one Reaction per move."""
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    chain = LocalChain(w3)
    reactions = []
    fleet = None if watched == 1 else start_daemon(w3, [m.policy for m in movers] + idle[: watched - len(movers)],
                                                   movers, directory)
    try:
        for g, mover in enumerate(movers):
            daemon = fleet or start_daemon(w3, [mover.policy], [mover], directory)
            try:
                block = move_oracle(chain, localnet, START_USD * (1 - STEP) ** (g + 1))
                reactions.append(scan(w3, mover.keeper, mover.module, block))
            finally:
                if fleet is None:
                    daemon.stop(drain_s=5)
    finally:
        if fleet is not None:
            fleet.stop(drain_s=5)
    return reactions


def distribution(lags: list[int | None]) -> dict[str, int]:
    counts = collections.Counter("none" if lag is None else str(lag) for lag in lags)
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] == "none", int(kv[0]) if kv[0] != "none" else 0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--watched", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging(level=os.environ.get("REACTION_LOG", "warning"))  # type: ignore[arg-type]  # to stderr; a cycle line per portfolio per block would drown the figures
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 prints every thread's stack
    report: dict[str, object] = {"moves": args.moves, "block_time_s": 1, "runs": []}
    with Anvil() as node:
        localnet = build_localnet(node.url, node.chain_id)
        start = time.perf_counter()
        movers, idle = seed(localnet, args.moves, max(args.watched))
        report["seed_s"] = round(time.perf_counter() - start, 1)
        w3 = Web3(Web3.HTTPProvider(node.url))
        seeded = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        for watched in args.watched:
            w3.provider.make_request("evm_revert", [seeded])  # type: ignore[arg-type]
            seeded = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
            with tempfile.TemporaryDirectory() as directory:
                reactions = run(localnet, movers, idle, watched, Path(directory))
            block_a_second(w3, False)
            firsts, completes = [r.first_lag for r in reactions], [r.complete_lag for r in reactions]
            report["runs"].append({  # type: ignore[attr-defined]
                "watched": watched, "first_tx_lag": distribution(firsts), "complete_lag": distribution(completes),
                "first_in_next_block_pct": round(100 * firsts.count(1) / len(firsts), 1),
                "reactions": [r.__dict__ for r in reactions]})
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.moves} oracle moves of -{STEP:.0%}, a block a second; seeded in {report['seed_s']} s")
    for r in report["runs"]:  # type: ignore[attr-defined]
        print(f"  watched {r['watched']:>5}: first transaction lag (blocks) {r['first_tx_lag']}, "
              f"in the next block {r['first_in_next_block_pct']}%; protection complete (recipe) {r['complete_lag']}")


if __name__ == "__main__":
    main()
