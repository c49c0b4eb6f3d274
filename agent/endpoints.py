"""The daemon's HTTP endpoints: /metrics (Prometheus), /healthz and /readyz, served from a daemon thread."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import make_wsgi_app

from agent import telemetry

log = structlog.get_logger(__name__)


class Watched(Protocol):
    """What the endpoints ask of the daemon: whether it is ready, and whether it is healthy (with why)."""

    ready: bool

    def healthy(self) -> tuple[bool, str]: ...


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
        pass


class _Server(WSGIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A scraper that gives up (Prometheus closes the socket at its scrape timeout on a busy host) resets the
        connection before its request is read: one log line, not a traceback on stderr."""
        error = sys.exc_info()[1]
        log.warning("endpoint request dropped", client=client_address[0], error=f"{type(error).__name__}: {error}")


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
    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="endpoints", daemon=True).start()
    return server
