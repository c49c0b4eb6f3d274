"""The daemon reads back each plan it executed: once the plan's intents confirm, the next snapshot is compared with
the plan's prediction at the prices the plan was made with (a market move since is not a miss); a miss pauses the
portfolio and moves `ballast_prediction_miss`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent.daemon import Daemon
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.policy.files import load_policies
from agent.settings import Settings
from agent.telemetry import REGISTRY
from tests.chain.execution_support import USDC, OffsetClock

NAME = "leveraged-long"
MAX_UINT256 = 2**256 - 1
VARIABLE = 2


@pytest.fixture
def daemon(localnet: Localnet, tmp_path: Path) -> Iterator[tuple[Daemon, OffsetClock]]:
    """A daemon (not started: the test runs its cycles) executing the leveraged long live, after a 20% crash."""
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / f"{NAME}.yaml").write_text(render_policy(NAME, localnet.demo_accounts[NAME], localnet, mode="live",
                                                          interval_s=60))
    settings = Settings(db=str(tmp_path / "journal.sqlite"), metrics_addr="127.0.0.1:0",
                        kill_switch=tmp_path / "KILL", private_key=SecretStr(localnet.keeper_key(NAME)))
    clock = OffsetClock()
    daemon = Daemon(load_policies([directory]), settings, clock=clock)
    try:
        yield daemon, clock
    finally:
        daemon.stop(drain_s=0)


def misses() -> float:
    return REGISTRY.get_sample_value("ballast_prediction_miss_total", {"portfolio": NAME}) or 0.0


def deleverage(daemon: Daemon, clock: OffsetClock, chain: LocalChain, localnet: Localnet) -> None:
    """A crash below the band's min; the daemon's cycle deleverages and its intent confirms."""
    set_weth_price(chain, localnet, 2_000 * 0.8)
    result = daemon.cycle(NAME)
    assert result is not None and result.plan.actions, result
    (intent,) = daemon.journal.intents(NAME)
    assert intent.state == "confirmed", intent
    clock.offset += 61  # the next cycle is due


def test_the_daemon_reads_a_confirmed_plan_back_and_a_market_move_since_is_not_a_miss(
    localnet: Localnet, chain: LocalChain, daemon: tuple[Daemon, OffsetClock]
) -> None:
    d, clock = daemon
    deleverage(d, clock, chain, localnet)
    before = misses()
    set_weth_price(chain, localnet, 2_000 * 0.8 * 0.97)  # the market moves on before the read-back

    with capture_logs() as logs:
        d.cycle(NAME)

    (read_back,) = [e for e in logs if e["event"] == "prediction read back"]
    assert read_back["ok"] is True, [e for e in logs if "miss" in e["event"]]
    assert misses() == before and d.journal.paused(NAME) is None


def test_a_read_back_that_misses_the_prediction_in_the_daemon_pauses_the_portfolio_and_moves_the_metric(
    localnet: Localnet, chain: LocalChain, daemon: tuple[Daemon, OffsetClock]
) -> None:
    d, clock = daemon
    deleverage(d, clock, chain, localnet)
    before = misses()
    # Someone else repays 20,000 USDC of the Safe's debt (anyone may, on its behalf): not what the plan predicted.
    payer, safe = localnet.accounts[9].address, localnet.demo_accounts[NAME]
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    chain.send(usdc.functions.mint(payer, 20_000 * USDC), payer)
    chain.send(usdc.functions.approve(pool.address, MAX_UINT256), payer)
    chain.send(pool.functions.repay(usdc.address, 20_000 * USDC, VARIABLE, safe), payer)

    d.cycle(NAME)

    assert misses() == before + 1
    paused = d.journal.paused(NAME)
    assert paused is not None and "missed its prediction: health factor" in paused
    assert REGISTRY.get_sample_value("ballast_portfolio_paused", {"portfolio": NAME}) == 1
