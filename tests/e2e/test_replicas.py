"""Two replicas of the daemon on one PostgreSQL journal, live on the local chain through a price crash: the first
holds the account's lease and acts, the second stands by; the first is SIGKILLed in the middle of acting and the
second takes the account over, finishing what was open from the journal, and no transaction is sent twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from web3 import Web3

from agent.execution.journal import Journal
from agent.localnet import Localnet
from agent.localnet.anvil import free_port
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from tests.postgres import PostgresServer

NAME = "leveraged-long"
WAD = 10**18
CRASH = [2_000 * (0.95**i) for i in range(1, 10)]  # down 5% a step to ~1,260 (−37%)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def lease_held(url: str) -> float | None:
    """Returns the replica's `ballast_lease_held` for the portfolio, or None while it does not answer."""
    try:
        text = get(url + "/metrics")
    except OSError:
        return None
    lines = [line for line in text.splitlines() if line.startswith(f'ballast_lease_held{{portfolio="{NAME}"}}')]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else None


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Replicas:
    """Replicas of the daemon on one journal and one policy directory; `start(name)` runs one."""

    def __init__(self, db: str, policies: Path, key: str, workdir: Path) -> None:
        self.db, self.policies, self.key, self.workdir = db, policies, key, workdir
        self.started: list[tuple[subprocess.Popen[str], IO[str]]] = []

    def start(self, name: str) -> tuple[subprocess.Popen[str], str, Path]:
        """Starts replica `name`; returns its process, URL and log file once it serves its metrics."""
        port = free_port()
        env = {**os.environ, "BALLAST_DB": self.db, "BALLAST_METRICS_ADDR": f"127.0.0.1:{port}",
               "BALLAST_PRIVATE_KEY": self.key, "BALLAST_KILL_SWITCH": str(self.workdir / f"KILL-{name}"),
               "BALLAST_LOG_FORMAT": "json"}
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("w")
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--policy", str(self.policies),
                                    "--drain-s", "20"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                   cwd=self.workdir)
        self.started.append((process, log))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: lease_held(url) is not None or process.poll() is not None, f"replica {name} to serve")
        assert process.poll() is None, log_path.read_text()[-3000:]
        return process, url, log_path


@pytest.fixture
def replicas(localnet: Localnet, postgres: PostgresServer, tmp_path: Path) -> Iterator[Replicas]:
    """Replicas of the leveraged-long portfolio in live mode on a new PostgreSQL journal, killed at the end."""
    policies = tmp_path / "policies"
    policies.mkdir()
    account = localnet.demo_accounts[NAME]
    (policies / f"{NAME}.yaml").write_text(render_policy(NAME, account, localnet, mode="live", interval_s=1,
                                                         cooldown_s=0))
    key = localnet.keeper_key(NAME)
    made = Replicas(postgres.url("replicas"), policies, key, tmp_path)
    try:
        yield made
    finally:
        for process, log in made.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            log.close()


def test_a_standby_replica_takes_over_a_killed_holder_without_sending_anything_twice(
    localnet: Localnet, chain: LocalChain, replicas: Replicas,
) -> None:
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    account = Web3.to_checksum_address(localnet.demo_accounts[NAME])  # the Safe
    keeper = Web3.to_checksum_address(localnet.demo_portfolios[NAME].keeper)  # the sender: its nonces, its lease
    first_nonce = w3.eth.get_transaction_count(keeper)
    holder, holder_url, holder_log = replicas.start("a")
    wait_until(lambda: lease_held(holder_url) == 1, "replica a to hold the lease")
    standby, standby_url, standby_log = replicas.start("b")
    wait_until(lambda: lease_held(standby_url) == 0, "replica b to stand by")
    journal = Journal(replicas.db)

    # The price falls until the holder acts; it is killed as soon as it has signed something.
    steps = iter(CRASH)
    for price in steps:
        set_weth_price(chain, localnet, price)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(journal.txs(i.id) for i in journal.intents(NAME)):
            time.sleep(0.05)
        if any(journal.txs(i.id) for i in journal.intents(NAME)):
            break
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)

    wait_until(lambda: lease_held(standby_url) == 1, "replica b to take the lease over", timeout_s=30)
    for price in steps:  # the crash goes on: the new holder keeps the portfolio inside its band
        set_weth_price(chain, localnet, price)
        time.sleep(3)
    wait_until(lambda: journal.unresolved(NAME) == [], "every intent to reach an end state", timeout_s=90)
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(timeout=60) == 0, standby_log.read_text()[-3000:]

    intents = journal.intents(NAME)
    txs = [tx for intent in intents for tx in journal.txs(intent.id)]
    assert all(intent.terminal for intent in intents)
    assert {tx.record.state for tx in txs} <= {"mined", "replaced", "sent", "signed"}
    # Every nonce the account used since the start went to exactly one journaled transaction, and each intent has
    # at most one mined transaction: nothing was signed outside the journal, nothing mined twice.
    last_nonce = w3.eth.get_transaction_count(keeper)
    mined = [tx for tx in txs if tx.record.state == "mined"]
    assert sorted(tx.record.nonce for tx in mined) == list(range(first_nonce, last_nonce))
    assert all(sum(tx.record.state == "mined" for tx in journal.txs(i.id)) <= 1 for i in intents)
    epochs = {row["account"]: row["epoch"] for row in journal.dump()["leases"]}
    assert epochs[keeper.lower()] == 2  # a, then b
    signed_by = {row["lease_epoch"] for row in journal.dump()["transactions"]}
    assert signed_by == {1, 2}, "both replicas signed: the holder before its death, the standby after"
    assert "lease taken over" in standby_log.read_text()
    assert "Traceback" not in holder_log.read_text() + standby_log.read_text()
    pool = localnet.world.contracts["Pool"]
    assert aave_account(chain, pool, account).health_factor_wad >= 1.5 * 0.98 * WAD
    journal.close()
