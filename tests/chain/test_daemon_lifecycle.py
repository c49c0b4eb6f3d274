"""The daemon's lifecycle in-process on the local chain: health endpoints, policy reload, the fast price watch."""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.chain.reader import PortfolioReader
from agent.cycle import decide, urgency
from agent.daemon import Daemon
from agent.execution.report import ExecutionReport
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.model import Action
from agent.planner import HedgeState
from agent.policy.files import load_policies
from agent.record import record
from agent.settings import Settings
from agent.telemetry import REGISTRY
from tests.chain.execution_support import OffsetClock


def status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(condition, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.fixture
def policy_dir(localnet: Localnet, tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    for name, account in localnet.demo_accounts.items():
        (directory / f"{name}.yaml").write_text(render_policy(name, account, localnet, interval_s=3600))
    return directory


@pytest.fixture
def daemon(policy_dir: Path, tmp_path: Path) -> Iterator[tuple[Daemon, str, OffsetClock]]:
    clock = OffsetClock()
    settings = Settings(db=str(tmp_path / "journal.sqlite"), metrics_addr="127.0.0.1:0",
                        kill_switch=tmp_path / "KILL")
    daemon = Daemon(load_policies([policy_dir]), settings, clock=clock)
    daemon.start()
    assert daemon._server is not None
    url = f"http://127.0.0.1:{daemon._server.server_address[1]}"
    try:
        yield daemon, url, clock
    finally:
        daemon.stop(drain_s=5)


def test_healthz_follows_the_age_of_the_last_successful_cycle_and_readyz_the_start(
    daemon: tuple[Daemon, str, OffsetClock],
) -> None:
    d, url, clock = daemon
    assert status(url + "/readyz") == (200, "ready\n")
    wait_for(lambda: all(p.last_success_s for p in d.portfolios.values()))
    assert status(url + "/healthz")[0] == 200
    clock.offset = 3 * 3600 + 1  # three intervals later without a cycle
    code, why = status(url + "/healthz")
    assert code == 503 and "no successful cycle in the last 10800s" in why
    assert "ballast_health_factor" in status(url + "/metrics")[1]


def test_reload_refuses_an_invalid_policy_and_keeps_the_running_one(
    daemon: tuple[Daemon, str, OffsetClock], policy_dir: Path
) -> None:
    d, _url, _clock = daemon
    path = policy_dir / "leveraged-long.yaml"
    before = d.portfolios["leveraged-long"].policy
    path.write_text(path.read_text().replace("min: 1.5, target: 1.8", "min: 1.9, target: 1.8"))
    with capture_logs() as logs:
        d.reload([policy_dir])
    assert d.portfolios["leveraged-long"].policy is before
    refused = [entry for entry in logs if entry["event"].startswith("policy reload refused")]
    assert refused and any("leveraged-long.yaml" in line for line in refused[0]["problems"])

    path.write_text(path.read_text().replace("min: 1.9, target: 1.8", "min: 1.4, target: 1.8"))
    d.reload([policy_dir])
    band = d.portfolios["leveraged-long"].policy.bands.health_factor
    assert band is not None and band.min == 1.4


def test_a_price_move_beyond_price_move_pct_runs_a_cycle_before_the_interval(
    daemon: tuple[Daemon, str, OffsetClock], localnet: Localnet, chain: LocalChain
) -> None:
    d, _url, _clock = daemon
    wait_for(lambda: all(p.last_success_s for p in d.portfolios.values()))
    first = {name: p.last_success_s for name, p in d.portfolios.items()}
    set_weth_price(chain, localnet, 2_000 * 1.03)  # 3% > price_move_pct 2%; the interval is an hour
    wait_for(lambda: all(p.last_success_s != first[name] for name, p in d.portfolios.items()), timeout_s=20)


def test_portfolios_near_their_floor_are_read_and_run_before_the_rest_of_the_block(
    daemon: tuple[Daemon, str, OffsetClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, _url, _clock = daemon
    wait_for(lambda: all(p.last_result for p in d.portfolios.values()))
    # The demo books all sit within 25% of their floors: a tighter margin leaves one of them near it.
    margin = sorted(urgency(p.last_result.snapshot, p.policy) for p in d.portfolios.values())[0] * 1.0001  # type: ignore[union-attr]
    monkeypatch.setattr("agent.daemon.NEAR_FLOOR", margin)
    (chain,) = d.fleet.chains.values()
    expected = {n for n, p in d.portfolios.items()
                if urgency(p.last_result.snapshot, p.policy) < margin}  # type: ignore[union-attr]
    reads: list[set[str]] = []
    me, read = threading.get_ident(), chain.read

    def recording_read(block, only=None):  # type: ignore[no-untyped-def]  # the real read, its subsets noted
        if threading.get_ident() == me:
            reads.append(set(chain.readers if only is None else only))
        return read(block, only)

    chain.read = recording_read  # type: ignore[method-assign]
    d.on_block(chain, chain.latest_block())

    assert 1 <= len(expected) < len(d.portfolios)
    assert reads == [expected, set(d.portfolios) - expected]


def test_a_cycle_with_a_negative_cost_estimate_is_recorded(localnet: Localnet, demo_policy: Any) -> None:
    policy = demo_policy("leveraged-long")
    reader = PortfolioReader(policy)
    try:
        result = decide(reader.read(), policy, HedgeState(), log_decision=False)
    finally:
        reader.close()
    gain = Action("swap", "localnet", "uniswap_v3", "USDC", 10**9, 1_000.0, "test", cost_usd=-2.5, asset_out="WETH")
    result = dataclasses.replace(result, plan=dataclasses.replace(result.plan, actions=(gain,)))
    report = ExecutionReport(result.plan.portfolio, "plan", "live")
    before = REGISTRY.get_sample_value("ballast_cycles_total", {"portfolio": "leveraged-long", "outcome": "ok"}) or 0

    record(result, policy, report, 0.1, time.time())  # a counter incremented by -2.5 would raise here

    assert REGISTRY.get_sample_value("ballast_cycles_total", {"portfolio": "leveraged-long", "outcome": "ok"}) == \
        before + 1



def test_a_sweep_past_its_time_yields_and_the_rest_of_the_fleet_runs_at_the_next_block(
    policy_dir: Path, tmp_path: Path, localnet: Localnet, chain: LocalChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(db=str(tmp_path / "journal.sqlite"), metrics_addr="127.0.0.1:0",
                        kill_switch=tmp_path / "KILL")
    d = Daemon(load_policies([policy_dir]), settings)  # not started: this test drives its blocks
    try:
        (fleet,) = d.fleet.chains.values()
        monkeypatch.setattr("agent.daemon.NEAR_FLOOR", 0.0)  # nobody is urgent: the whole fleet is the sweep
        d.on_block(fleet, fleet.latest_block())
        before = {name: p.last_result for name, p in d.portfolios.items()}
        assert all(before.values())
        set_weth_price(chain, localnet, 2_000 * 1.03)  # every book's figures move

        d.on_block(fleet, fleet.latest_block(), until=time.monotonic())  # its time is up before the first
        assert {name: p.last_result for name, p in d.portfolios.items()} == before

        d.on_block(fleet, fleet.latest_block())
        assert all(p.last_result is not before[name] for name, p in d.portfolios.items())
    finally:
        d.stop(drain_s=5)
