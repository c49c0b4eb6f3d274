"""The daemon end to end: both demo portfolios in live mode on the local chain through a crash and a rally, scraped
by a real Prometheus server, stopped by SIGTERM with nothing left open."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.execution.journal import Journal
from agent.localnet import Localnet
from agent.localnet.anvil import free_port
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from agent.localnet.world import MAX_UINT256

WAD = 10**18
CRASH = [2_000 * (0.95**i) for i in range(1, 10)]  # down 5% a step to ~1,260 (−37%)
RALLY = [1_300 * (1.06**i) for i in range(1, 18)]  # up 6% a step to ~3,500


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def daemon(localnet: Localnet, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in localnet.demo_accounts:
        policy = render_policy(name, localnet.demo_accounts[name], localnet, mode="live", interval_s=1, cooldown_s=0)
        (policies / f"{name}.yaml").write_text(policy)
    port = free_port()
    env = {
        **os.environ, "BALLAST_DB": str(tmp_path / "journal.sqlite"), "BALLAST_METRICS_ADDR": f"127.0.0.1:{port}",
        # the keepers' keys: the daemon never holds a Safe owner's key
        "BALLAST_PRIVATE_KEY": ",".join(localnet.keeper_key(name) for name in localnet.demo_accounts),
        "BALLAST_KILL_SWITCH": str(tmp_path / "KILL"), "BALLAST_LOG_FORMAT": "json", "BALLAST_LOG_LEVEL": "info",
    }
    log = (tmp_path / "daemon.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--policy", str(policies), "--drain-s", "30"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if get(url + "/readyz").startswith("ready"):
                break
        except OSError:
            time.sleep(0.2)
    try:
        yield process, url, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


@pytest.fixture
def prometheus(daemon: tuple[subprocess.Popen[str], str, Path], tmp_path: Path) -> Iterator[str]:
    """A real Prometheus server scraping the daemon every second."""
    binary = shutil.which("prometheus")
    assert binary, "the Debian package prometheus is needed (make test installs it)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: ballast\n"
                      f"    static_configs: [{{targets: ['{daemon[1].removeprefix('http://')}']}}]\n")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def settle(url: str, cycles: int = 3, timeout_s: float = 60) -> str:
    """Wait until every portfolio ran `cycles` more cycles and no intent is open; return the last metrics text."""
    start = get(url + "/metrics")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = get(url + "/metrics")
        done = all(metric(now, "ballast_cycles_total", portfolio=p, outcome="ok")
                   >= metric(start, "ballast_cycles_total", portfolio=p, outcome="ok") + cycles
                   for p in ("leveraged-long", "delta-neutral-lp", "lst-loop", "cross-protocol"))
        if done and metric(now, "ballast_intents_unresolved") == 0:
            return now
    raise AssertionError("the daemon did not settle")


def nothing_to_liquidate(chain: LocalChain, localnet: Localnet) -> dict[str, float]:
    """The liquidator's view: every demo account's HF ≥ 1, and a liquidationCall against it reverts."""
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    tokens = localnet.world.tokens
    pairs = {"leveraged-long": ("WETH", "USDC"), "delta-neutral-lp": ("USDC", "WETH"), "lst-loop": ("WSTETH", "WETH"),
             "cross-protocol": ("WETH", "USDC")}
    health = {}
    for name, account in localnet.demo_accounts.items():
        hf = aave_account(chain, pool.address, account).health_factor_wad
        health[name] = hf / WAD
        assert hf >= WAD, f"{name} is liquidatable: HF {hf / WAD:.4f}"
        collateral, debt = (tokens[s] for s in pairs[name])
        with pytest.raises(Exception, match="45"):  # HEALTH_FACTOR_NOT_BELOW_THRESHOLD
            pool.functions.liquidationCall(collateral, debt, account, MAX_UINT256, False).call(
                {"from": localnet.liquidator.address})
    return health


def test_daemon_deleverages_in_a_crash_and_a_rally_and_stops_cleanly(
    localnet: Localnet, chain: LocalChain, daemon: tuple[subprocess.Popen[str], str, Path],
    prometheus: str,
) -> None:
    process, url, workdir = daemon
    assert process.poll() is None, (workdir / "daemon.log").read_text()[-3000:]

    settle(url)
    path = []
    for price in CRASH:
        set_weth_price(chain, localnet, price)
        settle(url)
        path.append((price, nothing_to_liquidate(chain, localnet)))
    long_after_crash = path[-1][1]["leveraged-long"]
    assert long_after_crash >= 1.5 * 0.98, path
    for price in RALLY:
        set_weth_price(chain, localnet, price)
        text = settle(url)
        path.append((price, nothing_to_liquidate(chain, localnet)))
    assert path[-1][1]["delta-neutral-lp"] >= 1.5 * 0.98, path
    delta = metric(text, "ballast_greek_usd", portfolio="delta-neutral-lp", greek="delta_usd")
    assert -5_000 <= delta <= 5_000

    query = urllib.parse.urlencode({"query": 'ballast_health_factor{portfolio="leveraged-long"}'})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = json.loads(get(f"{prometheus}/api/v1/query?{query}"))["data"]["result"]
        if result:
            break
        time.sleep(1)
    assert result and float(result[0]["value"][1]) >= 1.4

    # SIGHUP with a policy that no longer validates: refused, the running one kept
    broken = workdir / "policies" / "leveraged-long.yaml"
    broken.write_text(broken.read_text().replace("min: 1.5, target: 1.8", "min: 1.9, target: 1.8"))
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "policy reload refused" not in (workdir / "daemon.log").read_text():
        assert time.monotonic() < deadline, "SIGHUP was not answered"
        time.sleep(0.2)
    settle(url, cycles=1)

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    journal = Journal(workdir / "journal.sqlite")
    assert journal.unresolved() == []
    confirmed = [i for i in journal.intents() if i.state == "confirmed"]
    # the cross-protocol portfolio's Morpho position breached in the crash too
    assert {i.portfolio for i in confirmed} == {"leveraged-long", "delta-neutral-lp", "lst-loop", "cross-protocol"}
    for intent in confirmed:  # every plan landed as one keeper transaction to its Safe's module
        portfolio = localnet.demo_portfolios[intent.portfolio]
        tx = chain.w3.eth.get_transaction(intent.tx_hash)  # type: ignore[arg-type]
        assert (intent.kind, tx["from"], tx["to"]) == ("recipe", portfolio.keeper, portfolio.module)
    log = (workdir / "daemon.log").read_text()
    found = re.search(r"Traceback", log)
    assert not found, log[max(0, found.start() - 500):found.start() + 2500] if found else ""
