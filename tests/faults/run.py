"""One run of the fault matrix: the account the daemon keeps (the demo Safe through its keeper module, or a plain
account signing for itself), the daemon processes started on one policy and journal, the proxies in front of anvil,
and what the scenario noted (the points it killed at, faults it never got to apply)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from agent.execution.journal import Journal
from agent.localnet import Localnet
from agent.localnet.anvil import free_port
from agent.localnet.chain import LocalChain
from agent.localnet.seed import DEMO_PORTFOLIOS, seed_portfolio
from tests.faults.proxy import FaultProxy

NAME = "leveraged-long"
PLAIN_ACCOUNT = 8  # an unused dev account: the direct path's own looped long
ROOT = Path(__file__).resolve().parents[2]
PATHS = ("safe", "direct")
SAFE = ("safe",)  # a fault whose handling does not depend on the account's kind runs on the Safe path only (CI time)


@dataclass(frozen=True)
class Keeper:
    """How the run's account is kept: `path` "safe" (the demo Safe, its keeper's key signs calls to the module) or
    "direct" (a plain account whose own key signs); `sender` is the address whose nonces the transactions use."""

    path: str
    account: str
    sender: str
    key: str


def keeper_for(path: str, localnet: Localnet, chain: LocalChain) -> Keeper:
    """Returns the account of `path`; for "direct", first seeds the demo's looped long on a plain dev account."""
    if path == "safe":
        portfolio = localnet.demo_portfolios[NAME]
        return Keeper(path, Web3.to_checksum_address(localnet.demo_accounts[NAME]),
                      Web3.to_checksum_address(portfolio.keeper), localnet.keeper_key(NAME))
    account = localnet.accounts[PLAIN_ACCOUNT]
    seed_portfolio(chain, localnet.world, next(d for d in DEMO_PORTFOLIOS if d.name == NAME), account.address)
    address = Web3.to_checksum_address(account.address)
    return Keeper(path, address, address, account.private_key)


@dataclass
class Run:
    """One run of the daemon through the crash under a fault. `index` seeds what a scenario draws at random;
    `stopping` is set once the run is over, for the scenario's threads to end."""

    localnet: Localnet
    workdir: Path
    proxies: list[FaultProxy]
    keeper: Keeper
    index: int = 0
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unapplied: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def db(self) -> str:
        return str(self.workdir / "journal.sqlite")

    @property
    def w3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.localnet.rpc_url))

    def rpc(self, method: str, *params: Any) -> Any:
        """Calls anvil itself (not through a proxy); raises on a JSON-RPC error."""
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response["result"]

    def start_daemon(self, name: str = "daemon") -> subprocess.Popen[str]:
        """Starts `ballast run` on the run's policy and journal; returns once its metrics answer."""
        port = free_port()
        env = {**os.environ, "BALLAST_DB": self.db, "BALLAST_METRICS_ADDR": f"127.0.0.1:{port}",
               "BALLAST_PRIVATE_KEY": self.keeper.key, "BALLAST_KILL_SWITCH": str(self.workdir / "KILL"),
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

    def restart(self, why: str) -> None:
        """SIGKILLs the newest daemon and starts another on the same journal (crash recovery); notes `why`."""
        self.kill(self.processes[-1])
        self.notes.append(f"SIGKILL {why}")
        self.start_daemon()

    @contextmanager
    def journal(self) -> Iterator[Journal]:
        journal = Journal(self.db)
        try:
            yield journal
        finally:
            journal.close()

    def open_states(self) -> list[str]:
        """The states of the portfolio's unresolved intents, oldest first."""
        with self.journal() as journal:
            return [i.state for i in journal.unresolved(NAME)]

    def signed_any(self) -> bool:
        """Whether the journal holds a signed transaction yet."""
        with self.journal() as journal:
            return any(journal.txs(i.id) for i in journal.intents(NAME))

    def send_from_keeper(self, nonce: int) -> str:
        """Sends, from the sender's key straight to anvil, a zero-value transfer to itself at `nonce` (an operator
        using the keeper key by hand); returns its hash once mined."""
        w3 = self.w3
        fee = int(w3.eth.get_block("latest")["baseFeePerGas"]) * 2 + 10**9
        signed = Account.sign_transaction({
            "type": 2, "chainId": w3.eth.chain_id, "nonce": nonce, "to": self.keeper.sender, "value": 0,
            "gas": 21_000, "maxFeePerGas": fee, "maxPriorityFeePerGas": 10**9}, self.keeper.key)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        return "0x" + bytes(tx_hash).hex()


def nothing(_run: Run, _step: int) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    """A fault: `endpoints` proxies in the policy's RPC list; `apply` called at each crash step (`step` from 0)
    before the price moves, to set or clear faults and to kill or start processes; `watch`, when given, run in a
    thread from the daemon's start until the run settles (or `run.stopping`), for faults timed by what the daemon
    does; `move` moves the price (by default as the market does: `crash_price`); `execution` overrides the policy's
    execution settings (e.g. a short deadline, for a cancellation within the run); `check`, after the run, says why
    the fault was not applied after all (None: it was); `paths`, the accounts it runs on."""

    name: str
    apply: Callable[[Run, int], None] = nothing
    endpoints: int = 1
    watch: Callable[[Run], None] | None = None
    move: Callable[[Run, int, float], None] | None = None
    execution: tuple[tuple[str, str], ...] = ()
    check: Callable[[Run], str | None] | None = None
    paths: tuple[str, ...] = PATHS
