"""A fault-injecting JSON-RPC proxy in front of anvil: the daemon's policy names the proxy's URL as its endpoint and
the test decides, request by request, what the daemon's node does — answer as anvil does, be down, answer
transient errors, malformed JSON or wrong-typed results, refuse transactions, drop them (accept and forget), or
hold a request unanswered (the daemon waits on it: a test kills it there, at a known point of its work).

A `Fault` is a rule: which methods it touches (None: all), with what probability, for how long, and what it does.
Rules can change while the daemon runs (`proxy.fault = …`); every request and what the proxy did is counted.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_utils import keccak

Answer = Callable[[dict[str, Any]], dict[str, Any] | bytes | object | None]
"""What a fault does to one request: a JSON-RPC response to send back, raw bytes (malformed), None (drop the
connection: the endpoint is down), or `FORWARD`."""


def error(code: int, message: str) -> Answer:
    """Returns a fault answer: the JSON-RPC error `code`, `message` for the request's id."""
    return lambda request: {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": code, "message": message}}


def down(_request: dict[str, Any]) -> None:
    return None


def malformed(_request: dict[str, Any]) -> bytes:
    return b'{"jsonrpc": "2.0", "id": 1, "result": '


def wrong_type(request: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request.get("id"), "result": {"unexpected": ["shape"]}}


def dropped(request: dict[str, Any]) -> dict[str, Any]:
    """Answers a raw transaction with its hash, as a node that accepted it would, without sending it anywhere: the
    transaction never reaches the mempool (a node that forgets it, a mempool that evicts it)."""
    raw = bytes.fromhex(str(request["params"][0]).removeprefix("0x"))
    return {"jsonrpc": "2.0", "id": request.get("id"), "result": "0x" + keccak(raw).hex()}


FORWARD = object()
"""What an answer returns to have the request forwarded upstream after all (and anvil's answer returned)."""


class Hold:
    """A fault answer that holds the first request it gets unanswered, as a node that hangs, until `release()`;
    `reached` is set once it holds one. Later requests, and the held one once released, get upstream's answer."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> object:
        with self._lock:
            first = not self.reached.is_set()
            self.reached.set()
        if first:
            self._released.wait(120)
        return FORWARD

    def release(self) -> None:
        self._released.set()


@dataclass(frozen=True)
class Fault:
    """Applies `answer` to requests of `methods` (None: every method) with `probability`, until `until_s` (a
    monotonic time; None: for ever). `forward_first` sends the request upstream first (a transaction reaches the
    node, the answer is still the fault's); `only`, when given, picks the requests by their params, `answered` by
    upstream's answer to them (forwarded first)."""

    answer: Answer
    methods: frozenset[str] | None = None
    probability: float = 1.0
    until_s: float | None = None
    forward_first: bool = False
    only: Callable[[Any], bool] | None = None
    answered: Callable[[dict[str, Any]], bool] | None = None

    def applies(self, request: dict[str, Any], rng: random.Random) -> bool:
        if self.until_s is not None and time.monotonic() >= self.until_s:
            return False
        if self.only is not None and not self.only(request.get("params")):
            return False
        method = str(request.get("method"))
        return (self.methods is None or method in self.methods) and rng.random() < self.probability


class FaultProxy:
    """A threaded HTTP JSON-RPC proxy to `upstream` on 127.0.0.1; `url` to point a policy at, `fault` to set."""

    def __init__(self, upstream: str, seed: int = 0) -> None:
        self.upstream = upstream
        self.fault: Fault | None = None
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = proxy.handle(body)
                if answer is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):  # a daemon killed while its request was held
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def handle(self, body: bytes) -> bytes | None:
        """Returns the bytes to answer `body` with (None: drop the connection)."""
        request = json.loads(body)
        if isinstance(request, list):  # a batch: the proxy forwards it whole
            return self._forward(body)
        method = str(request.get("method"))
        with self._lock:
            fault = self.fault
            hit = fault is not None and fault.applies(request, self._rng)
        if not hit or fault is None:
            self.counts[f"{method}:forwarded"] += 1
            return self._forward(body)
        upstream = self._forward(body) if fault.forward_first or fault.answered is not None else None
        if fault.answered is not None and upstream is not None and not fault.answered(json.loads(upstream)):
            self.counts[f"{method}:forwarded"] += 1
            return upstream
        self.counts[f"{method}:fault"] += 1
        answer = fault.answer(request)
        if answer is FORWARD:
            return self._forward(body) if upstream is None else upstream
        if answer is None or isinstance(answer, bytes):
            return answer
        return json.dumps(answer).encode()

    def _forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
