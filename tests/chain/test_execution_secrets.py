"""The private key never appears in a log line, a metric or a journal row, whatever the run does: send, refuse,
revert, dry-run."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr
from web3 import Web3

from agent.chain.signer import load_signer
from agent.execution.executor import Executor
from agent.execution.journal import Journal
from agent.localnet import Localnet
from agent.model import Action
from agent.policy import Policy
from agent.settings import Settings
from agent.telemetry import configure_logging
from tests.chain.execution_support import Clock, borrow_usdc, keeper_account, live, plan, read


def test_no_log_line_metric_or_journal_row_holds_the_private_key(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    key = keeper_account(localnet, "leveraged-long").private_key
    stream = io.StringIO()
    configure_logging("json", "debug", stream)
    registry = CollectorRegistry()
    try:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, private_key=SecretStr(key), db=str(tmp_path / "j.sqlite"))
        signer = load_signer(settings, 31337)
        clock = Clock()
        journal = Journal(settings.db, clock)
        w3s = {"localnet": Web3(Web3.HTTPProvider(localnet.rpc_url))}
        policy = live(demo_policy("leveraged-long"))
        executor = Executor(policy, journal, signer, tmp_path / "KILL", w3s=w3s, clock=clock, registry=registry)
        snapshot = read(policy)
        executor.execute_plan(plan(snapshot, borrow_usdc(500)), snapshot, wait_s=5)
        withdraw_all = Action("withdraw", "localnet", "aave_v3", "WETH", 100 * 10**18, 1_000.0, "revert")
        snapshot = read(policy)
        executor.execute_plan(plan(snapshot, withdraw_all), snapshot)
        over = Action("borrow", "localnet", "aave_v3", "USDC", 10**6, 10**9, "over the limit")
        executor.execute_plan(plan(snapshot, over), snapshot)
        dry = Executor(demo_policy("leveraged-long"), journal, None, tmp_path / "KILL", w3s=w3s, clock=clock,
                       registry=registry)
        dry.execute_plan(plan(snapshot, borrow_usdc(700)), snapshot)
        texts = {
            "logs": stream.getvalue(),
            "metrics": generate_latest(registry).decode(),
            "journal": json.dumps(journal.dump(), default=str),
            "signer": repr(signer) + str(signer.__dict__ if hasattr(signer, "__dict__") else ""),
        }
    finally:
        configure_logging("console", "info")

    assert "transaction signed" in texts["logs"] and "plain private key" in texts["logs"]
    assert len(json.loads(texts["journal"])["transactions"]) == 1
    hex_key = key.removeprefix("0x").lower()
    for name, text in texts.items():
        assert hex_key not in text.lower(), f"the private key leaked into the {name}"
