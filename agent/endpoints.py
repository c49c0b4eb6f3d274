"""The daemon's HTTP endpoints: /metrics (Prometheus), /healthz and /readyz, served from a daemon thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from agent import telemetry


class Watched(Protocol):
    """What the endpoints ask of the daemon: whether it is ready, and whether it is healthy (with why)."""

    ready: bool

    def healthy(self) -> tuple[bool, str]: ...


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
        pass


def serve_endpoints(addr: str, daemon: Watched) -> WSGIServer:
    """Serve /metrics, /healthz and /readyz on `addr` (host:port) from a daemon thread; return the server."""
    metrics = make_wsgi_app(telemetry.REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ready = (daemon.ready, "ready" if daemon.ready else "starting")
            ok, why = daemon.healthy() if path == "/healthz" else ready
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [why.encode() + b"\n"]
        return metrics(environ, start_response)

    host, port = telemetry.split_host_port(addr)
    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="endpoints", daemon=True).start()
    return server
