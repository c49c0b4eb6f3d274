"""Stuck transactions on the local chain: a replacement the node refuses as underpriced is not sent and does not
reset the bump timer; a cancellation keeps its own bump budget after the action spent its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from web3 import Web3

from agent.chain.fees import MAX_BUMPS
from agent.localnet import Localnet
from agent.policy import Policy
from tests.chain.execution_support import Clock, borrow_usdc, keeper_account, live, make_executor, plan, read, rpc
from tests.faults.proxy import Fault, FaultProxy, error


@pytest.fixture
def w3(localnet: Localnet) -> Iterator[Web3]:
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    rpc(w3, "evm_setAutomine", False)
    try:
        yield w3
    finally:
        rpc(w3, "evm_setAutomine", True)


def price_out(w3: Web3, max_fee_per_gas_wei: int) -> None:
    """Mines a block whose base fee is above `max_fee_per_gas_wei`: what was offered stays in the mempool."""
    rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(max_fee_per_gas_wei * 3))
    rpc(w3, "anvil_mine", "0x1")


def test_an_underpriced_replacement_is_not_sent_and_the_next_bump_goes_higher(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"), replace_after_s=30, deadline_s=600)
    snapshot, clock = read(policy), Clock()
    proxy = FaultProxy(localnet.rpc_url)
    try:
        executor = make_executor(localnet, policy, tmp_path, clock, w3=Web3(Web3.HTTPProvider(proxy.url)))
        (intent,) = executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot).intents
        (first,) = executor.journal.txs(intent.id)
        sent_at = executor.journal.intent(intent.id).last_sent_at  # type: ignore[union-attr]
        price_out(w3, first.record.max_fee_per_gas_wei)

        underpriced = error(-32000, "replacement transaction underpriced")
        proxy.fault = Fault(underpriced, frozenset({"eth_sendRawTransaction"}))
        clock.advance(31)
        executor.advance()
        _first, refused = executor.journal.txs(intent.id)
        after = executor.journal.intent(intent.id)
        assert refused.record.state == "signed"  # never sent
        assert after is not None and after.last_sent_at == sent_at  # the bump timer was not reset

        # The node keeps refusing those bytes while the first offer sits at the nonce: the next bump goes higher.
        proxy.fault = Fault(underpriced, frozenset({"eth_sendRawTransaction"}), only=lambda p: p == [refused.raw_tx])
        clock.advance(31)
        executor.advance()
        *_, higher = executor.journal.txs(intent.id)
        assert higher.record.max_fee_per_gas_wei >= refused.record.max_fee_per_gas_wei * 11 // 10
        rpc(w3, "anvil_mine", "0x1")
        executor.advance()
        done = executor.journal.intent(intent.id)
        assert done is not None and (done.state, done.tx_hash) == ("confirmed", higher.record.tx_hash)
    finally:
        proxy.close()


def test_a_cancellation_keeps_its_own_bump_budget_after_the_action_spent_its_own(
    localnet: Localnet, w3: Web3, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"), replace_after_s=30, deadline_s=120)
    account = keeper_account(localnet, "leveraged-long").address
    snapshot, clock = read(policy), Clock()
    nonce = w3.eth.get_transaction_count(account)
    executor = make_executor(localnet, policy, tmp_path, clock)
    (intent,) = executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot).intents
    executor.journal.transition(intent.id, "sent", bumps=MAX_BUMPS)  # the action spent its bumps already

    clock.advance(121)  # past the deadline: a cancellation, which stays stuck under the base fee
    executor.advance()
    _action, cancel = executor.journal.txs(intent.id)
    assert cancel.record.kind == "cancel"
    price_out(w3, cancel.record.max_fee_per_gas_wei)
    clock.advance(31)
    executor.advance()
    *_, bumped = executor.journal.txs(intent.id)
    assert bumped.record.kind == "cancel" and bumped.record.tx_hash != cancel.record.tx_hash
    assert bumped.record.max_fee_per_gas_wei > cancel.record.max_fee_per_gas_wei

    rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(1))
    rpc(w3, "anvil_mine", "0x1")
    executor.advance()
    done = executor.journal.intent(intent.id)
    assert done is not None and done.state == "cancelled" and w3.eth.get_transaction_count(account) == nonce + 1
