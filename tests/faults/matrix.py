"""The fault matrix: the real daemon, live, on anvil, behind fault-injecting JSON-RPC proxies, through a price crash
that makes the leveraged long deleverage. Each fault runs several times from the same seeded chain state; each run
counts transactions mined twice, intents lost (not at an end state once the daemon stopped), daemon crashes, and
whether the portfolio ended inside its health-factor band (or paused, its alert raised).

`python -m tests.faults.matrix [--runs N] [--fault NAME …]` (or `make faults`) prints the table; every cell must be
zero. `tests/faults/test_matrix.py` runs it under pytest.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3

from agent.localnet import Anvil, Localnet, build_localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from tests.faults.proxy import FaultProxy
from tests.faults.run import NAME, PATHS, Run, Scenario, keeper_for
from tests.faults.scenarios import SCENARIOS

WAD = 10**18
HF_MIN = 1.5
CRASH = [2_000 * (0.95**i) for i in range(1, 8)]  # down 5% a step to ~1,400 (−30%)
STEP_S = 1.5  # between price steps: the daemon (on a 1 s interval) reads each
APPROVE = "0x095ea7b3"
COUNTS = ("mined_twice", "lost", "crashes", "out_of_band", "unapplied")


@dataclass(frozen=True)
class Outcome:
    """One run's counts: transactions mined twice, intents lost, daemon crashes, 1 if the portfolio ended outside
    its band (not paused); and, to show the run did act, the account's transactions mined and its final health
    factor."""

    mined_twice: int
    lost: int
    crashes: int
    out_of_band: int
    mined: int
    health_factor: float
    unapplied: int = 0  # 1 if the fault never happened (the daemon never reached its point): the run proved nothing
    problems: tuple[str, ...] = ()  # what each crash was (an exit code, the exception a traceback ended with), and
    # why a fault was not applied
    notes: tuple[str, ...] = ()  # what the fault did (where it killed, what it raised)


@contextmanager
def world() -> Iterator[tuple[Anvil, Localnet]]:
    with Anvil() as node:
        yield node, build_localnet(node.url, node.chain_id)


def run_once(scenario: Scenario, localnet: Localnet, workdir: Path, path: str = "safe", index: int = 0) -> Outcome:
    """Runs the daemon keeping the account of `path` through the crash under `scenario` from the current chain
    state; returns the outcome. `index` seeds the scenario's random draws."""
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    chain = LocalChain(w3)
    keeper = keeper_for(path, localnet, chain)
    first_block = w3.eth.block_number
    proxies = [FaultProxy(localnet.rpc_url, seed=i) for i in range(scenario.endpoints)]
    run = Run(localnet, workdir, proxies, keeper, index)
    write_policy(run, scenario)
    watch = threading.Thread(target=scenario.watch, args=(run,), daemon=True) if scenario.watch else None
    try:
        run.start_daemon()
        if watch is not None:
            watch.start()
        for step, price in enumerate(CRASH):
            scenario.apply(run, step)
            if scenario.move is None:
                set_weth_price(chain, localnet, price)
            else:
                scenario.move(run, step, price)
            time.sleep(STEP_S)
        if watch is None:  # a watch ends its faults itself
            for proxy in proxies:
                proxy.fault = None
        settle(run)
        run.stopping.set()
        if watch is not None:
            watch.join(timeout=60)
        problems = stop_daemons(run) + tracebacks(workdir)
    finally:
        run.stopping.set()
        for process in run.processes:
            if process.poll() is None:
                process.kill()
        for proxy in proxies:
            proxy.close()
    unapplied = run.unapplied + [why for why in [scenario.check(run) if scenario.check else None] if why]
    with run.journal() as journal:
        lost = sum(not i.terminal for i in journal.intents(NAME))
        paused = journal.paused(NAME) is not None
    hf = aave_account(chain, localnet.world.contracts["Pool"], keeper.account).health_factor_wad / WAD
    repeats, mined = account_transactions(w3, keeper.sender, first_block)
    return Outcome(repeats, lost, len(problems), int(hf < HF_MIN * 0.98 and not paused), mined, hf,
                   int(bool(unapplied)), tuple(problems + unapplied), tuple(run.notes))


def write_policy(run: Run, scenario: Scenario) -> None:
    """Writes the run's live policy: its endpoints the proxies, its execution settings as the scenario needs."""
    text = render_policy(NAME, run.keeper.account, run.localnet, mode="live", interval_s=1, cooldown_s=0)
    urls = ", ".join(f'"{p.url}"' for p in run.proxies)
    text = text.replace(f'rpc: ["{run.localnet.rpc_url}"]', f"rpc: [{urls}]")
    for key, value in scenario.execution:
        text, count = re.subn(rf"(execution: {{.*\b{key}: )[^,}}]+", rf"\g<1>{value}", text)
        assert count == 1, f"no execution setting {key} in the rendered policy"
    (run.workdir / "policies").mkdir()
    (run.workdir / "policies" / f"{NAME}.yaml").write_text(text)


def stop_daemons(run: Run) -> list[str]:
    """SIGTERMs the daemons still running; returns what went wrong: one exited by itself, or not cleanly."""
    problems = [f"exited {p.returncode} by itself" for p in run.processes
                if p.poll() is not None and p.returncode != -signal.SIGKILL]
    for process in run.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            if process.wait(timeout=60) != 0:
                problems.append(f"exited {process.returncode} after SIGTERM")
    return problems


def tracebacks(workdir: Path) -> list[str]:
    """Returns, for each traceback in the run's daemon logs, the exception it ended with (a line of the log)."""
    found = []
    for log in sorted(workdir.glob("*.log")):
        lines = log.read_text().splitlines()
        for index, line in enumerate(lines):
            if "Traceback" not in line:
                continue
            if line.startswith("Traceback"):  # printed by a dying thread: the exception is the next unindented line
                line = next((later for later in lines[index + 1:] if later and not later[0].isspace()), line)
            found.append(f"{log.name}: {line[-300:]}")
    return found


def settle(run: Run, timeout_s: float = 60) -> None:
    """Waits until the journal has no unresolved intent (or `timeout_s` passed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not run.open_states():
            time.sleep(3)  # a cycle or two more: a plan left to make is made
            if not run.open_states():
                return
        time.sleep(0.5)


def account_transactions(w3: Web3, account: str, first_block: int) -> tuple[int, int]:
    """Returns (how many successful transactions of `account` since `first_block` repeat an earlier one — the same
    target and call data, approvals aside, which a plan may legitimately repeat —, how many were mined)."""
    seen: set[tuple[str, str]] = set()
    repeats = mined = 0
    for number in range(first_block + 1, w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] != account:
                continue
            mined += 1
            key = (str(tx["to"]), "0x" + bytes(tx["input"]).hex())
            if key[1].startswith(APPROVE) or w3.eth.get_transaction_receipt(tx["hash"])["status"] != 1:
                continue
            repeats += key in seen
            seen.add(key)
    return repeats, mined


def cells(names: list[str] | None, paths: list[str] | None) -> list[tuple[Scenario, str]]:
    """The (scenario, path) pairs to run: every scenario on each of its paths, or those named."""
    return [(s, path) for s in SCENARIOS if names is None or s.name in names
            for path in s.paths if paths is None or path in paths]


def label(scenario: Scenario, path: str) -> str:
    return f"{scenario.name} [{path}]"


def matrix(names: list[str] | None, runs: int, paths: list[str] | None = None, keep: Path | None = None,
           report: Callable[[str], None] = print) -> dict[str, list[Outcome]]:
    """Runs each scenario (all, or those `names`) on each of its paths (or those `paths`) `runs` times on one
    seeded anvil, reverted between runs; returns the outcomes by row and reports the table. Each run's logs and
    journal are kept under `keep` when given."""
    results: dict[str, list[Outcome]] = {}
    with world() as (node, localnet), tempfile.TemporaryDirectory(prefix="ballast-faults-") as temporary:
        tmp = keep or temporary
        w3 = Web3(Web3.HTTPProvider(node.url))
        base_fee = hex(w3.eth.get_block("pending")["baseFeePerGas"])
        for scenario, path in cells(names, paths):
            for index in range(runs):
                snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
                workdir = Path(tmp) / f"{scenario.name.replace(' ', '-').replace('/', '-')}-{path}-{index}"
                workdir.mkdir()
                try:
                    outcome = run_once(scenario, localnet, workdir, path, index)
                    results.setdefault(label(scenario, path), []).append(outcome)
                finally:
                    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
                    # a revert restores the blocks, not anvil's next base fee: a run that raised it would leak it
                    w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [base_fee])  # type: ignore[arg-type]
    report(table(results))
    return results


def table(results: dict[str, list[Outcome]]) -> str:
    """Returns the matrix as text: one row per fault and path, the sum of each count over its runs; under it, each
    run's problems."""
    width = max([len(name) for name in results] + [5])
    header = (f"{'fault':<{width}} {'runs':>4} {'mined twice':>11} {'intents lost':>12} {'crashes':>7} "
              f"{'out of band':>11} {'not applied':>11} | {'txs mined':>9} {'lowest end HF':>13}")
    rows = [header, "-" * len(header)]
    for name, outcomes in results.items():
        total = [sum(getattr(o, count) for o in outcomes) for count in COUNTS]
        mined, lowest = sum(o.mined for o in outcomes), min(o.health_factor for o in outcomes)
        rows.append(f"{name:<{width}} {len(outcomes):>4} {total[0]:>11} {total[1]:>12} {total[2]:>7} {total[3]:>11} "
                    f"{total[4]:>11} | {mined:>9} {lowest:>13.3f}")
    rows += [f"  {name}: {problem}" for name, outcomes in results.items() for o in outcomes for problem in o.problems]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fault", action="append", help="a fault's name (default: every fault)")
    parser.add_argument("--path", action="append", choices=PATHS, help="safe or direct (default: each fault's)")
    parser.add_argument("--notes", action="store_true", help="print what each fault did, run by run")
    parser.add_argument("--keep", type=Path, help="a directory to keep each run's daemon logs and journal in")
    args = parser.parse_args()
    results = matrix(args.fault, args.runs, args.path, args.keep)
    if args.notes:
        print("\n".join(f"  {name}: {note}" for name, outcomes in results.items() for o in outcomes
                         for note in o.notes))
    sys.exit(1 if any(getattr(o, count) for outcomes in results.values() for o in outcomes for count in COUNTS)
             else 0)


if __name__ == "__main__":
    main()
