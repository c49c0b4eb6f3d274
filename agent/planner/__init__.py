"""The planner: from band breaches to the cheapest plan that restores every band, explained. Pure: no web3, no
clock, no I/O; the same code runs in the daemon, the backtest and the tests.

`plan(snapshot, report, policy, state) -> Plan` is the entry point; `HedgeState` is what it remembers between
cycles (the daemon keeps it and advances it with `HedgeState.after`).
"""

from agent.planner.bands import HedgeState
from agent.planner.plan import plan, prices_usd

__all__ = ["HedgeState", "plan", "prices_usd"]
