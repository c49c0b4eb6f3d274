"""The daemon's HTTP endpoints on a real socket: a scraper that resets its connection mid-request costs one log line,
never a traceback, and the endpoints keep answering."""

from __future__ import annotations

import socket
import struct
import time
import urllib.request

import pytest

from agent.endpoints import serve_endpoints
from agent.localnet.anvil import free_port

pytestmark = pytest.mark.unit


class Daemon:
    """What the endpoints read of the daemon (the `Watched` protocol): ready, and healthy with why."""

    ready = True

    def healthy(self) -> tuple[bool, str]:
        return True, "ok"


def test_a_reset_connection_is_one_line_not_a_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    server = serve_endpoints(f"127.0.0.1:{port}", Daemon())
    try:
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", port))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
            client.send(b"GET /metr")
            client.close()
        time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"
    finally:
        server.shutdown()
    output = capfd.readouterr()
    assert "Traceback" not in output.err + output.out
    assert "endpoint request dropped" in output.err + output.out
