"""One chain's RPC endpoints behind a web3 provider: timeouts, retries with backoff on transient errors, failover
to the next endpoint in the policy's order and back to the first after a while. Errors and logs name endpoints by
their index, never by their URL (which often carries an API key)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import requests
import structlog
from web3 import Web3
from web3.providers import HTTPProvider, JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from agent.errors import ChainUnavailable
from agent.telemetry import RPC_REQUESTS

log = structlog.get_logger(__name__)

# JSON-RPC error codes that mean "this endpoint is overloaded", not "your request is wrong".
RATE_LIMITED_CODES = frozenset({-32005, 429})
TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Endpoint(Protocol):
    """What the failover provider needs of one endpoint; tests inject failing ones."""

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse: ...


RequestHook = Callable[[int, str, str], None]  # endpoint index, method, outcome (ok|error|unavailable)


def http_endpoint(url: str, timeout_s: float) -> Endpoint:
    """Return an HTTP endpoint with web3's own retries off: this module does the retrying and failing over."""
    return HTTPProvider(url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code in TRANSIENT_HTTP_STATUS
    return isinstance(exc, requests.ConnectionError | requests.Timeout | OSError | ValueError)


class FailoverProvider(JSONBaseProvider):
    """A web3 provider over an ordered list of endpoints of one chain.

    Each request goes to the current endpoint, with `retries` attempts and exponential backoff on transient errors;
    then to the next endpoints in order. After `failback_after_s` on a fallback, the first endpoint is tried again.
    When every endpoint fails, `ChainUnavailable` names each endpoint's index and error kind.
    """

    def __init__(
        self,
        chain_name: str,
        endpoints: Sequence[Endpoint],
        retries: int = 2,
        backoff_s: float = 0.1,
        failback_after_s: float = 60.0,
        on_request: RequestHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.chain_name = chain_name
        self.endpoints = list(endpoints)
        self.retries = retries
        self.backoff_s = backoff_s
        self.failback_after_s = failback_after_s
        self.on_request = on_request
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._current = 0
        self._failed_over_at = 0.0
        self._chain_id_response: RPCResponse | None = None

    @property
    def current_endpoint(self) -> int:
        """Index of the endpoint requests go to now."""
        return self._current

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        # web3's validation middleware asks for the chain id around every call; it never changes, so ask once.
        if method == "eth_chainId" and self._chain_id_response is not None:
            return self._chain_id_response
        response = self._request(method, params)
        if method == "eth_chainId" and "result" in response:
            self._chain_id_response = response
        return response

    def _request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        problems: list[str] = []
        order, probing = self._order()
        for index in order:
            response = self._try_endpoint(index, method, params, problems)
            if response is not None:
                self._settle_on(index, probing)
                return response
        raise ChainUnavailable(f"chain {self.chain_name}: no RPC endpoint answered {method} ({'; '.join(problems)})")

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self.make_request(RPCEndpoint("eth_chainId"), [])
        except ChainUnavailable:
            if show_traceback:
                raise
            return False
        return True

    def _order(self) -> tuple[list[int], bool]:
        """Return the endpoints to try in order, and whether this request probes the preferred one again."""
        with self._lock:
            start = self._current
            probing = bool(start) and self._clock() - self._failed_over_at >= self.failback_after_s
            if probing:
                start = 0
        return [*range(start, len(self.endpoints)), *range(start)], probing

    def _try_endpoint(self, index: int, method: RPCEndpoint, params: Any, problems: list[str]) -> RPCResponse | None:
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self.endpoints[index].make_request(method, params)
            except Exception as exc:  # whatever the transport raises, this endpoint failed this attempt
                self._count(index, method, "unavailable")
                problem = f"endpoint {index}: {type(exc).__name__}"
                if not _is_transient(exc):
                    problems.append(problem)
                    return None
                if attempt == self.retries:
                    problems.append(problem)
                continue
            error = response.get("error") if isinstance(response, dict) else None
            if isinstance(error, dict) and error.get("code") in RATE_LIMITED_CODES:
                self._count(index, method, "unavailable")
                if attempt == self.retries:
                    problems.append(f"endpoint {index}: rate limited")
                continue
            self._count(index, method, "error" if error else "ok")
            return response
        return None

    def _settle_on(self, index: int, probing: bool) -> None:
        with self._lock:
            previous = self._current
            if index == previous:
                if probing:  # the preferred endpoint is still down: probe again one period from now
                    self._failed_over_at = self._clock()
                return
            self._current = index
            self._failed_over_at = self._clock()
        if index > previous:
            log.warning("rpc failover", chain=self.chain_name, from_endpoint=previous, to_endpoint=index)
        else:
            log.info("rpc failback", chain=self.chain_name, from_endpoint=previous, to_endpoint=index)

    def _count(self, index: int, method: str, outcome: str) -> None:
        if self.on_request is not None:
            self.on_request(index, method, outcome)


def counted(chain_name: str) -> RequestHook:
    """Return a hook that counts each request in `ballast_rpc_requests_total`."""

    def count(endpoint: int, method: str, outcome: str) -> None:
        RPC_REQUESTS.labels(chain_name, str(endpoint), method, outcome).inc()

    return count


def connect(
    chain_name: str, urls: Sequence[str], timeout_s: float = 10.0, on_request: RequestHook | None = None
) -> Web3:
    """Return a Web3 for one chain whose requests fail over across `urls` in order, each request counted in
    the `ballast_rpc_requests_total` metric (and passed to `on_request` if given)."""
    metric = counted(chain_name)

    def hook(endpoint: int, method: str, outcome: str) -> None:
        metric(endpoint, method, outcome)
        if on_request is not None:
            on_request(endpoint, method, outcome)

    return Web3(FailoverProvider(chain_name, [http_endpoint(url, timeout_s) for url in urls], on_request=hook))
