"""Test-only: executes a one-borrow plan in live mode and freezes at a named point of the transaction's life, so
that the crash tests can SIGKILL the process exactly there.

Usage: python crash_executor.py POLICY_FILE JOURNAL_DB KILL_SWITCH POINT AMOUNT_USDC
The key comes from BALLAST_PRIVATE_KEY (local chain only). Prints `PAUSED <point>` once frozen.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from agent.chain.reader import PortfolioReader
from agent.chain.signer import load_signer
from agent.execution.executor import Executor
from agent.execution.journal import Journal
from agent.model import Action, Plan
from agent.policy import load_policy
from agent.settings import Settings


def main() -> None:
    policy_file, db, kill_switch, point, amount = sys.argv[1:6]
    policy = load_policy(policy_file)

    def checkpoint(name: str) -> None:
        if name == point:
            print(f"PAUSED {name}", flush=True)
            time.sleep(3600)

    (chain,) = policy.portfolio.chains
    signer = load_signer(Settings(_env_file=None), chain.chain_id)  # type: ignore[call-arg]
    executor = Executor(policy, Journal(db), signer, Path(kill_switch), checkpoint=checkpoint)
    reader = PortfolioReader(policy)
    snapshot = reader.read()
    action = Action("borrow", chain.name, "aave_v3", "USDC", int(amount) * 10**6, float(amount), "crash test")
    plan = Plan(policy.portfolio.name, tuple((c.chain, c.block_number) for c in snapshot.chains), (action,),
                "crash test")
    executor.execute_plan(plan, snapshot, wait_s=30)
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
