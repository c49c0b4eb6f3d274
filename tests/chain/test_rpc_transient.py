"""Transient JSON-RPC errors against the local world: the failover provider absorbs them, and the executor's
simulation never takes one for a revert (the intent waits and goes through once the endpoint answers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3
from web3.providers import JSONBaseProvider

from agent.chain.rpc import FailoverProvider, http_endpoint
from agent.errors import ChainUnavailable
from agent.localnet import Localnet
from agent.policy import Policy
from tests.chain.execution_support import borrow_usdc, keeper_account, live, make_executor, plan, read

HEADER_NOT_FOUND = {"code": -32000, "message": "header not found"}


class Flaky:
    """An endpoint in front of anvil that answers "header not found" to the first `failures` calls of `methods`
    (only those sent `from` the address `sender`, when given: the executor's simulations)."""

    def __init__(self, url: str, failures: int, methods: tuple[str, ...] = ("eth_call", "eth_estimateGas"),
                 sender: str | None = None) -> None:
        self.inner, self.failures, self.methods, self.sender = http_endpoint(url, 10.0), failures, methods, sender
        self.errors = 0

    def make_request(self, method: Any, params: Any) -> Any:
        sent_by = params[0].get("from") if params and isinstance(params[0], dict) else None
        chosen = self.sender is None or str(sent_by).lower() == self.sender.lower()
        if method in self.methods and chosen and self.errors < self.failures:
            self.errors += 1
            return {"jsonrpc": "2.0", "id": 1, "error": HEADER_NOT_FOUND}
        return self.inner.make_request(method, params)


def test_failover_provider_absorbs_header_not_found_and_the_plan_executes(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    snapshot = read(policy)
    flaky = Flaky(localnet.rpc_url, failures=10**6)  # the first endpoint never serves a call
    w3 = Web3(FailoverProvider("localnet", [flaky, http_endpoint(localnet.rpc_url, 10.0)], retries=1,
                               backoff_s=0.0))
    executor = make_executor(localnet, policy, tmp_path, w3=w3)

    report = executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot, wait_s=10)

    assert report.states == ("confirmed",) and flaky.errors >= 2


def test_a_transient_simulation_error_is_not_a_revert_and_the_intent_waits(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    account = keeper_account(localnet, "leveraged-long").address
    snapshot = read(policy)
    # A single endpoint behind a provider that passes the error through, as a plain HTTP provider does.
    flaky = Flaky(localnet.rpc_url, failures=0, methods=("eth_call",), sender=account)
    w3 = Web3(PassThrough(flaky))
    nonce = w3.eth.get_transaction_count(account)
    executor = make_executor(localnet, policy, tmp_path, w3=w3)
    flaky.failures = 1  # the simulation's call is not answered

    with pytest.raises(ChainUnavailable, match="simulation not answered now \\(header not found\\)"):
        executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot)
    (intent,) = executor.journal.intents()
    assert (intent.state, intent.error) == ("planned", None)

    executor.execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot)  # the next cycle continues the plan
    assert executor.wait(10)
    (intent,) = executor.journal.intents()
    assert intent.state == "confirmed" and w3.eth.get_transaction_count(account) == nonce + 1


class PassThrough(JSONBaseProvider):
    """One endpoint, no retries: every JSON-RPC error handed to web3 as it came."""

    def __init__(self, endpoint: Flaky) -> None:
        super().__init__()
        self.endpoint = endpoint

    def make_request(self, method: Any, params: Any) -> Any:
        return self.endpoint.make_request(method, params)
