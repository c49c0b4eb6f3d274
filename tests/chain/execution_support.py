"""Helpers of the executor's chain tests: a live policy, a movable clock, executors on a temporary journal, plans
made by hand from a fresh snapshot (the planner's own tests cover planning)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from eth_account import Account
from prometheus_client import CollectorRegistry
from web3 import Web3

from agent.chain.reader import PortfolioReader
from agent.chain.signer import LocalSigner
from agent.execution.executor import Executor
from agent.execution.journal import Journal
from agent.localnet import Localnet
from agent.localnet.chain import DevAccount
from agent.model import AaveAccount, Action, Plan, Snapshot
from agent.policy import Policy

USDC = 10**6
DEMO_ACCOUNT_INDEX = {"leveraged-long": 1, "delta-neutral-lp": 2}


class Clock:
    """A clock the test moves by hand (unix seconds)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class OffsetClock:
    """The real clock, moved forward by `offset` seconds (for daemons, whose threads read the time too)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def live(policy: Policy, **execution: Any) -> Policy:
    """Returns `policy` in live mode with the execution settings given."""
    return policy.model_copy(update={"execution": policy.execution.model_copy(update={"mode": "live", **execution})})


def dev_account(localnet: Localnet, portfolio: str) -> DevAccount:
    return localnet.accounts[DEMO_ACCOUNT_INDEX[portfolio]]


def make_executor(localnet: Localnet, policy: Policy, tmp_path: Path, clock: Clock | None = None,
                  registry: CollectorRegistry | None = None, journal: Journal | None = None, w3: Web3 | None = None,
                  **kwargs: Any) -> Executor:
    """Returns an executor of `policy` on `journal` (default: a new one on tmp_path/journal.sqlite) reaching the
    chain through `w3` (default: plain HTTP to anvil), not started."""
    clock = clock or Clock()
    journal = journal or Journal(tmp_path / "journal.sqlite", clock)
    key = dev_account(localnet, policy.portfolio.name).private_key
    signer = LocalSigner(Account.from_key(key))
    w3 = w3 or Web3(Web3.HTTPProvider(localnet.rpc_url))
    return Executor(policy, journal, signer, tmp_path / "KILL", w3s={"localnet": w3}, clock=clock,
                    registry=registry or CollectorRegistry(), poll_s=0.05, **kwargs)


def read(policy: Policy) -> Snapshot:
    reader = PortfolioReader(policy)
    try:
        return reader.read()
    finally:
        reader.close()


def plan(snapshot: Snapshot, *actions: Action, reason: str = "test") -> Plan:
    return Plan(snapshot.portfolio, tuple((c.chain, c.block_number) for c in snapshot.chains), actions, reason)


def borrow_usdc(amount_usdc: int, reason: str = "health_factor 2.10 above max 2.0: borrow") -> Action:
    return Action("borrow", "localnet", "aave_v3", "USDC", amount_usdc * USDC, float(amount_usdc), reason)


def debt_usdc(snapshot: Snapshot) -> int:
    (account,) = [p for p in snapshot.positions if isinstance(p, AaveAccount)]
    return sum(r.variable_debt_base_units for r in account.reserves if r.token.symbol == "USDC")


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]
