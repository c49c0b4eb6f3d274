"""`ballast localnet up` and `ballast demo` as a user runs them: a process, its output, its files, its shutdown."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BALLAST = [sys.executable, "-m", "agent.cli"]


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_localnet_up_announces_readiness_writes_its_state_and_stops_cleanly(tmp_path: Path, stop_signal: int) -> None:
    process = subprocess.Popen([*BALLAST, "localnet", "up", "--json", "--state-dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        info = json.loads(line)
        assert info["chain_id"] == 31337 and port_open(info["rpc_url"])
        assert {"Pool", "PoolAddressesProvider", "NonfungiblePositionManager", "SwapRouter", "QuoterV2",
                "Multicall3", "AaveOracle", "WETH", "USDC", "WBTC", "MorphoBlue", "MorphoIrm"} <= set(info["contracts"])
        assert set(info["morpho_markets"]) == {"WETH/USDC", "WSTETH/WETH"}
        assert all(a["local_only"] for a in info["accounts"])
        assert set(info["demo_accounts"]) == {"leveraged-long", "delta-neutral-lp", "lst-loop", "cross-protocol"}
        # each demo account is a Safe with its own owner, keeper and module; the keeper holds no owner's key
        portfolios = info["demo_portfolios"]
        assert set(portfolios) == set(info["demo_accounts"])
        for name, portfolio in portfolios.items():
            assert portfolio["account"] == info["demo_accounts"][name]
            assert len({portfolio["account"], portfolio["owner"], portfolio["keeper"], portfolio["module"]}) == 4
            policy = (tmp_path / "policies" / f"{name}.yaml").read_text()
            assert f'executor: {{kind: safe_module, module: "{portfolio["module"]}"}}' in policy
        keys = {p["keeper"] for p in portfolios.values()} | {p["owner"] for p in portfolios.values()}
        assert len(keys) == 2 * len(portfolios)
        assert json.loads((tmp_path / "localnet.json").read_text()) == info
        for name in info["demo_accounts"]:
            checked = subprocess.run([*BALLAST, "check-policy", str(tmp_path / "policies" / f"{name}.yaml")],
                                     capture_output=True, text=True, timeout=60)
            assert checked.returncode == 0, checked.stderr
            assert checked.stdout.startswith(f"ok: {name}")
    finally:
        process.send_signal(stop_signal)
        code = process.wait(timeout=20)
    assert code == 0
    assert not port_open(info["rpc_url"])
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")
