"""The failover provider retries transient errors, fails over in order and back, and never shows a URL."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from agent.chain.rpc import FailoverProvider
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
