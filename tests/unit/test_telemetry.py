"""Logging set-up with redaction, and the Prometheus plumbing."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.request
from collections.abc import Iterator

import pytest
import structlog

from agent import __version__
from agent.telemetry import (
    configure_logging,
    new_registry,
    redact_url,
    split_host_port,
    start_metrics_server,
)

SECRET = "SECRETKEY123"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    structlog.reset_defaults()


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://mainnet.infura.io/v3/SECRETKEY123", "https://mainnet.infura.io/…"),
        ("https://rpc.example?apikey=SECRETKEY123", "https://rpc.example/…"),
        ("wss://user:SECRETKEY123@rpc.example:8546", "wss://rpc.example:8546/…"),
        ("https://[::1]:8545/#SECRETKEY123", "https://[::1]:8545/…"),
        ("not a url SECRETKEY123", "[redacted]"),
    ],
)
def test_redact_url_keeps_only_scheme_host_and_port(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_json_lines_off_a_terminal_with_iso_utc_timestamps(log: io.StringIO) -> None:
    configure_logging("auto", "info", stream=log)

    structlog.get_logger("ballast.test").info("cycle", portfolio="delta-neutral-lp", health_factor=1.8)

    (record,) = records(log)
    assert record["event"] == "cycle" and record["level"] == "info"
    assert record["portfolio"] == "delta-neutral-lp" and record["health_factor"] == 1.8
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", str(record["timestamp"]))


def test_secret_keys_are_removed_and_urls_reduced(log: io.StringIO) -> None:
    configure_logging("json", "info", stream=log)

    structlog.get_logger().info(
        f"connected to https://rpc.example/v3/{SECRET}",
        private_key="0x" + "ab" * 32,
        keystore_password="hunter2" + SECRET,
        endpoint=f"https://rpc.example/v3/{SECRET}",
        nested={"urls": [f"wss://rpc.example/{SECRET}"], "api_key": SECRET},
        token="WETH",
    )

    (record,) = records(log)
    assert SECRET not in log.getvalue() and "ab" * 32 not in log.getvalue()
    assert record["private_key"] == record["keystore_password"] == "[redacted]"
    assert record["event"] == "connected to https://rpc.example/…"
    assert record["nested"] == {"urls": ["wss://rpc.example/…"], "api_key": "[redacted]"}
    assert record["token"] == "WETH"  # an asset, not a credential


def test_standard_library_records_are_rendered_and_redacted_too(log: io.StringIO) -> None:
    configure_logging("json", "info", stream=log)

    logging.getLogger("web3.providers.HTTPProvider").warning("Making request. URI: %s", f"https://x.io/{SECRET}")

    (record,) = records(log)
    assert record["event"] == "Making request. URI: https://x.io/…"
    assert record["logger"] == "web3.providers.HTTPProvider" and record["level"] == "warning"


def test_exception_traceback_is_logged_with_urls_redacted(log: io.StringIO) -> None:
    configure_logging("json", "info", stream=log)

    try:
        raise ConnectionError(f"refused by https://rpc.example/{SECRET}")
    except ConnectionError:
        structlog.get_logger().exception("rpc failed")

    (record,) = records(log)
    assert "Traceback" in str(record["exception"]) and "https://rpc.example/…" in str(record["exception"])
    assert SECRET not in log.getvalue()


def test_records_below_the_level_are_dropped(log: io.StringIO) -> None:
    configure_logging("json", "warning", stream=log)

    structlog.get_logger().info("quiet")
    logging.getLogger("apscheduler").info("quiet too")
    structlog.get_logger().warning("loud")

    assert [record["event"] for record in records(log)] == ["loud"]


def test_console_format_on_a_terminal_renders_key_value_pairs() -> None:
    terminal = _Terminal()
    try:
        configure_logging("auto", "info", stream=terminal)
        structlog.get_logger().info("cycle", portfolio="lp", private_key=SECRET)
    finally:
        structlog.reset_defaults()

    line = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())  # colours are on for a terminal
    assert "cycle" in line and "portfolio=lp" in line and "private_key=[redacted]" in line
    assert not line.lstrip().startswith("{")


def test_reconfiguring_replaces_the_previous_handler(log: io.StringIO) -> None:
    first = io.StringIO()
    configure_logging("json", "info", stream=first)
    configure_logging("json", "info", stream=log)

    structlog.get_logger().info("once")

    assert first.getvalue() == "" and len(records(log)) == 1


def test_metrics_server_serves_build_info_from_the_registry() -> None:
    server = start_metrics_server("127.0.0.1:0", new_registry())
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()

    assert f'ballast_build_info{{version="{__version__}"}} 1.0' in body


@pytest.mark.parametrize(
    ("addr", "parsed"),
    [("127.0.0.1:9108", ("127.0.0.1", 9108)), ("[::1]:9108", ("::1", 9108)), ("0.0.0.0:0", ("0.0.0.0", 0))],
)
def test_split_host_port_accepts_v4_v6_and_port_zero(addr: str, parsed: tuple[str, int]) -> None:
    assert split_host_port(addr) == parsed


@pytest.mark.parametrize("addr", ["9108", ":9108", "host:", "host:port", "host:65536"])
def test_split_host_port_refuses_anything_else(addr: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        split_host_port(addr)
