"""Stale work never reaches the chain: bytes signed before a crash or a kill-switch engagement are cancelled by a
same-nonce no-op once past their deadline, never broadcast late."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from web3 import Web3
from web3.exceptions import TransactionNotFound

from agent.localnet import Localnet
from agent.policy import Policy
from tests.chain.execution_support import Clock, borrow_usdc, debt_usdc, keeper_account, live, make_executor, plan, read


class Crash(Exception):
    """The process dies at a checkpoint."""


@pytest.mark.parametrize("stop", ["crash", "kill switch"])
def test_bytes_signed_before_a_stop_are_cancelled_not_broadcast_past_their_deadline(
    stop: str, localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"), replace_after_s=30, deadline_s=120)
    account = keeper_account(localnet, "leveraged-long").address
    before, clock, kill = read(policy), Clock(), tmp_path / "KILL"
    nonce = w3.eth.get_transaction_count(account)

    def checkpoint(name: str) -> None:  # right after signing: the process dies, or the operator engages the switch
        if name == "signed" and stop == "crash":
            raise Crash(name)
        if name == "signed":
            kill.touch()

    executor = make_executor(localnet, policy, tmp_path, clock, checkpoint=checkpoint)
    with contextlib.suppress(Crash):
        executor.execute_plan(plan(before, borrow_usdc(1_000)), before)
    (intent,) = executor.journal.intents()
    (action,) = executor.journal.txs(intent.id)
    assert action.record.state == "signed" and w3.eth.get_transaction_count(account) == nonce

    # Hours later: the process restarts (or the switch is lifted), long past the intent's deadline.
    clock.advance(3_600)
    executor.close()
    kill.unlink(missing_ok=True)
    restarted = make_executor(localnet, policy, tmp_path, clock)
    restarted.start()
    restarted.wait(5)

    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction(action.record.tx_hash)  # type: ignore[arg-type]
    done = restarted.journal.intent(intent.id)
    assert done is not None and done.state == "cancelled", done
    *_, cancel = restarted.journal.txs(intent.id)
    assert (cancel.record.kind, cancel.record.nonce) == ("cancel", nonce)
    assert w3.eth.get_transaction_count(account) == nonce + 1
    assert debt_usdc(read(policy)) - debt_usdc(before) < 1_000  # the borrow never happened (interest only)
