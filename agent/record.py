"""The cycle's record stage: the metrics of one cycle and its one log line, and the policy's bands as metrics."""

from __future__ import annotations

import math
from typing import Any

import structlog

from agent import telemetry
from agent.cycle import CycleResult
from agent.execution.report import ExecutionReport
from agent.planner.bands import band_readings
from agent.policy import Policy

log = structlog.get_logger("agent.daemon")


def record(result: CycleResult, policy: Policy, execution: ExecutionReport, duration_s: float, now_s: float) -> None:
    """Update the metrics and write the one log line of a cycle."""
    name = result.plan.portfolio
    report = result.report
    telemetry.CYCLES.labels(name, "ok").inc()
    telemetry.CYCLE_DURATION.labels(name).observe(duration_s)
    telemetry.LAST_SUCCESSFUL_CYCLE.labels(name).set(now_s)
    lowest: dict[str, float] = {}  # a chain may hold several lending positions (Aave, Morpho markets)
    for account in report.accounts:
        lowest[account.chain] = min(lowest.get(account.chain, math.inf), account.health_factor)
    for chain_name, health_factor in lowest.items():
        telemetry.HEALTH_FACTOR.labels(name, chain_name).set(health_factor)
    telemetry.LIQUIDATION_DISTANCE.labels(name, "down").set(report.liquidation_distance_down_pct / 100)
    telemetry.LIQUIDATION_DISTANCE.labels(name, "up").set(report.liquidation_distance_up_pct / 100)
    for greek in ("delta_usd", "gamma_usd_1pct", "vega_usd_1vol", "theta_usd_1d", "rho_usd_1pct"):
        telemetry.GREEK.labels(name, greek).set(getattr(report.total, greek))
    for chain in result.snapshot.chains:
        for price in chain.prices:
            telemetry.ORACLE_AGE.labels(chain.chain, price.symbol).set(price.age_s)
            telemetry.ORACLE_STALE.labels(chain.chain, price.symbol).set(int(price.stale))
    telemetry.record_risk(name, report, result.snapshot.problems)
    for band in band_readings(report, policy):
        if not band.inside:
            telemetry.BAND_BREACHES.labels(name, band.name).inc()
    # A plan seen again (same snapshot block) reports its journaled intents, refused ones as failed.
    intents = execution.intents
    refused = bool(execution.refusals) or (bool(intents) and all(i.state == "failed" for i in intents))
    approved = not refused and not execution.deferred
    if approved:
        for action in result.plan.actions:
            telemetry.ACTIONS.labels(name, action.kind).inc()
            # A swap that beats the oracle price has a negative cost estimate: the counter adds up costs only.
            telemetry.ACTION_COST.labels(name, action.kind).inc(max(action.cost_usd, 0.0))
    health = min((a.health_factor for a in report.accounts), default=math.inf)
    log.info(
        "cycle",
        portfolio=name,
        blocks=[f"{chain}:{block}" for chain, block in result.plan.blocks],
        health_factor=round(health, 6) if math.isfinite(health) else "inf",
        delta_usd=round(report.total.delta_usd, 2),
        gamma_usd_1pct=round(report.total.gamma_usd_1pct, 2),
        vega_usd_1vol=round(report.total.vega_usd_1vol, 2),
        decision=("act" if approved else "refused" if refused else "deferred") if result.plan.actions else "none",
        reason=result.plan.reason,
        actions=[f"{a.kind} {a.asset}" for a in result.plan.actions],
        refusals=[str(r) for r in execution.refusals] or None,
        deferred=execution.deferred or None,
        intents=[i.id[:12] for i in execution.intents] or None,
        mode=execution.mode,
        duration_s=round(duration_s, 3),
    )


def publish_bands(policy: Policy) -> None:
    """Export the policy's bands, so that dashboards draw each figure against its own band."""
    name = policy.portfolio.name
    bands = policy.bands
    published: dict[str, Any] = {m: getattr(bands, m) for m in bands.names() if m != "delta_usd"}
    # The beta-weighted delta band is "delta_usd", a factor's "delta_usd:<factor>".
    published.update({"delta_usd" if scope == "total" else f"delta_usd:{scope}": band
                      for scope, band in bands.delta_bands().items()})
    for metric, band in published.items():
        bounds = {"min": band.min, "target": getattr(band, "target_value", None) or band.target,
                  "max": getattr(band, "max", math.inf)}
        for bound, value in bounds.items():
            telemetry.BAND.labels(name, metric, bound).set(value)
