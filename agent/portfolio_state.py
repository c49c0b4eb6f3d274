"""What the daemon holds for one managed portfolio between cycles: its policy, reader, executor, the planner's
memory, the newest block read per chain, and whether it has open intents or stands by for another lease holder."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from agent.chain.reader import PortfolioReader
from agent.cycle import CycleResult
from agent.execution.executor import Executor
from agent.model import ChainSnapshot, Snapshot
from agent.planner import HedgeState
from agent.policy import Policy


@dataclass
class Portfolio:
    """One managed portfolio: its policy, reader, executor and what the planner remembers between cycles."""

    path: Path
    policy: Policy
    reader: PortfolioReader
    executor: Executor
    hedge_state: HedgeState = field(default_factory=HedgeState)
    last_success_s: float | None = None
    last_result: CycleResult | None = None  # the last assessment: it holds while the figures do not move
    chain_snapshots: dict[str, ChainSnapshot] = field(default_factory=dict)  # newest block read per chain
    open_intents: bool = True  # live intents unfinished (unknown at start): driven at each block before the read
    standby: str | None = None  # why this process does not execute it (another holds the lease), None: it does
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.policy.portfolio.name

    def snapshot(self) -> Snapshot | None:
        """Return the portfolio's snapshot from the newest block read on each of its chains (None until all are)."""
        chains = [self.chain_snapshots.get(c.name) for c in self.policy.portfolio.chains]
        if any(c is None for c in chains):
            return None
        portfolio = self.policy.portfolio
        return Snapshot(portfolio.name, portfolio.account, portfolio.underlying, tuple(c for c in chains if c))
