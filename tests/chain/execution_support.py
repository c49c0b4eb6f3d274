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
from agent.localnet.chain import DevAccount, LocalChain
from agent.model import AaveAccount, Action, Plan, Snapshot
from agent.policy import Policy

USDC = 10**6


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


def keeper_account(localnet: Localnet, portfolio: str) -> DevAccount:
    """The dev account whose key signs for a demo portfolio: its Safe's keeper (whose nonce its transactions use)."""
    keeper = localnet.demo_portfolios[portfolio].keeper
    return next(a for a in localnet.accounts if a.address == keeper)


def signer_of(localnet: Localnet, policy: Policy) -> DevAccount:
    """The dev account that signs for `policy`: the keeper of a demo Safe, or the plain account itself."""
    name = policy.portfolio.name
    if policy.portfolio.executor.kind == "safe_module":
        return keeper_account(localnet, name)
    return next(a for a in localnet.accounts if a.address.lower() == policy.portfolio.account.lower())


def make_executor(localnet: Localnet, policy: Policy, tmp_path: Path, clock: Clock | None = None,
                  registry: CollectorRegistry | None = None, journal: Journal | None = None, w3: Web3 | None = None,
                  **kwargs: Any) -> Executor:
    """Returns an executor of `policy` on `journal` (default: a new one on tmp_path/journal.sqlite) reaching the
    chain through `w3` (default: plain HTTP to anvil), not started."""
    clock = clock or Clock()
    journal = journal or Journal(tmp_path / "journal.sqlite", clock)
    key = signer_of(localnet, policy).private_key
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


def borrowed_once(before: Snapshot, after: Snapshot, amount_usdc: int) -> bool:
    """Whether the USDC debt grew by one borrow of `amount_usdc` between two snapshots: Aave books debt in scaled
    units (ray division), so a borrow may show up one base unit short, and a little interest accrues on top."""
    return debt_usdc(after) - debt_usdc(before) in range(amount_usdc * USDC - 1, amount_usdc * USDC + 1_000)


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


PLAIN_ACCOUNT = 5  # an unused dev account: a personal wallet holding a looped long of its own


def plain_leveraged_long(localnet: Localnet, chain: LocalChain, idle_usdc: int = 0) -> Policy:
    """Seeds the demo's looped long on a plain dev account (no Safe: the `direct` executor), with `idle_usdc` whole
    USDC in its wallet, and returns its live policy."""
    from agent.localnet.policies import render_policy
    from agent.localnet.seed import DEMO_PORTFOLIOS, seed_portfolio
    from agent.policy import parse_policy

    account = localnet.accounts[PLAIN_ACCOUNT].address
    demo = next(d for d in DEMO_PORTFOLIOS if d.name == "leveraged-long")
    seed_portfolio(chain, localnet.world, demo, account)
    if idle_usdc:
        usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
        chain.send(usdc.functions.mint(account, idle_usdc * USDC), account)
    policy = parse_policy(render_policy("leveraged-long", account, localnet), "plain.yaml")
    assert policy.portfolio.executor.kind == "direct"
    return live(policy)


def started_demo_executor(localnet: Localnet, name: str, tmp_path: Path) -> tuple[Policy, str, Executor]:
    """Returns demo portfolio `name`'s live policy, its account (checksummed) and a started executor for it."""
    from agent.localnet.policies import render_policy
    from agent.policy import parse_policy

    policy = live(parse_policy(render_policy(name, localnet.demo_accounts[name], localnet), f"{name}.yaml"))
    executor = make_executor(localnet, policy, tmp_path)
    executor.start()
    return policy, Web3.to_checksum_address(policy.portfolio.account), executor
