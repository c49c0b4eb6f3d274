"""The executor against the local world: a transaction is simulated, signed, journaled, sent and confirmed exactly
once; a revert is never sent; stuck transactions are replaced, then cancelled past their deadline; a pending hedge
is never doubled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry
from web3 import Web3

from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.model import Action
from agent.policy import Policy
from tests.chain.execution_support import (
    Clock,
    borrow_usdc,
    borrowed_once,
    debt_usdc,
    keeper_account,
    live,
    make_executor,
    plain_leveraged_long,
    plan,
    read,
    rpc,
)


def test_borrow_is_simulated_signed_sent_and_confirmed_once(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    account = keeper_account(localnet, "leveraged-long").address
    before = read(policy)
    nonce = w3.eth.get_transaction_count(account)
    executor = make_executor(localnet, policy, tmp_path)

    report = executor.execute_plan(plan(before, borrow_usdc(1_000)), before, wait_s=10)

    assert report.states == ("confirmed",)
    (intent,) = report.intents
    (tx,) = executor.journal.txs(intent.id)
    assert (intent.nonce, tx.record.tx_hash, tx.record.state) == (nonce, intent.tx_hash, "mined")
    assert w3.eth.get_transaction_count(account) == nonce + 1
    assert borrowed_once(before, read(policy), 1_000)
    # The same plan again is the same intent: nothing more is sent.
    again = executor.execute_plan(plan(before, borrow_usdc(1_000)), before, wait_s=1)
    assert [i.id for i in again.intents] == [intent.id] and w3.eth.get_transaction_count(account) == nonce + 1


def test_repay_recipe_carries_its_exact_approval_in_one_keeper_transaction(
    localnet: Localnet, w3: Web3, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    safe, keeper = policy.portfolio.account, keeper_account(localnet, "leveraged-long").address
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    chain.send(usdc.functions.mint(safe, 2_000 * 10**6), localnet.accounts[0].address)  # idle USDC to repay with
    before = read(policy)
    nonce = w3.eth.get_transaction_count(keeper)
    repay = Action("repay", "localnet", "aave_v3", "USDC", 2_000 * 10**6, 2_000.0, "health_factor below min")

    report = make_executor(localnet, policy, tmp_path).execute_plan(plan(before, repay), before, wait_s=15)

    (intent,) = report.intents
    assert (intent.kind, intent.state) == ("recipe", "confirmed")
    assert [c["kind"] for c in intent.recipe_calls()] == ["approve", "repay"]
    assert w3.eth.get_transaction_count(keeper) == nonce + 1  # one keeper transaction, to the module
    assert w3.eth.get_transaction(intent.tx_hash)["to"] == policy.portfolio.executor.module  # type: ignore[arg-type]
    assert debt_usdc(before) - debt_usdc(read(policy)) in range(2_000 * 10**6 - 1_000, 2_000 * 10**6 + 1)
    assert usdc.functions.allowance(safe, localnet.world.contracts["Pool"]).call() == 0  # exact: nothing left


def test_the_pass_that_confirms_an_approval_sends_the_repay(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    # With a block a second, a step that waited for the next pass would cost the plan a block: a plain account's
    # repay is two transactions (a Safe's is one recipe).
    policy = plain_leveraged_long(localnet, chain, idle_usdc=5_000)
    before = read(policy)
    repay = Action("repay", "localnet", "aave_v3", "USDC", 2_000 * 10**6, 2_000.0, "health_factor below min")
    executor = make_executor(localnet, policy, tmp_path)

    report = executor.execute_plan(plan(before, repay), before)  # sends the approval (mined at once: automine)
    assert [i.state for i in report.intents] == ["sent", "planned"]
    executor.advance()

    states = [i.state for i in executor.journal.intents(policy.portfolio.name, plan=report.plan_id)]
    assert states[0] == "confirmed" and states[1] in ("sent", "mined", "confirmed")


def test_reverting_transaction_is_not_broadcast_and_is_recorded_failed_with_its_reason(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    account = keeper_account(localnet, "leveraged-long").address
    snapshot = read(policy)
    nonce = w3.eth.get_transaction_count(account)
    withdraw_most = Action("withdraw", "localnet", "aave_v3", "WETH", 90 * 10**18, 180_000.0, "test")
    executor = make_executor(localnet, policy, tmp_path)

    report = executor.execute_plan(plan(snapshot, withdraw_most), snapshot, wait_s=1)

    (intent,) = report.intents
    assert intent.state == "failed"
    assert intent.error == "reverted in simulation: 35 (HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD)"
    assert executor.journal.txs(intent.id) == []
    assert w3.eth.get_transaction_count(account) == nonce


def test_dry_run_simulates_records_and_sends_nothing(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = demo_policy("leveraged-long")
    assert policy.execution.mode == "dry-run"
    account = keeper_account(localnet, "leveraged-long").address
    snapshot = read(policy)
    nonce = w3.eth.get_transaction_count(account)
    executor = make_executor(localnet, policy, tmp_path)

    report = executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot)

    (intent,) = report.intents
    assert (intent.mode, intent.state, intent.error) == ("dry-run", "simulated", None)
    assert intent.gas_limit and intent.kind == "recipe" and intent.to_address == policy.portfolio.executor.module
    assert [c["description"] for c in intent.recipe_calls()] == ["aave_v3 borrow 1000000000 USDC"]
    assert executor.journal.txs(intent.id) == []
    assert w3.eth.get_transaction_count(account) == nonce


def test_stuck_transaction_with_a_too_low_fee_is_replaced_and_confirms_once(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path, automine_off: None
) -> None:
    policy = live(demo_policy("leveraged-long"), replace_after_s=30, deadline_s=600)
    account = keeper_account(localnet, "leveraged-long").address
    snapshot = read(policy)
    nonce = w3.eth.get_transaction_count(account)
    clock = Clock()
    executor = make_executor(localnet, policy, tmp_path, clock)
    (intent,) = executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot).intents
    (first,) = executor.journal.txs(intent.id)
    assert intent.state == "sent"

    # The base fee jumps above the offer: the block is mined without it.
    rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(first.record.max_fee_per_gas_wei * 3))
    rpc(w3, "anvil_mine", "0x1")
    assert w3.eth.get_transaction_count(account) == nonce
    executor.advance()
    assert len(executor.journal.txs(intent.id)) == 1  # not yet: replace_after_s has not passed
    clock.advance(31)
    executor.advance()
    _first, replacement = executor.journal.txs(intent.id)
    assert replacement.record.kind == "replacement" and replacement.record.nonce == nonce
    for field in ("max_fee_per_gas_wei", "max_priority_fee_per_gas_wei"):
        old, new = getattr(first.record, field), getattr(replacement.record, field)
        assert new >= old + old // 10 + 1
    rpc(w3, "anvil_mine", "0x1")
    executor.advance()

    done = executor.journal.intent(intent.id)
    assert done is not None and (done.state, done.tx_hash, done.bumps) == ("confirmed", replacement.record.tx_hash, 1)
    assert [t.record.state for t in executor.journal.txs(intent.id)] == ["replaced", "mined"]
    assert w3.eth.get_transaction_count(account) == nonce + 1


def test_intent_past_its_deadline_is_cancelled_by_a_same_nonce_no_op(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path, automine_off: None
) -> None:
    policy = live(demo_policy("leveraged-long"), replace_after_s=30, deadline_s=120)
    account = keeper_account(localnet, "leveraged-long").address
    before = read(policy)
    nonce = w3.eth.get_transaction_count(account)
    clock = Clock()
    executor = make_executor(localnet, policy, tmp_path, clock)
    (intent,) = executor.execute_plan(plan(before, borrow_usdc(1_000)), before).intents

    clock.advance(121)
    executor.advance()
    _action, cancel = executor.journal.txs(intent.id)
    assert (cancel.record.kind, cancel.record.nonce, cancel.record.gas_limit) == ("cancel", nonce, 21_000)
    rpc(w3, "anvil_mine", "0x1")
    executor.advance()

    done = executor.journal.intent(intent.id)
    assert done is not None and done.state == "cancelled" and done.tx_hash == cancel.record.tx_hash
    mined = w3.eth.get_transaction(cancel.record.tx_hash)  # type: ignore[arg-type]
    assert (mined["to"], mined["value"], mined["input"]) == (account, 0, b"")
    assert w3.eth.get_transaction_count(account) == nonce + 1
    assert debt_usdc(read(policy)) - debt_usdc(before) < 1_000  # the borrow never happened (interest only)


def test_pending_hedge_is_sent_once_and_later_cycles_send_nothing_until_it_is_mined(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path, automine_off: None
) -> None:
    policy = live(demo_policy("delta-neutral-lp"))
    account = keeper_account(localnet, "delta-neutral-lp").address
    nonce = w3.eth.get_transaction_count(account)
    executor = make_executor(localnet, policy, tmp_path)
    hedge = Action("borrow", "localnet", "aave_v3", "WETH", 2 * 10**18, 4_000.0, "delta_usd 9,000 above max 5,000")

    first = read(policy)
    assert executor.execute_plan(plan(first, hedge), first).states == ("sent",)
    later_states = []
    for amount in (2 * 10**18 + 1, 2 * 10**18 + 2):  # the chain does not show the hedge yet: the same breach
        again = read(policy)
        report = executor.execute_plan(plan(again, Action("borrow", "localnet", "aave_v3", "WETH", amount, 4_000.0,
                                                          "delta_usd 9,000 above max 5,000")), again)
        later_states.append((report.deferred != "", report.intents))
    assert later_states == [(True, ()), (True, ())]
    assert w3.eth.get_transaction_count(account, "pending") <= nonce + 1
    assert len(executor.journal.intents(policy.portfolio.name)) == 1

    rpc(w3, "anvil_mine", "0x1")
    executor.advance()
    hedged = read(policy)
    assert executor.journal.unresolved(policy.portfolio.name) == []
    assert w3.eth.get_transaction_count(account) == nonce + 1
    weth_debt = lambda s: sum(r.variable_debt_base_units for p in s.positions  # noqa: E731
                              for r in getattr(p, "reserves", ()) if r.token.symbol == "WETH")
    # Aave books debt in scaled units (ray division): a borrow may show up one wei short.
    assert weth_debt(hedged) - weth_debt(first) >= 2 * 10**18 - 1
    # The next cycle sees the hedged state and may act again.
    report = executor.execute_plan(plan(hedged, borrow_usdc(1)), hedged)
    assert report.deferred == "" and report.states == ("sent",)


def test_metrics_count_sent_transactions_and_the_kill_switch(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    policy = live(demo_policy("leveraged-long"))
    executor = make_executor(localnet, policy, tmp_path, registry=registry)
    snapshot = read(policy)
    executor.execute_plan(plan(snapshot, borrow_usdc(10)), snapshot, wait_s=5)
    assert registry.get_sample_value("ballast_transactions_total", {"chain": "localnet", "kind": "action"}) == 1
    assert registry.get_sample_value("ballast_kill_switch_engaged") == 0
