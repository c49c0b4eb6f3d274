"""The fault matrix: the real daemon, live, on anvil, behind fault-injecting JSON-RPC proxies, through a price crash
that makes the leveraged long deleverage. Each fault runs several times from the same seeded chain state; each run
counts transactions mined twice, intents lost (not at an end state once the daemon stopped), daemon crashes, and
whether the portfolio ended inside its health-factor band (or paused, its alert raised).

`python -m tests.faults.matrix [--runs N] [--fault NAME …]` (or `make faults`) prints the table; every cell must be
zero. `tests/faults/test_matrix.py` runs it under pytest.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from web3 import Web3

from agent.execution.journal import Journal
from agent.localnet import Anvil, Localnet, build_localnet
from agent.localnet.anvil import free_port
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from tests.faults.proxy import Fault, FaultProxy, down, error, malformed

NAME = "leveraged-long"
WAD = 10**18
HF_MIN = 1.5
CRASH = [2_000 * (0.95**i) for i in range(1, 8)]  # down 5% a step to ~1,400 (−30%)
APPROVE = "0x095ea7b3"
SEND = frozenset({"eth_sendRawTransaction"})
CALLS = frozenset({"eth_call", "eth_estimateGas"})
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """One run of the daemon through the crash under a fault: the processes started, the proxies, the journal."""

    localnet: Localnet
    workdir: Path
    proxies: list[FaultProxy]
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    crashes: int = 0

    @property
    def db(self) -> str:
        return str(self.workdir / "journal.sqlite")

    def start_daemon(self, name: str = "daemon") -> subprocess.Popen[str]:
        """Starts `ballast run` on the run's policy and journal; returns once its metrics answer."""
        key = self.localnet.keeper_key(NAME)
        port = free_port()
        env = {**os.environ, "BALLAST_DB": self.db, "BALLAST_METRICS_ADDR": f"127.0.0.1:{port}",
               "BALLAST_PRIVATE_KEY": key, "BALLAST_KILL_SWITCH": str(self.workdir / "KILL"),
               "BALLAST_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}
        log = (self.workdir / f"{name}-{len(self.processes)}.log").open("w")
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--policy",
                                    str(self.workdir / "policies"), "--drain-s", "20"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True, cwd=self.workdir)
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
                    return process
            except OSError:
                time.sleep(0.2)
        return process

    def kill(self, process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def signed_any(self) -> bool:
        """Whether the journal holds a signed transaction yet."""
        journal = Journal(self.db)
        try:
            return any(journal.txs(i.id) for i in journal.intents(NAME))
        finally:
            journal.close()


@dataclass(frozen=True)
class Scenario:
    """A fault: `endpoints` proxies in the policy's RPC list, `apply` called at each crash step (`step` from 0) to set
    or clear faults and to kill or start processes."""

    name: str
    apply: Callable[[Run, int], None]
    endpoints: int = 1


def during(fault: Fault, endpoint: int = 0, first: int = 1, last: int = 3) -> Callable[[Run, int], None]:
    """Returns an `apply` that sets `fault` on proxy `endpoint` for crash steps first…last, and clears it after."""

    def apply(run: Run, step: int) -> None:
        run.proxies[endpoint].fault = fault if first <= step <= last else None

    return apply


def kill_after_signing(run: Run, step: int) -> None:
    """SIGKILLs the daemon as soon as it has signed something, then starts it again (crash recovery)."""
    if step == 0 or not run.processes or run.processes[-1].poll() is not None:
        return
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not run.signed_any():
        time.sleep(0.05)
    if run.signed_any() and len(run.processes) == 1:
        run.kill(run.processes[-1])
        run.start_daemon()


def second_daemon(run: Run, step: int) -> None:
    """Starts a second daemon for the same account on the same journal at the first crash step."""
    if step == 1:
        run.start_daemon("second")


SCENARIOS = [
    Scenario("no fault", lambda run, step: None),
    Scenario("first endpoint down (failover)", during(Fault(down), first=0, last=len(CRASH)), endpoints=2),
    Scenario("every endpoint down", during(Fault(down), first=1, last=2)),
    Scenario("transient errors (header not found)",
             during(Fault(error(-32000, "header not found"), methods=CALLS, probability=0.5), first=1, last=4)),
    Scenario("rate limited (429)", during(Fault(error(429, "Too Many Requests"), probability=0.5), first=1, last=4)),
    Scenario("malformed answers", during(Fault(malformed, probability=0.3), first=1, last=4), endpoints=2),
    Scenario("already known", during(Fault(error(-32000, "already known"), methods=SEND, forward_first=True),
                                     first=0, last=len(CRASH))),
    Scenario("nonce too low", during(Fault(error(-32000, "nonce too low"), methods=SEND, forward_first=True),
                                     first=0, last=len(CRASH))),
    Scenario("replacement underpriced", during(Fault(error(-32000, "replacement transaction underpriced"),
                                                     methods=SEND), first=1, last=2)),
    Scenario("a revert in simulation", during(Fault(error(3, "execution reverted: 35"), methods=frozenset(
        {"eth_estimateGas"})), first=1, last=2)),
    Scenario("SIGKILL after signing", kill_after_signing),
    Scenario("two daemons for one account", second_daemon),
]


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
    problems: tuple[str, ...] = ()  # what each crash was: an exit code, or the exception a traceback ended with


@contextmanager
def world() -> Iterator[tuple[Anvil, Localnet]]:
    with Anvil() as node:
        yield node, build_localnet(node.url, node.chain_id)


def run_once(scenario: Scenario, localnet: Localnet, workdir: Path) -> Outcome:
    """Runs the daemon through the crash under `scenario` from the current chain state; returns the outcome."""
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    chain = LocalChain(w3)
    account = Web3.to_checksum_address(localnet.demo_accounts[NAME])  # the Safe
    sender = Web3.to_checksum_address(localnet.demo_portfolios[NAME].keeper)  # its keeper signs and pays gas
    first_block = w3.eth.block_number
    proxies = [FaultProxy(localnet.rpc_url, seed=i) for i in range(scenario.endpoints)]
    run = Run(localnet, workdir, proxies)
    (workdir / "policies").mkdir()
    text = render_policy(NAME, account, localnet, mode="live", interval_s=1, cooldown_s=0)
    urls = ", ".join(f'"{p.url}"' for p in proxies)
    (workdir / "policies" / f"{NAME}.yaml").write_text(text.replace(f'rpc: ["{localnet.rpc_url}"]', f"rpc: [{urls}]"))
    try:
        run.start_daemon()
        for step, price in enumerate(CRASH):
            scenario.apply(run, step)
            set_weth_price(chain, localnet, price)
            time.sleep(2)
        for proxy in proxies:
            proxy.fault = None
        settle(run)
        problems = [f"exited {p.returncode} by itself" for p in run.processes
                    if p.poll() is not None and p.returncode != -signal.SIGKILL]
        for process in run.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                if process.wait(timeout=60) != 0:
                    problems.append(f"exited {process.returncode} after SIGTERM")
        problems += tracebacks(workdir)
    finally:
        for process in run.processes:
            if process.poll() is None:
                process.kill()
        for proxy in proxies:
            proxy.close()
    journal = Journal(run.db)
    try:
        lost = sum(not i.terminal for i in journal.intents(NAME))
        paused = journal.paused(NAME) is not None
    finally:
        journal.close()
    hf = aave_account(chain, localnet.world.contracts["Pool"], account).health_factor_wad / WAD
    repeats, mined = account_transactions(w3, sender, first_block)
    return Outcome(repeats, lost, len(problems), int(hf < HF_MIN * 0.98 and not paused), mined, hf, tuple(problems))


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
        journal = Journal(run.db)
        try:
            if not journal.unresolved(NAME):
                time.sleep(3)  # a cycle or two more: a plan left to make is made
                if not journal.unresolved(NAME):
                    return
        finally:
            journal.close()
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


def matrix(names: list[str] | None, runs: int, report: Callable[[str], None] = print) -> dict[str, list[Outcome]]:
    """Runs each scenario (all, or those `names`) `runs` times on one seeded anvil, reverted between runs; returns
    the outcomes by scenario and reports the table."""
    chosen = [s for s in SCENARIOS if names is None or s.name in names]
    results: dict[str, list[Outcome]] = {}
    with world() as (node, localnet), tempfile.TemporaryDirectory(prefix="ballast-faults-") as tmp:
        w3 = Web3(Web3.HTTPProvider(node.url))
        for scenario in chosen:
            for index in range(runs):
                snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
                workdir = Path(tmp) / f"{scenario.name.replace(' ', '-')}-{index}"
                workdir.mkdir()
                try:
                    results.setdefault(scenario.name, []).append(run_once(scenario, localnet, workdir))
                finally:
                    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    report(table(results))
    return results


def table(results: dict[str, list[Outcome]]) -> str:
    """Returns the matrix as text: one row per fault, the sum of each count over its runs."""
    header = (f"{'fault':<38} {'runs':>4} {'mined twice':>11} {'intents lost':>12} {'crashes':>7} "
              f"{'out of band':>11} | {'txs mined':>9} {'lowest end HF':>13}")
    rows = [header, "-" * len(header)]
    for name, outcomes in results.items():
        total = [sum(getattr(o, f) for o in outcomes) for f in ("mined_twice", "lost", "crashes", "out_of_band")]
        mined, lowest = sum(o.mined for o in outcomes), min(o.health_factor for o in outcomes)
        rows.append(f"{name:<38} {len(outcomes):>4} {total[0]:>11} {total[1]:>12} {total[2]:>7} {total[3]:>11} | "
                    f"{mined:>9} {lowest:>13.3f}")
    rows += [f"  {name}: {problem}" for name, outcomes in results.items() for o in outcomes for problem in o.problems]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fault", action="append", help="a fault's name (default: every fault)")
    args = parser.parse_args()
    results = matrix(args.fault, args.runs)
    bad = sum(getattr(o, f) for outcomes in results.values() for o in outcomes
              for f in ("mined_twice", "lost", "crashes", "out_of_band"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
