"""The daemon and the account lease, in-process on the local chain: a second daemon on one journal stays on standby
and takes over when the first is gone; a reload hands the lease to the new executor; an intent whose cancellation
never mines is recorded stuck, fails /healthz and raises its metric until it resolves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from web3 import Web3

from agent.chain.fees import stuck_after_s
from agent.daemon import Daemon
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.policies import render_policy
from agent.policy.files import load_policies
from agent.settings import Settings
from agent.telemetry import REGISTRY
from tests.chain.execution_support import OffsetClock, keeper_account, rpc

NAME = "leveraged-long"


@pytest.fixture
def policy_dir(localnet: Localnet, tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / f"{NAME}.yaml").write_text(render_policy(NAME, localnet.demo_accounts[NAME], localnet, mode="live",
                                                          interval_s=60))
    return directory


@pytest.fixture
def settings(localnet: Localnet, tmp_path: Path) -> Settings:
    return Settings(db=str(tmp_path / "journal.sqlite"), metrics_addr="127.0.0.1:0", kill_switch=tmp_path / "KILL",
                    private_key=SecretStr(localnet.keeper_key(NAME)))


@pytest.fixture
def daemons(policy_dir: Path, settings: Settings) -> Iterator[list[Daemon]]:
    """Daemons made by the test (not started: the test runs their cycles), stopped at the end."""
    made: list[Daemon] = []
    yield made
    for daemon in made:
        daemon.stop(drain_s=0)


def test_a_second_daemon_on_one_journal_stands_by_then_takes_over(
    localnet: Localnet, policy_dir: Path, settings: Settings, daemons: list[Daemon]
) -> None:
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    account = keeper_account(localnet, NAME).address  # the sender: its nonces, its lease
    clock = OffsetClock()
    first = Daemon(load_policies([policy_dir]), settings, clock=clock)
    daemons.append(first)
    second = Daemon(load_policies([policy_dir]), settings, clock=clock)
    daemons.append(second)
    standby = second.portfolios[NAME].standby
    assert standby is not None and f"account {account} is leased to " in standby and " pid " in standby

    nonce = w3.eth.get_transaction_count(account)
    result = second.cycle(NAME)  # assesses, signs nothing, stays healthy
    assert result is not None and w3.eth.get_transaction_count(account) == nonce
    assert second.healthy() == (True, "ok")

    daemons.remove(first)
    first.stop(drain_s=0)  # the holder goes away: the standby takes the account over at its next cycle
    clock.offset += 61
    second.cycle(NAME)
    assert second.portfolios[NAME].standby is None
    assert REGISTRY.get_sample_value("ballast_lease_held", {"portfolio": NAME}) == 1


def test_a_reload_hands_the_lease_to_the_new_executor(
    policy_dir: Path, settings: Settings, daemons: list[Daemon]
) -> None:
    daemon = Daemon(load_policies([policy_dir]), settings)
    daemons.append(daemon)
    daemon.start()
    old = daemon.portfolios[NAME]
    assert old.standby is None
    path = policy_dir / f"{NAME}.yaml"
    path.write_text(path.read_text().replace("min: 1.5, target: 1.8", "min: 1.4, target: 1.8"))

    daemon.reload([policy_dir])

    new = daemon.portfolios[NAME]
    assert new is not old and new.standby is None


def test_an_intent_whose_cancellation_never_mines_is_stuck_and_fails_healthz(
    localnet: Localnet, chain: LocalChain, policy_dir: Path, settings: Settings, daemons: list[Daemon]
) -> None:
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    clock = OffsetClock()
    daemon = Daemon(load_policies([policy_dir]), settings, clock=clock)
    daemons.append(daemon)
    set_weth_price(chain, localnet, 2_000 * 0.8)  # a crash: the leveraged long must deleverage
    rpc(w3, "evm_setAutomine", False)  # nothing the daemon sends is mined: not its repay, not its cancellation
    try:
        daemon.cycle(NAME)
        intent = daemon.journal.unresolved(NAME)[0]
        assert intent.state == "sent"
        assert daemon.healthy() == (True, "ok")
        execution = daemon.portfolios[NAME].policy.execution
        clock.offset = stuck_after_s(execution.deadline_s, execution.replace_after_s) + 1
        daemon.cycle(NAME)

        ok, why = daemon.healthy()
        assert not ok and why.startswith(f"{NAME}: intent {intent.id[:12]} (nonce {intent.nonce}) is stuck")
        assert REGISTRY.get_sample_value("ballast_intents_stuck", {"portfolio": NAME}) == 1
        assert "stuck" in [e["kind"] for e in daemon.journal.events(NAME) if e["intent_id"] == intent.id]
    finally:
        rpc(w3, "evm_setAutomine", True)
    rpc(w3, "evm_mine")
    clock.offset += 61
    daemon.cycle(NAME)  # the nonce is used now: the intent resolves and the portfolio is healthy again
    assert daemon.journal.stuck(NAME) == []
    assert REGISTRY.get_sample_value("ballast_intents_stuck", {"portfolio": NAME}) == 0
    assert daemon.healthy() == (True, "ok")
