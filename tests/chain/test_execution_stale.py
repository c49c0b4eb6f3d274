"""Stale work never reaches the chain: bytes signed before a crash or a kill-switch engagement are cancelled by a
same-nonce no-op once past their deadline, never broadcast late; a nonce taken by a transaction the journal does not
know (a second signer) pauses the portfolio until the operator resumes it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner
from web3 import Web3
from web3.exceptions import TransactionNotFound

from agent.cli import app
from agent.execution.listing import journal_json
from agent.localnet import Localnet
from agent.localnet.policies import render_policy
from agent.policy import Policy
from tests.chain.execution_support import (
    Clock,
    borrow_usdc,
    debt_usdc,
    keeper_account,
    live,
    make_executor,
    plan,
    read,
    rpc,
)


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


def test_a_nonce_taken_by_an_unknown_transaction_pauses_the_portfolio_until_the_operator_resumes_it(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path, automine_off: None
) -> None:
    policy = live(demo_policy("leveraged-long"))
    name, keeper = policy.portfolio.name, keeper_account(localnet, "leveraged-long")
    registry = CollectorRegistry()
    executor = make_executor(localnet, policy, tmp_path, registry=registry)
    before = read(policy)
    (intent,) = executor.execute_plan(plan(before, borrow_usdc(1_000)), before).intents
    (ours,) = executor.journal.txs(intent.id)

    # A second signer with the same key takes the nonce with a better offer: the journal never saw its transaction.
    outside = Account.sign_transaction({
        "type": 2, "chainId": w3.eth.chain_id, "nonce": intent.nonce, "to": keeper.address, "value": 0, "gas": 21_000,
        "maxFeePerGas": ours.record.max_fee_per_gas_wei * 2,
        "maxPriorityFeePerGas": ours.record.max_priority_fee_per_gas_wei * 2}, keeper.private_key)
    w3.eth.send_raw_transaction(outside.raw_transaction)
    rpc(w3, "anvil_mine", "0x1")
    executor.advance()

    done = executor.journal.intent(intent.id)
    assert done is not None and done.state == "unknown"
    reason = executor.journal.paused(name)
    assert reason is not None and intent.id[:12] in reason and "not in the journal" in reason
    assert registry.get_sample_value("ballast_portfolio_paused", {"portfolio": name}) == 1
    assert journal_json(executor.journal)["paused"] == {name: reason}  # what `ballast journal` shows
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(render_policy(name, localnet.demo_accounts[name], localnet))
    shown = CliRunner().invoke(app, ["status", "--policy", str(policy_file), "--json"],
                               env={"BALLAST_DB": str(tmp_path / "journal.sqlite")})
    assert shown.exit_code == 0 and json.loads(shown.stdout)["paused"] == reason, shown.output
    nonce = w3.eth.get_transaction_count(keeper.address, "pending")
    again = read(policy)
    refused = executor.execute_plan(plan(again, borrow_usdc(900)), again)
    assert [r.rule for r in refused.refusals] == ["paused"]
    assert w3.eth.get_transaction_count(keeper.address, "pending") == nonce  # nothing sent while paused

    executor.journal.resume(name)  # `ballast journal --resume leveraged-long`
    resumed = executor.execute_plan(plan(again, borrow_usdc(800)), again)
    assert resumed.refusals == () and resumed.states == ("sent",)
    assert registry.get_sample_value("ballast_portfolio_paused", {"portfolio": name}) == 0


def test_a_plan_from_a_snapshot_older_than_an_intent_that_settled_is_dropped_not_executed(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path, automine_off: None
) -> None:
    policy = live(demo_policy("leveraged-long"))
    account = keeper_account(localnet, "leveraged-long").address
    executor = make_executor(localnet, policy, tmp_path)
    first = read(policy)
    (sent,) = executor.execute_plan(plan(first, borrow_usdc(1_000)), first).intents
    stale = read(policy)  # read while the borrow waits in the mempool: it does not show it
    rpc(w3, "anvil_mine", "0x1")
    nonce = w3.eth.get_transaction_count(account)

    # The cycle settles the borrow first, then must not act on a plan that was made without it.
    report = executor.execute_plan(plan(stale, borrow_usdc(900)), stale)

    settled = executor.journal.intent(sent.id)
    assert settled is not None and settled.state == "confirmed"
    assert report.intents == () and f"intent {sent.id[:12]} settled in block {settled.block_number}" in report.deferred
    assert w3.eth.get_transaction_count(account, "pending") == nonce
    fresh = read(policy)  # the next cycle re-reads and re-plans
    assert executor.execute_plan(plan(fresh, borrow_usdc(900)), fresh).states == ("sent",)
