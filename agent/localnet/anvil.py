"""Start and stop a Foundry anvil node from the pinned npm package: free port, readiness poll, clean shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from agent.errors import BallastError

LOCALNET_DIR = Path(__file__).resolve().parents[2] / "deploy" / "localnet"
NPM_ANVIL = LOCALNET_DIR / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
DEFAULT_CHAIN_ID = 31337


class LocalnetError(BallastError):
    """The local chain could not be started or set up; the message says why in one line."""


def anvil_binary() -> Path:
    """Return the anvil executable: `$BALLAST_ANVIL_BIN`, else the npm package's native binary, else PATH."""
    explicit = os.environ.get("BALLAST_ANVIL_BIN")
    if explicit:
        return Path(explicit)
    if NPM_ANVIL.exists():
        return NPM_ANVIL
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise LocalnetError(f"anvil not found: run `npm ci` in {LOCALNET_DIR} (or `make deps`), or set BALLAST_ANVIL_BIN")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rpc_call(url: str, method: str, params: list[object] | None = None, timeout_s: float = 2.0) -> object:
    """Make one JSON-RPC call with the standard library (used before any web3 client exists); return its result."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise LocalnetError(f"{method}: {reply['error'].get('message', reply['error'])}")
    return reply["result"]


@dataclass
class Anvil:
    """A running anvil process on 127.0.0.1. Use as a context manager, or call `start()` and `stop()`."""

    port: int = 0
    chain_id: int = DEFAULT_CHAIN_ID
    accounts: int = 10
    balance_eth: int = 1_000_000
    block_time_s: float | None = None
    fork_url: str | None = None
    extra_args: tuple[str, ...] = ()  # further anvil options, e.g. an operator's node limits
    ready_timeout_s: float = 15.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Anvil:
        binary = anvil_binary()
        last_error = ""
        for _attempt in range(3):  # another process may take the port between probe and bind
            if not self.port or _attempt:
                self.port = free_port()
            args = [
                str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(self.chain_id),
                "--accounts", str(self.accounts), "--balance", str(self.balance_eth), "--silent",
            ]
            if self.block_time_s:
                args += ["--block-time", str(self.block_time_s)]
            if self.fork_url:
                args += ["--fork-url", self.fork_url]
            args += self.extra_args
            self.process = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
            try:
                self._wait_ready()
                return self
            except LocalnetError as exc:
                last_error = str(exc)
                self.stop()
        raise LocalnetError(f"anvil did not start: {last_error}")

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                tail = stderr.strip().splitlines()[-1:] or [f"exit code {self.process.returncode}"]
                raise LocalnetError(tail[0])
            try:
                if int(str(rpc_call(self.url, "eth_chainId", timeout_s=0.5)), 16) == self.chain_id:
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.05)
        raise LocalnetError(f"no answer on {self.url} within {self.ready_timeout_s:.0f}s")

    def stop(self) -> None:
        """Stop the node: SIGTERM, then SIGKILL if it has not exited within 5 seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
