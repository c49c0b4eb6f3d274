"""One read → assess → plan cycle, with the one log line that explains its decision. No scheduling here: the
daemon calls `run_cycle` on its ticks, `ballast once` calls it once."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import structlog
from rich.console import Group
from rich.table import Table

from agent.chain.reader import PortfolioReader
from agent.model import Plan, RiskReport, Snapshot
from agent.planner import HedgeState, plan, prices_usd
from agent.planner.bands import band_readings
from agent.policy import Policy
from agent.risk.portfolio import risk_report

log = structlog.get_logger("agent.cycle")


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one cycle saw, how it assessed it, what it planned, and the planner state to keep for the next."""

    snapshot: Snapshot
    report: RiskReport
    plan: Plan
    state: HedgeState
    breaches: tuple[str, ...] = ()  # the bands outside [min, max] in `report`


def assess(snapshot: Snapshot) -> RiskReport:
    """Return the risk report of the snapshot's positions at its prices and block time."""
    return risk_report(snapshot.positions, snapshot.underlying, prices_usd(snapshot), snapshot.timestamp)


def decide(
    snapshot: Snapshot, policy: Policy, state: HedgeState | None = None, *, log_decision: bool = True
) -> CycleResult:
    """Assess and plan a snapshot; the returned state assumes the plan is done. With `log_decision` the one log
    line that explains the decision is written here (the daemon writes its own, with the execution's outcome)."""
    report = assess(snapshot)
    chosen = plan(snapshot, report, policy, state)
    if log_decision:
        log_plan(chosen, report)
    next_state = (state or HedgeState()).after(chosen, snapshot.timestamp, report.spot_usd)
    breaches = tuple(r.name for r in band_readings(report, policy) if not r.inside)
    return CycleResult(snapshot, report, chosen, next_state, breaches)


# Relative change below which a figure has not moved between two blocks: interest accrues ~1e-9 of a balance per
# second, a transaction or an oracle update moves far more.
MOVE_TOLERANCE = 1e-6
# Fields that change from block to block whatever happens: the age of a price reading, and the quoter's own gas
# measurement (which depends on what storage the batch had touched before it).
_NOT_FIGURES = frozenset({"age_s", "gas_estimate"})


def needs_assessment(last: CycleResult | None, snapshot: Snapshot, interval_s: float) -> bool:
    """Whether a new block must assess and plan the portfolio again: its first snapshot; a band breached or a plan
    made last time (cooldowns and pending work move with time); its last assessment `interval_s` or more of block
    time ago (time alone moves oracle ages, option expiries, hedge ages); or any figure it is read from (positions,
    prices, balances, markets, quotes, data problems) moved by more than `MOVE_TOLERANCE`. Otherwise the last
    assessment still holds."""
    if last is None or last.breaches or not last.plan.empty:
        return True
    if snapshot.timestamp - last.snapshot.timestamp >= interval_s:
        return True
    return figures_moved(last.snapshot, snapshot)


def figures_moved(before: Snapshot, after: Snapshot, tolerance: float = MOVE_TOLERANCE) -> bool:
    """Whether anything the risk engine reads differs between two snapshots of one portfolio beyond `tolerance`
    (relative, on numbers); block numbers, hashes, times, price ages and quoted gas are not figures."""
    if len(before.chains) != len(after.chains):
        return True
    for b, a in zip(before.chains, after.chains, strict=True):
        for name in ("positions", "prices", "balances", "quotes", "problems", "markets"):
            if not _close(getattr(b, name), getattr(a, name), tolerance):
                return True
    return False


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float | int) and not isinstance(a, bool):
        return bool(a == b or abs(a - b) <= tolerance * max(abs(a), abs(b)))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):
        return all(_close(getattr(a, f.name), getattr(b, f.name), tolerance)
                   for f in dataclasses.fields(a) if f.name not in _NOT_FIGURES)
    return bool(a == b)


def urgency(snapshot: Snapshot, policy: Policy) -> float:
    """Return how near the portfolio is to its health-factor floor (Aave's reported health factor over the band's
    min; lower is more urgent, inf without either): a block assesses the most urgent portfolios first."""
    band = policy.bands.health_factor
    lowest = snapshot.lowest_health_factor
    return math.inf if band is None or lowest is None else lowest / band.min


def run_cycle(policy: Policy, reader: PortfolioReader, state: HedgeState | None = None) -> CycleResult:
    """Read the portfolio's snapshot, assess it and plan; nothing is sent."""
    return decide(reader.read(), policy, state)


def log_plan(chosen: Plan, report: RiskReport) -> None:
    """Emit the one log line that explains the cycle's decision."""
    health = min((a.health_factor for a in report.accounts), default=math.inf)
    predicted = chosen.predicted
    predicted_health = min((a.health_factor for a in predicted.accounts), default=math.inf) if predicted else None
    log.info(
        "plan" if chosen.actions else "no action",
        portfolio=chosen.portfolio,
        blocks=[f"{chain}:{block}" for chain, block in chosen.blocks],
        actions=len(chosen.actions),
        health_factor=_finite(health),
        delta_usd=round(report.total.delta_usd, 2),
        predicted_health_factor=_finite(predicted_health),
        predicted_delta_usd=round(predicted.total.delta_usd, 2) if predicted else None,
        cost_usd=round(sum(a.cost_usd for a in chosen.actions), 2),
        limited_by=chosen.limited_by or None,
        reason=chosen.reason,
    )


def _finite(value: float | None) -> float | str | None:
    if value is None:
        return None
    return round(value, 6) if math.isfinite(value) else "inf"


def cycle_json(result: CycleResult) -> dict[str, Any]:
    """Return the cycle's report and plan as JSON-ready data (non-finite numbers as "inf" / "-inf")."""
    plan_data = dataclasses.asdict(result.plan)
    plan_data["empty"] = result.plan.empty
    return _jsonable({
        "ok": True,
        "portfolio": result.snapshot.portfolio,
        "blocks": [{"chain": chain, "block": block} for chain, block in result.plan.blocks],
        "timestamp": result.snapshot.timestamp,
        "report": dataclasses.asdict(result.report),
        "plan": plan_data,
    })


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def cycle_tables(result: CycleResult) -> Group:
    """Return the cycle as tables for a person: the risk report now and predicted, and the plan's steps."""
    report, chosen = result.report, result.plan
    risk = Table(title=f"{result.snapshot.portfolio} · {result.snapshot.underlying} at {report.spot_usd:,.2f} USD")
    for column in ("", "health factor", "delta USD", "gamma USD/1%", "vega USD/vol", "value USD"):
        risk.add_column(column, justify="left" if not column else "right")
    for label, r in (("now", report), ("predicted", chosen.predicted)):
        if r is None:
            continue
        health = min((a.health_factor for a in r.accounts), default=math.inf)
        risk.add_row(label, "∞" if math.isinf(health) else f"{health:.4f}", f"{r.total.delta_usd:,.0f}",
                     f"{r.total.gamma_usd_1pct:,.0f}", f"{r.total.vega_usd_1vol:,.0f}", f"{r.value_usd:,.0f}")
    steps = Table(title="Plan" + (f" (limited by {chosen.limited_by})" if chosen.limited_by else ""))
    for column in ("#", "action", "amount", "notional USD", "cost USD", "HF after", "reason"):
        steps.add_column(column, justify="right" if column in ("#", "notional USD", "cost USD", "HF after") else
                         "left")
    for i, a in enumerate(chosen.actions, start=1):
        what = f"{a.kind} {a.asset}" + (f"→{a.asset_out}" if a.asset_out else "")
        after = "" if a.predicted_health_factor is None else (
            "∞" if math.isinf(a.predicted_health_factor) else f"{a.predicted_health_factor:.4f}")
        steps.add_row(str(i), what, str(a.amount_base_units), f"{a.notional_usd:,.2f}", f"{a.cost_usd:,.2f}", after,
                      a.reason)
    return Group(risk, steps, f"decision: {chosen.reason}")
