"""The failover provider retries transient errors (transport failures and JSON-RPC answers such as "header not
found"), fails over in order and back, returns final answers as they are, and never shows a URL."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from structlog.testing import capture_logs
from web3.exceptions import Web3RPCError

from agent.chain.rpc import FailoverProvider, transient
from agent.errors import ChainUnavailable


class ScriptedEndpoint:
    """An endpoint that answers from a script: an exception to raise or a response to return, per request."""

    def __init__(self, *script: Any, default: Any = None) -> None:
        self.script = list(script)
        self.default = default if default is not None else {"jsonrpc": "2.0", "id": 1, "result": "0x1"}
        self.calls = 0

    def make_request(self, method: Any, params: Any) -> Any:
        self.calls += 1
        step = self.script.pop(0) if self.script else self.default
        if isinstance(step, Exception):
            raise step
        return step


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def provider(*endpoints: ScriptedEndpoint, clock: Clock | None = None, **kwargs: Any) -> FailoverProvider:
    clock = clock or Clock()
    return FailoverProvider("testnet", endpoints, clock=clock, sleep=clock.sleep, **kwargs)


DOWN = requests.ConnectionError("connection refused by https://rpc.example/v2/SECRETKEY")


def test_transient_errors_are_retried_with_exponential_backoff_on_the_same_endpoint() -> None:
    clock = Clock()
    first = ScriptedEndpoint(DOWN, requests.Timeout("slow"))
    p = provider(first, ScriptedEndpoint(), clock=clock, retries=2, backoff_s=0.1)

    assert p.make_request("eth_blockNumber", [])["result"] == "0x1"
    assert first.calls == 3
    assert clock.slept == [0.1, 0.2]
    assert p.current_endpoint == 0


def test_dead_endpoint_fails_over_to_the_next_and_logs_it_once() -> None:
    dead, alive = ScriptedEndpoint(default=DOWN), ScriptedEndpoint()
    p = provider(dead, alive, retries=1)
    with capture_logs() as logs:
        for _ in range(5):
            p.make_request("eth_blockNumber", [])
    assert p.current_endpoint == 1
    assert dead.calls == 2  # tried (1 + 1 retry) once, then left alone
    assert alive.calls == 5
    assert [entry["event"] for entry in logs] == ["rpc failover"]
    assert logs[0]["from_endpoint"] == 0 and logs[0]["to_endpoint"] == 1


def test_after_failback_period_the_first_endpoint_is_probed_and_used_again() -> None:
    clock = Clock()
    first = ScriptedEndpoint(DOWN, DOWN)
    second = ScriptedEndpoint()
    p = provider(first, second, clock=clock, retries=1, failback_after_s=60)
    p.make_request("eth_blockNumber", [])
    assert p.current_endpoint == 1

    clock.now = 30
    p.make_request("eth_blockNumber", [])
    assert first.calls == 2  # not probed before the period is over

    clock.now = 61
    with capture_logs() as logs:
        p.make_request("eth_blockNumber", [])
    assert p.current_endpoint == 0
    assert [entry["event"] for entry in logs] == ["rpc failback"]


def test_a_failed_probe_waits_another_period_before_probing_again() -> None:
    clock = Clock()
    first, second = ScriptedEndpoint(default=DOWN), ScriptedEndpoint()
    p = provider(first, second, clock=clock, retries=0, failback_after_s=60)
    p.make_request("eth_blockNumber", [])
    clock.now = 61
    p.make_request("eth_blockNumber", [])  # probe fails, stays on 1
    probes = first.calls
    clock.now = 62
    p.make_request("eth_blockNumber", [])
    assert first.calls == probes
    assert p.current_endpoint == 1


def test_rpc_errors_from_the_node_are_answers_not_failures() -> None:
    reverted = {"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "message": "execution reverted"}}
    first, second = ScriptedEndpoint(reverted), ScriptedEndpoint()
    p = provider(first, second)
    assert p.make_request("eth_call", [])["error"]["message"] == "execution reverted"
    assert second.calls == 0


def test_rate_limited_endpoint_is_retried_then_left_for_the_next() -> None:
    limited = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "limit exceeded"}}
    first, second = ScriptedEndpoint(default=limited), ScriptedEndpoint()
    p = provider(first, second, retries=1)
    assert p.make_request("eth_call", [])["result"] == "0x1"
    assert first.calls == 2 and p.current_endpoint == 1


def test_all_endpoints_down_is_one_error_naming_indexes_never_urls() -> None:
    p = provider(ScriptedEndpoint(default=DOWN), ScriptedEndpoint(default=requests.Timeout("t")), retries=0)
    with pytest.raises(ChainUnavailable) as error:
        p.make_request("eth_blockNumber", [])
    message = str(error.value)
    assert "endpoint 0: ConnectionError" in message and "endpoint 1: Timeout" in message
    assert "SECRETKEY" not in message and "rpc.example" not in message


def test_every_request_is_counted_per_endpoint_and_outcome() -> None:
    seen: list[tuple[int, str, str]] = []
    p = provider(ScriptedEndpoint(DOWN), ScriptedEndpoint(), retries=0,
                 on_request=lambda i, m, o: seen.append((i, m, o)))
    p.make_request("eth_call", [])
    assert seen == [(0, "eth_call", "unavailable"), (1, "eth_call", "ok")]


def test_chain_id_is_asked_once() -> None:
    endpoint = ScriptedEndpoint()
    p = provider(endpoint)
    for _ in range(3):
        p.make_request("eth_chainId", [])
    assert endpoint.calls == 1


def rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}


@pytest.mark.parametrize("answer", [
    rpc_error(-32000, "header not found"), rpc_error(-32000, "missing trie node 6f3a… (path )"),
    rpc_error(429, "Too Many Requests"), rpc_error(-32005, "query returned more than 10000 results"),
    rpc_error(-32603, "upstream request timeout"), rpc_error(-32000, "request timed out"),
])
def test_transient_json_rpc_errors_are_retried_then_failed_over(answer: dict[str, Any]) -> None:
    first, second = ScriptedEndpoint(answer, default=answer), ScriptedEndpoint()
    p = provider(first, second, retries=1)
    assert p.make_request("eth_call", [])["result"] == "0x1"
    assert first.calls == 2 and p.current_endpoint == 1


def test_a_transient_error_that_clears_is_absorbed_by_a_retry_on_the_same_endpoint() -> None:
    first = ScriptedEndpoint(rpc_error(-32000, "header not found"))
    p = provider(first, ScriptedEndpoint(), retries=2)
    assert p.make_request("eth_call", [])["result"] == "0x1"
    assert first.calls == 2 and p.current_endpoint == 0


def test_transient_errors_on_every_endpoint_are_chain_unavailable_naming_the_error() -> None:
    p = provider(ScriptedEndpoint(default=rpc_error(-32000, "header not found")),
                 ScriptedEndpoint(default=rpc_error(-32000, "missing trie node abc")), retries=0)
    with pytest.raises(ChainUnavailable, match="endpoint 0: header not found; endpoint 1: missing trie node"):
        p.make_request("eth_call", [])


@pytest.mark.parametrize("final", [
    {"code": 3, "message": "execution reverted: timeout", "data": "0x08c379a0"},
    {"code": -32000, "message": "nonce too low"}, {"code": -32000, "message": "already known"},
    {"code": -32000, "message": "replacement transaction underpriced"},
    {"code": -32000, "message": "insufficient funds for gas * price + value"},
])
def test_reverts_and_refusals_are_final_answers(final: dict[str, Any]) -> None:
    assert transient(final) is None
    assert transient(Web3RPCError(final["message"], rpc_response={"jsonrpc": "2.0", "id": 1, "error": final})) is None
    first, second = ScriptedEndpoint({"jsonrpc": "2.0", "id": 1, "error": final}), ScriptedEndpoint()
    assert provider(first, second).make_request("eth_call", [])["error"] == final
    assert second.calls == 0


def test_one_classifier_for_transport_errors_and_json_rpc_errors() -> None:
    header = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "header not found"}}
    assert transient(Web3RPCError("header not found", rpc_response=header)) == "header not found"
    assert transient(DOWN) == "ConnectionError"
    assert transient(requests.HTTPError(response=_response(503))) == "HTTP 503"
    assert transient(requests.HTTPError(response=_response(401))) is None


def _response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    return response


@pytest.mark.parametrize(("method", "answer", "why"), [
    ("eth_blockNumber", {"jsonrpc": "2.0", "id": 1, "result": {"unexpected": 1}}, "wrong-typed result"),
    ("eth_call", {"jsonrpc": "2.0", "id": 1, "result": 7}, "wrong-typed result"),
    ("eth_getBlockByNumber", {"jsonrpc": "2.0", "id": 1, "result": "0x1"}, "wrong-typed result"),
    ("eth_call", {"jsonrpc": "2.0", "id": 1}, "malformed answer"),
    ("eth_call", ["not", "an", "object"], "malformed answer"),
    ("eth_call", rpc_error(-32601, "the method eth_call does not exist"), "error -32601"),
])
def test_malformed_answers_are_the_endpoints_fault_and_the_next_one_is_tried(
    method: str, answer: Any, why: str
) -> None:
    block = {"number": "0x1", "hash": "0x" + "ab" * 32, "timestamp": "0x1"}
    good = {"jsonrpc": "2.0", "id": 1, "result": block if method == "eth_getBlockByNumber" else "0x1"}
    first, second = ScriptedEndpoint(default=answer), ScriptedEndpoint(default=good)
    assert provider(first, second, retries=0).make_request(method, []) == good
    with pytest.raises(ChainUnavailable, match=f"endpoint 0: {why}"):
        provider(ScriptedEndpoint(default=answer), retries=0).make_request(method, [])
