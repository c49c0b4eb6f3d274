"""Who manages a simulated book: Ballast's policy (the daemon's own cycle) and the baselines it is measured
against, each deciding at a bar's close from the same snapshot and acting through the same executor.

- `policy`: `agent.cycle.decide` (risk report and plan) on bars where the planner's trigger test
  (`planner.bands.decide`) fires or a perp is within the planner's margin distance; the trigger test alone on
  quiet bars (the full cycle's liquidation-distance search is only needed when it acts); on every bar for a
  policy with a stress band (the test's report has no scenarios).
- `hf_only`: what a health-factor automation does and nothing else: below the band's min, repay to its target
  (`planner.deleverage.plan_deleverage`); above its max, borrow back to the target (`plan_boost`); the policy's
  cooldown between actions.
- `periodic`: a time-and-price-triggered hedger: every `every_hours` hours, and whenever the price has moved
  `move_pct` since its last hedge, delta back to target (`planner.hedge.plan_hedge`, the policy's instruments).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from agent.cycle import decide as decide_cycle
from agent.model import Action, Plan, RiskReport, Snapshot
from agent.planner import HedgeState, prices_usd
from agent.planner.bands import decide as decide_triggers
from agent.planner.book import Book
from agent.planner.costs import CostModel
from agent.planner.deleverage import plan_boost, plan_deleverage
from agent.planner.hedge import plan_hedge
from agent.planner.margin import perp_at_risk
from agent.policy import Policy
from agent.sim.portfolio import SimBook

BASELINES = ("unmanaged", "hf_only", "periodic")
PERIODIC_HOURS = 24.0
PERIODIC_MOVE_PCT = 5.0


class Keeper(Protocol):
    """Decides, at a bar's close, whether to look (`wants`, cheap) and what to do (`plan`)."""

    label: str
    policy: Policy

    def wants(self, report: RiskReport, book: SimBook, price: float, now: int) -> bool: ...

    def plan(self, snapshot: Snapshot, price: float, now: int) -> Plan: ...

    def done(self, plan: Plan, now: int, price: float, executed: bool) -> None: ...


def _hf(report: RiskReport) -> float:
    return min((a.health_factor for a in report.accounts), default=math.inf)


class PolicyKeeper:
    """Ballast: the daemon's cycle under `policy`."""

    def __init__(self, policy: Policy, label: str = "policy", gate: bool = True) -> None:
        # gate False: the full cycle on every bar (what the gate saves; the benchmark's peer)
        self.label, self.policy, self.gate = label, policy, gate
        self.state = HedgeState()
        self._next = self.state

    def wants(self, report: RiskReport, book: SimBook, price: float, now: int) -> bool:
        # The gate's report has no stress scenarios: a policy with a stress band runs its full cycle on every bar.
        if not self.gate or self.policy.bands.stress_health_factor is not None:
            return True
        if decide_triggers(report, self.policy, self.state, now).triggers or any(
                perp_at_risk(p, price) for p in book.perps):
            return True
        self.state = self.state.after(_NO_PLAN, now, price)
        return False

    def plan(self, snapshot: Snapshot, price: float, now: int) -> Plan:
        cycle = decide_cycle(snapshot, self.policy, self.state, log_decision=False)
        self._next = cycle.state
        return cycle.plan

    def done(self, plan: Plan, now: int, price: float, executed: bool) -> None:
        # A refused plan leaves the state as it was: the daemon retries on the next cycle.
        if executed or plan.empty:
            self.state = self._next


@dataclass
class HealthFactorKeeper:
    """The `hf_only` baseline: repay to target below the band's min, boost to target above its max."""

    policy: Policy
    label: str = "hf_only"
    last_action_s: int = -(10**12)

    def wants(self, report: RiskReport, book: SimBook, price: float, now: int) -> bool:
        band = self.policy.bands.health_factor
        if band is None or now - self.last_action_s < self.policy.triggers.cooldown_s:
            return False
        hf = _hf(report)
        return hf < band.min or (band.max < hf < math.inf)

    def plan(self, snapshot: Snapshot, price: float, now: int) -> Plan:
        band = self.policy.bands.health_factor
        assert band is not None
        book, costs = _book_and_costs(snapshot, self.policy)
        hf = book.health_factor()
        if hf < band.min:
            outcome = plan_deleverage(book, costs, self.policy, band.target)
            why = f"hf_only: HF {hf:.3f} below {band.min:g}: repay to {band.target:g}"
        else:
            outcome = plan_boost(book, costs, self.policy, band.target, band.min)
            why = f"hf_only: HF {hf:.3f} above {band.max:g}: boost to {band.target:g}"
        return _plan(snapshot, outcome.actions, why)

    def done(self, plan: Plan, now: int, price: float, executed: bool) -> None:
        if executed:
            self.last_action_s = now


@dataclass
class PeriodicKeeper:
    """The `periodic` baseline: delta back to `target_delta_usd` every `every_hours` and after ±`move_pct` moves."""

    policy: Policy
    target_delta_usd: float
    every_hours: float = PERIODIC_HOURS
    move_pct: float = PERIODIC_MOVE_PCT
    label: str = "periodic"
    last_s: int | None = None
    last_price: float = 0.0

    def wants(self, report: RiskReport, book: SimBook, price: float, now: int) -> bool:
        if self.last_s is None:
            self.last_s, self.last_price = now, price
            return False
        return (now - self.last_s >= self.every_hours * 3600
                or abs(price / self.last_price - 1.0) * 100.0 >= self.move_pct)

    def plan(self, snapshot: Snapshot, price: float, now: int) -> Plan:
        book, costs = _book_and_costs(snapshot, self.policy)
        delta = book.report(costs.prices_usd, now).total.delta_usd
        if abs(delta - self.target_delta_usd) < self.policy.hedging.min_trade_usd:
            return _plan(snapshot, (), "periodic: delta on target")
        band = self.policy.bands.health_factor
        hf_min = band.min if band is not None else 1.0 + self.policy.limits.gas_cap_lift_hf
        why = f"periodic: delta_usd {delta:,.0f} back to {self.target_delta_usd:,.0f}"
        return _plan(snapshot, plan_hedge(book, costs, self.policy, delta, self.target_delta_usd, hf_min,
                                          why).actions, why)

    def done(self, plan: Plan, now: int, price: float, executed: bool) -> None:
        if executed or plan.empty:
            self.last_s, self.last_price = now, price


def _book_and_costs(snapshot: Snapshot, policy: Policy) -> tuple[Book, CostModel]:
    return Book.from_snapshot(snapshot), CostModel(snapshot, policy.triggers.max_hedge_age_s, prices_usd(snapshot))


def _plan(snapshot: Snapshot, actions: tuple[Action, ...], reason: str) -> Plan:
    return Plan(snapshot.portfolio, tuple((c.chain, c.block_number) for c in snapshot.chains), actions, reason)


_NO_PLAN = Plan("", (), (), "")
