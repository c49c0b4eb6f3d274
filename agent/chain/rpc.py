"""One chain's RPC endpoints behind a web3 provider: timeouts, retries with backoff on transient errors, failover
to the next endpoint in the policy's order and back to the first after a while. Errors and logs name endpoints by
their index, never by their URL (which often carries an API key).

`transient` is the one place that tells "not now" (retry, fail over, keep the intent) from a final answer (a revert,
a refused transaction): the provider retries and fails over on the first kind, and the executor's simulation
never mistakes one for a revert. The endpoints are injected (`Endpoint`), so tests swap the transport, not the logic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import requests
import structlog
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.providers import HTTPProvider, JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from agent.errors import ChainUnavailable
from agent.telemetry import RPC_REQUESTS

log = structlog.get_logger(__name__)

# JSON-RPC error codes that mean "this endpoint is overloaded", not "your request is wrong".
RATE_LIMITED_CODES = frozenset({-32005, 429})
TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# What nodes and providers answer (mostly as code -32000) when the request was fine and the endpoint could not serve
# it now: a block it has not seen yet or has pruned (another endpoint may have it), an upstream timeout, a limit.
# A revert ("execution reverted") or a refused transaction ("nonce too low", "already known") is an answer.
TRANSIENT_MESSAGES = (
    "header not found", "missing trie node", "unknown block", "timeout", "timed out", "deadline exceeded",
    "rate limit", "too many requests", "limit exceeded", "capacity", "upstream", "temporarily unavailable",
    "service unavailable", "bad gateway", "try again", "connection reset",
)
REVERT_CODE = 3  # EIP-1474: "execution reverted", with the revert data
# The endpoint did not understand a well-formed request (parse error, invalid request, method not found): its fault.
ENDPOINT_FAULT_CODES = frozenset({-32700, -32600, -32601})
# The shape of the result of the methods the agent uses: a hex quantity, hex data, or an object with these fields
# (or null).
_QUANTITY = frozenset({"eth_blockNumber", "eth_chainId", "eth_getTransactionCount", "eth_gasPrice", "eth_estimateGas",
                       "eth_maxPriorityFeePerGas", "eth_getBalance"})
_DATA = frozenset({"eth_call", "eth_getCode", "eth_sendRawTransaction"})
_BLOCK = ("number", "hash", "timestamp")
_OBJECT = {"eth_getBlockByNumber": _BLOCK, "eth_getBlockByHash": _BLOCK,
           "eth_getTransactionReceipt": ("transactionHash", "blockNumber", "status"),
           "eth_getTransactionByHash": ("hash", "nonce"), "eth_feeHistory": ("baseFeePerGas",)}


class Endpoint(Protocol):
    """What the failover provider needs of one endpoint; tests inject failing ones."""

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse: ...


RequestHook = Callable[[int, str, str], None]  # endpoint index, method, outcome (ok|error|unavailable)


def http_endpoint(url: str, timeout_s: float) -> Endpoint:
    """Return an HTTP endpoint with web3's own retries off: this module does the retrying and failing over."""
    return HTTPProvider(url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)


def transient(error: BaseException | Mapping[str, Any]) -> str | None:
    """Returns what makes `error` transient (worth a retry, or another endpoint), or None when it is a final answer.

    `error` is a transport exception, a `Web3RPCError` (a JSON-RPC error web3 raised), or the `error` object of a
    JSON-RPC response. Transient: connection errors, timeouts, malformed answers, HTTP 408/425/429/5xx, JSON-RPC
    codes -32005 and 429, and the messages of `TRANSIENT_MESSAGES`. Everything else (reverts, refusals) is final.
    """
    if isinstance(error, Web3RPCError):
        response = error.rpc_response or {}
        body = response.get("error") if isinstance(response, Mapping) else None
        return transient(body if isinstance(body, Mapping) else {"message": error.message})
    if isinstance(error, Mapping):
        if error.get("code") in RATE_LIMITED_CODES:
            return "rate limited"
        if error.get("code") in ENDPOINT_FAULT_CODES:
            return f"error {error.get('code')}"
        message = str(error.get("message", "")).lower()
        if error.get("code") == REVERT_CODE or "reverted" in message:  # a revert reason may say "timeout" too
            return None
        return next((text for text in TRANSIENT_MESSAGES if text in message), None)
    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else None
        return f"HTTP {status}" if status in TRANSIENT_HTTP_STATUS else None
    if isinstance(error, requests.ConnectionError | requests.Timeout | OSError | ValueError):
        return type(error).__name__
    return None


def malformed(method: str, response: Any) -> str | None:
    """Returns why `response` is not a JSON-RPC answer to `method` (an endpoint fault: the next one is tried), or
    None. The results of the methods the agent reads must have their shape: a hex quantity, hex data, an object."""
    if not isinstance(response, Mapping) or ("result" in response) == ("error" in response):
        return "malformed answer"
    if "error" in response:
        return None if isinstance(response["error"], Mapping) else "malformed error"
    result = response["result"]
    hex_text = isinstance(result, str) and result.startswith("0x")
    fields = _OBJECT.get(method)
    if (method in _QUANTITY and not (hex_text and len(result) > 2)) or (method in _DATA and not hex_text) or (
            fields is not None and result is not None
            and not (isinstance(result, Mapping) and all(f in result for f in fields))):
        return f"wrong-typed result for {method}"
    return None


class FailoverProvider(JSONBaseProvider):
    """A web3 provider over an ordered list of endpoints of one chain.

    Each request goes to the current endpoint, with `retries` attempts and exponential backoff on transient errors
    (a transport failure, a `malformed` answer, or a JSON-RPC error `transient` recognises); then to the next
    endpoints in order. After `failback_after_s` on a fallback, the first endpoint is tried again. When every
    endpoint fails, `ChainUnavailable` names each endpoint's index and error kind. A final JSON-RPC error is
    returned as is.
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
                if transient(exc) is None:
                    problems.append(problem)
                    return None
                if attempt == self.retries:
                    problems.append(problem)
                continue
            error = response.get("error") if isinstance(response, dict) else None
            why = malformed(method, response) or (transient(error) if isinstance(error, Mapping) else None)
            if why is not None:
                self._count(index, method, "unavailable")
                if attempt == self.retries:
                    problems.append(f"endpoint {index}: {why}")
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
