"""Logs and metrics plumbing: structlog set-up with secret redaction, and the Prometheus registry.

Logs: JSON lines off a terminal, key=value on a terminal, ISO-8601 UTC timestamps. Records from the standard
`logging` module (web3, APScheduler) go through the same processors, so they are redacted too: web3 logs the
endpoint URL, which often carries an API key in its path or query.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from structlog.typing import EventDict

from agent import __version__

LogFormat = Literal["json", "console", "auto"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]

REDACTED = "[redacted]"

# Keys whose values are secrets whatever they hold. Not "token": in this domain a token is an asset (WETH).
_SECRET_KEY = re.compile(
    r"private_?key|privkey|passw(or)?d|passphrase|secret|api_?key|mnemonic|authorization|auth_?token|access_?token",
    re.IGNORECASE,
)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """Returns `url` reduced to `scheme://host[:port]`, with `/…` when a path, query, fragment or userinfo was
    removed: those are where RPC providers put API keys. A string that is not a URL becomes `[redacted]`."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if not parts.scheme or not host:
        return REDACTED
    hidden = "@" in parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{host}{'/…' if hidden else ''}"


def redact_text(text: str) -> str:
    """Returns `text` with every URL in it passed through `redact_url`."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: REDACTED if _SECRET_KEY.search(str(key)) else _redacted(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: returns the event with secret-named keys replaced by `[redacted]` and every URL in
    string values (including a formatted traceback) reduced by `redact_url`."""
    for key, value in event_dict.items():
        event_dict[key] = REDACTED if _SECRET_KEY.search(key) else _redacted(value)
    return event_dict


_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]

# The handler this module installed, so that reconfiguring replaces it and leaves others' handlers alone.
_handler: logging.Handler | None = None


def configure_logging(
    log_format: LogFormat = "auto", level: LogLevel = "info", stream: TextIO | None = None
) -> None:
    """Routes structlog and standard-library logging to `stream` (default stderr) at `level` and above.

    `auto` renders JSON lines unless `stream` is a terminal, where it renders `key=value` console lines.
    """
    global _handler
    out = stream if stream is not None else sys.stderr
    tty = out.isatty()
    renderer: Any
    if log_format == "json" or (log_format == "auto" and not tty):
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: the pretty ones would bypass redaction, which works on the formatted text.
        plain = structlog.dev.plain_traceback
        renderer = structlog.dev.ConsoleRenderer(colors=tty, exception_formatter=plain)
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED_PROCESSORS,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Tracebacks become text before redaction so that URLs inside them are redacted too.
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler
    structlog.configure(
        processors=[*_SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        cache_logger_on_first_use=False,
    )


def new_registry() -> CollectorRegistry:
    """Returns a new Prometheus registry holding `ballast_build_info{version=…}`, for the daemon's metrics."""
    registry = CollectorRegistry()
    Info("ballast_build", "Ballast build information.", registry=registry).info({"version": __version__})
    return registry


REGISTRY = new_registry()

# Every metric the agent exports, in base units (seconds, USD, ratios). Labels never hold an address, a hash or a URL:
# a portfolio has one account per chain, so (portfolio, chain) names it.
RPC_REQUESTS = Counter(
    "ballast_rpc_requests",
    "JSON-RPC requests by chain, endpoint index (in the policy's order), method and outcome (ok|error|unavailable).",
    ["chain", "endpoint", "method", "outcome"],
    registry=REGISTRY,
)
HEALTH_FACTOR = Gauge(
    "ballast_health_factor", "Aave health factor of the portfolio's account on a chain (+Inf without debt).",
    ["portfolio", "chain"], registry=REGISTRY,
)
LIQUIDATION_DISTANCE = Gauge(
    "ballast_liquidation_distance_ratio",
    "Smallest move of the underlying (fraction of spot) that takes any account below health factor 1.",
    ["portfolio", "direction"], registry=REGISTRY,
)
GREEK = Gauge(
    "ballast_greek_usd", "Portfolio Greeks in desk units (USD): delta_usd, gamma_usd_1pct, vega_usd_1vol, "
    "theta_usd_1d, rho_usd_1pct.", ["portfolio", "greek"], registry=REGISTRY,
)
BAND = Gauge(
    "ballast_band", "The policy's bands: bound is min, target or max; metric is health_factor or a Greek.",
    ["portfolio", "metric", "bound"], registry=REGISTRY,
)
ORACLE_AGE = Gauge(
    "ballast_oracle_age_seconds", "Age of each feed's price at the snapshot block.", ["chain", "feed"],
    registry=REGISTRY,
)
ORACLE_STALE = Gauge(
    "ballast_oracle_stale", "1 while a feed's price is stale or untrusted.", ["chain", "feed"], registry=REGISTRY,
)
BLOCK_DURATION = Histogram(
    "ballast_block_duration_seconds", "Duration of one new block on a chain: the fleet's batch read and the cycles of "
    "the portfolios whose figures moved.", ["chain"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=REGISTRY,
)
CYCLE_DURATION = Histogram(
    "ballast_cycle_duration_seconds", "Duration of one read-assess-plan-guard-execute cycle.", ["portfolio"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=REGISTRY,
)
CYCLES = Counter(
    "ballast_cycles", "Cycles by outcome (ok, failed).", ["portfolio", "outcome"], registry=REGISTRY,
)
LAST_SUCCESSFUL_CYCLE = Gauge(
    "ballast_last_successful_cycle_timestamp_seconds", "Unix time of the last cycle that completed.",
    ["portfolio"], registry=REGISTRY,
)
BAND_BREACHES = Counter(
    "ballast_band_breaches", "Cycles that found a band breached, by metric.", ["portfolio", "metric"],
    registry=REGISTRY,
)
ACTIONS = Counter(
    "ballast_actions", "Planned actions approved for execution, by kind.", ["portfolio", "kind"], registry=REGISTRY,
)
ACTION_COST = Counter(
    "ballast_action_cost_usd", "Estimated cost of approved actions (fees, slippage, gas), USD.", ["portfolio", "kind"],
    registry=REGISTRY,
)


def split_host_port(addr: str) -> tuple[str, int]:
    """Returns (host, port) of `host:port` or `[v6-host]:port`; port 0 asks the OS for a free port.

    Raises ValueError with a message that says what is expected.
    """
    host, sep, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:9108")
    return host, int(port)


def start_metrics_server(addr: str, registry: CollectorRegistry = REGISTRY) -> WSGIServer:
    """Serves `registry` on `http://addr/metrics` from a daemon thread; returns the server, whose
    `server_address` holds the bound port and whose `shutdown()` stops it."""
    host, port = split_host_port(addr)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
