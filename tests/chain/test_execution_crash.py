"""Crash safety: the process is SIGKILLed after signing and before broadcast, or after broadcast and before the
receipt; a new process reconciles on start, and each transaction is mined exactly once with the stored bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from web3 import Web3

from agent.localnet import Localnet
from agent.localnet.policies import render_policy
from agent.policy import Policy
from tests.chain.execution_support import Clock, borrowed_once, keeper_account, live, make_executor, read, rpc

SCRIPT = Path(__file__).with_name("crash_executor.py")
ROOT = SCRIPT.parents[2]


def run_and_kill_at(point: str, localnet: Localnet, tmp_path: Path) -> None:
    """Runs the executor in a subprocess until it freezes at `point`, then SIGKILLs it."""
    account = keeper_account(localnet, "leveraged-long")
    policy_file = tmp_path / "leveraged-long.yaml"
    policy_file.write_text(render_policy("leveraged-long", localnet.demo_accounts["leveraged-long"], localnet)
                           .replace("mode: dry-run", "mode: live"))
    env = {**os.environ, "BALLAST_PRIVATE_KEY": account.private_key, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(policy_file), str(tmp_path / "journal.sqlite"), str(tmp_path / "KILL"),
         point, "1000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, text=True,
    )
    assert process.stdout is not None
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("PAUSED"):
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert any(line.startswith(f"PAUSED {point}") for line in output), "".join(output)
    assert account.private_key.removeprefix("0x").lower() not in "".join(output).lower()


def test_killed_after_signing_before_broadcast_the_restart_sends_the_stored_bytes_once(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    policy = live(demo_policy("leveraged-long"))
    account = keeper_account(localnet, "leveraged-long").address
    nonce, before = w3.eth.get_transaction_count(account), read(policy)

    run_and_kill_at("signed", localnet, tmp_path)
    assert w3.eth.get_transaction_count(account) == nonce  # signed and journaled, never sent

    executor = make_executor(localnet, policy, tmp_path, Clock())
    (stored_intent,) = executor.journal.intents()
    (stored,) = executor.journal.txs(stored_intent.id)
    assert (stored_intent.state, stored.record.state) == ("signed", "signed")
    executor.start()  # startup = crash recovery
    executor.wait(10)

    (intent,) = executor.journal.intents()
    assert (intent.state, intent.tx_hash, intent.nonce) == ("confirmed", stored.record.tx_hash, nonce)
    assert len(executor.journal.txs(intent.id)) == 1  # re-broadcast, never re-signed
    assert w3.eth.get_transaction(stored.record.tx_hash)["nonce"] == nonce  # type: ignore[arg-type]
    assert w3.eth.get_transaction_count(account) == nonce + 1
    assert borrowed_once(before, read(policy), 1_000)


def test_killed_after_broadcast_before_the_receipt_the_restart_confirms_it_once(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    policy = live(demo_policy("leveraged-long"))
    account = keeper_account(localnet, "leveraged-long").address
    nonce, before = w3.eth.get_transaction_count(account), read(policy)
    rpc(w3, "evm_setAutomine", False)
    try:
        run_and_kill_at("broadcast", localnet, tmp_path)
        # The node restarts too and forgets its mempool: only the journal still knows the transaction.
        rpc(w3, "anvil_dropAllTransactions")
        assert w3.eth.get_transaction_count(account) == nonce

        executor = make_executor(localnet, policy, tmp_path, Clock())
        (stored,) = executor.journal.txs(executor.journal.intents()[0].id)
        executor.start()
        assert w3.eth.get_transaction(stored.record.tx_hash) is not None  # type: ignore[arg-type]
        rpc(w3, "anvil_mine", "0x1")
        executor.start()  # a second restart changes nothing but the state it reads
        executor.wait(5)
    finally:
        rpc(w3, "evm_setAutomine", True)

    (intent,) = executor.journal.intents()
    assert (intent.state, intent.tx_hash) == ("confirmed", stored.record.tx_hash)
    assert len(executor.journal.txs(intent.id)) == 1
    assert w3.eth.get_transaction_count(account) == nonce + 1
    assert borrowed_once(before, read(policy), 1_000)
