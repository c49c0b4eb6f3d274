"""One executor per account, by construction: a second executor for a leased account — another process's, or a
second one in the same process (a reload, two policies of one account) — refuses to sign and names the holder;
one intent is signed at one nonce, whatever copy of it the signer holds; `ballast once --execute` next to a holder
refuses in one line."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner
from web3 import Web3

from agent.chain.fees import Fees
from agent.cli import app
from agent.execution.journal import Journal
from agent.execution.lease import LeaseHeld
from agent.localnet import Localnet
from agent.localnet.policies import render_policy
from agent.policy import Policy
from tests.chain.execution_support import borrow_usdc, keeper_account, live, make_executor, plan, read


def test_a_second_executor_for_a_leased_account_refuses_to_sign_and_names_the_holder(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    policy = live(demo_policy("leveraged-long"))
    account = keeper_account(localnet, "leveraged-long").address
    nonce, snapshot = w3.eth.get_transaction_count(account), read(policy)
    first = make_executor(localnet, policy, tmp_path)
    first.start()

    for second in (make_executor(localnet, policy, tmp_path),  # another journal: another process, `once --execute`
                   make_executor(localnet, policy, tmp_path, journal=first.journal)):  # a reload, a second policy
        with pytest.raises(LeaseHeld) as refused:
            second.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot, wait_s=5)
        (line,) = refused.value.lines()
        assert f"account {account} is leased to " in line and f" pid {os.getpid()} since " in line
    assert w3.eth.get_transaction_count(account) == nonce  # nothing signed, nothing sent
    assert first.journal.intents() == []

    first.close()  # the holder gives the lease up (a reload hands over): the next executor signs
    third = make_executor(localnet, policy, tmp_path, journal=first.journal)
    report = third.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot, wait_s=10)
    assert report.states == ("confirmed",) and w3.eth.get_transaction_count(account) == nonce + 1


def test_an_intent_is_signed_at_its_journaled_nonce_even_from_a_stale_copy(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    snapshot = read(policy)

    class Stop(Exception):
        pass

    def stop_after_signing(point: str) -> None:
        if point == "signed":
            raise Stop

    executor = make_executor(localnet, policy, tmp_path, checkpoint=stop_after_signing)
    journal: Journal = executor.journal
    with pytest.raises(Stop):
        executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot)
    (signed,) = journal.intents()
    assert signed.state == "signed" and signed.nonce is not None

    # A writer still holding the intent as it was before signing (simulated, no nonce) signs it again.
    stale = dataclasses.replace(signed, state="simulated", nonce=None, signed_at=None)
    with pytest.raises(Stop):
        executor.tx.sign(stale, executor.chains["localnet"], Fees(10**11, 2 * 10**9), "action", 500_000)
    assert {tx.record.nonce for tx in journal.txs(signed.id)} == {signed.nonce}
    assert journal.stored_nonce(executor.chains["localnet"].chain.chain_id, executor.sender) == signed.nonce + 1


def test_once_execute_next_to_the_lease_holder_refuses_in_one_line(
    localnet: Localnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = keeper_account(localnet, "leveraged-long")
    policy_file = tmp_path / "leveraged-long.yaml"
    policy_file.write_text(render_policy("leveraged-long", localnet.demo_accounts["leveraged-long"], localnet,
                                         mode="live"))
    holder = Journal(tmp_path / "journal.sqlite")  # a running daemon's journal, holding the account's lease
    holder.leases.acquire(account.address)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BALLAST_DB", str(tmp_path / "journal.sqlite"))
    monkeypatch.setenv("BALLAST_PRIVATE_KEY", account.private_key)
    monkeypatch.setenv("BALLAST_KILL_SWITCH", str(tmp_path / "KILL"))

    result = CliRunner().invoke(app, ["once", "--policy", str(policy_file), "--execute"])

    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]  # not logs
    assert line.startswith(f"account {account.address} is leased to ") and f" pid {os.getpid()} since " in line
    assert "Traceback" not in result.output
    holder.close()
