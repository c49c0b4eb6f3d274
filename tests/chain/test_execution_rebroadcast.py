"""A transaction the node does not keep (it answered the broadcast, then has no such transaction: a load-balanced
endpoint, a mempool that evicted it) is re-broadcast, same bytes, on each pass; the re-broadcasts do not restart
its bump timer, so it is still replaced with higher fees once `replace_after_s` has passed since it was first sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from web3 import Web3

from agent.localnet import Localnet
from agent.policy import Policy
from tests.chain.execution_support import Clock, borrow_usdc, live, make_executor, plan, read
from tests.faults.proxy import Fault, FaultProxy, dropped


def test_re_broadcasts_of_a_transaction_the_node_forgets_do_not_postpone_its_replacement(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"), replace_after_s=30, deadline_s=600)
    snapshot, clock = read(policy), Clock()
    proxy = FaultProxy(localnet.rpc_url)
    proxy.fault = Fault(dropped, frozenset({"eth_sendRawTransaction"}))
    try:
        executor = make_executor(localnet, policy, tmp_path, clock, w3=Web3(Web3.HTTPProvider(proxy.url)))
        (intent,) = executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot).intents
        first_sent = executor.journal.intent(intent.id).last_sent_at  # type: ignore[union-attr]
        clock.advance(20)
        executor.advance()  # the node has no such transaction: the same bytes again
        assert proxy.counts["eth_sendRawTransaction:fault"] == 2
        assert executor.journal.intent(intent.id).last_sent_at == first_sent  # type: ignore[union-attr]

        clock.advance(11)  # 31 s since it was first sent
        executor.advance()
        kinds = [t.record.kind for t in executor.journal.txs(intent.id)]
        assert kinds == ["action", "replacement"]
    finally:
        proxy.close()
