"""Prediction read-back: the state read after a plan, against what the plan predicted.

Each live plan the executor sends waits here until its intents end; once every one confirmed, the first snapshot read
at or after the blocks they were mined in is compared with the plan's prediction, at the oracle prices the plan was
made with (a market move between the two reads is not a miss). A miss pauses the portfolio. The daemon asks at each
cycle, `ballast once --execute` once its plan is done.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import structlog

from agent.execution.journal import Journal, plan_id
from agent.execution.metrics import ExecutionMetrics
from agent.model import AaveAccount, MorphoPosition, Plan, Position, Snapshot
from agent.policy import Policy
from agent.risk import lending, morpho
from agent.risk.portfolio import risk_report

log = structlog.get_logger("agent.execution.executor")

HEALTH_FACTOR_TOLERANCE = 0.05  # relative


@dataclass(frozen=True)
class PredictionCheck:
    """The state read back after a plan against its prediction: `misses` lists each figure beyond tolerance."""

    predicted_health_factor: float | None
    actual_health_factor: float | None
    predicted_delta_usd: float | None
    actual_delta_usd: float | None
    misses: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.misses


class ReadBack:
    """The plans of one portfolio sent and not yet read back, each with the snapshot it was made from."""

    def __init__(self, policy: Policy, journal: Journal, metrics: ExecutionMetrics) -> None:
        self.policy = policy
        self.portfolio = policy.portfolio.name
        self.journal = journal
        self.metrics = metrics
        self.pending: dict[str, tuple[Plan, Snapshot]] = {}

    def expect(self, plan: Plan, before: Snapshot) -> None:
        """Notes a plan sent from `before`, to be read back once its intents confirm."""
        self.pending[plan_id(plan)] = (plan, before)

    def due(self, after: Snapshot) -> list[PredictionCheck]:
        """Checks every pending plan whose intents all confirmed in blocks `after` was read at or after; forgets
        the plans that ended otherwise (failed, cancelled, unknown: nothing to compare). Returns the checks made."""
        checks = []
        read_at = {c.chain: c.block_number for c in after.chains}
        for pid, (plan, before) in list(self.pending.items()):
            steps = self.journal.intents(self.portfolio, plan=pid)
            if any(not i.terminal for i in steps):
                continue
            if steps and all(i.state == "confirmed" for i in steps):
                if any(read_at.get(i.chain, -1) < (i.block_number or 0) for i in steps):
                    continue  # read before its last step was mined: the next snapshot will show it
                checks.append(self.verify(plan, before, after))
            del self.pending[pid]
        return checks

    def verify(self, plan: Plan, before: Snapshot, after: Snapshot) -> PredictionCheck:
        """Compares `after` with the prediction of `plan` (made from `before`); a miss pauses the portfolio
        (journaled) and raises the `ballast_prediction_miss` alert metric."""
        check = check_prediction(self.policy, plan, before, after)
        log.info("prediction read back", portfolio=self.portfolio, plan_id=plan_id(plan)[:12], ok=check.ok,
                 health_factor=check.actual_health_factor, predicted_health_factor=check.predicted_health_factor)
        if check.misses:
            reason = f"plan {plan_id(plan)[:12]} missed its prediction: {'; '.join(check.misses)}"
            self.journal.pause(self.portfolio, reason)
            self.metrics.prediction_miss.labels(self.portfolio).inc()
            self.metrics.paused.labels(self.portfolio).set(1)
            log.error("prediction missed: portfolio paused", portfolio=self.portfolio, misses=list(check.misses))
        return check


def check_prediction(policy: Policy, plan: Plan, before: Snapshot, after: Snapshot,
                     health_factor_tolerance: float = HEALTH_FACTOR_TOLERANCE,
                     delta_tolerance_usd: float | None = None) -> PredictionCheck:
    """Returns the state read back after `plan` (`after`, a new snapshot) against the plan's prediction (made from
    `before`), both at `before`'s prices: the lowest health factor within `health_factor_tolerance` (relative), net
    delta within `delta_tolerance_usd` (default: a quarter of the delta band's width, or `hedging.min_trade_usd`)."""
    predicted_hf = None
    if plan.predicted is not None and plan.predicted.accounts:
        predicted_hf = min(a.health_factor for a in plan.predicted.accounts)
    elif any(a.predicted_health_factor is not None for a in plan.actions):
        predicted_hf = [a.predicted_health_factor for a in plan.actions if a.predicted_health_factor][-1]
    positions = _at_prices_of(after, before)
    actual_hf = _lowest_health_factor(positions)
    misses = []
    if predicted_hf is not None and math.isfinite(predicted_hf) and actual_hf is not None and (
            abs(actual_hf - predicted_hf) > health_factor_tolerance * predicted_hf):
        misses.append(f"health factor {actual_hf:.4f}, predicted {predicted_hf:.4f} "
                      f"(tolerance {health_factor_tolerance:.0%})")
    predicted_delta = plan.predicted.total.delta_usd if plan.predicted is not None else None
    actual_delta = _delta_usd(positions, before) if predicted_delta is not None else None
    if predicted_delta is not None and actual_delta is not None:
        band = policy.bands.main_delta_band(policy.portfolio.underlying)
        tolerance = delta_tolerance_usd if delta_tolerance_usd is not None else (
            (band.max - band.min) / 4 if band is not None else policy.hedging.min_trade_usd)
        if abs(actual_delta - predicted_delta) > tolerance:
            misses.append(f"delta {actual_delta:,.0f} USD, predicted {predicted_delta:,.0f} USD "
                          f"(tolerance {tolerance:,.0f})")
    return PredictionCheck(predicted_hf, actual_hf, predicted_delta, actual_delta, tuple(misses))


def _at_prices_of(after: Snapshot, before: Snapshot) -> tuple[Position, ...]:
    """Returns `after`'s positions with `before`'s oracle prices (each Aave reserve's, each Morpho market's)."""
    aave = {(p.chain, p.account.lower()): {r.token.symbol: r.price_1e8 for r in p.reserves}
            for p in before.positions if isinstance(p, AaveAccount)}
    markets = {(p.chain, p.market_id): p.oracle_price_1e36 for p in before.positions if isinstance(p, MorphoPosition)}
    repriced: list[Position] = []
    for p in after.positions:
        if isinstance(p, AaveAccount):
            p = lending.with_prices(p, aave.get((p.chain, p.account.lower()), {}))
        elif isinstance(p, MorphoPosition):
            p = dataclasses.replace(p, oracle_price_1e36=markets.get((p.chain, p.market_id), p.oracle_price_1e36))
        repriced.append(p)
    return tuple(repriced)


def _lowest_health_factor(positions: tuple[Position, ...]) -> float | None:
    values = [lending.health_factor_float(lending.health_factor_wad(p)) for p in positions
              if isinstance(p, AaveAccount)]
    values += [lending.health_factor_float(morpho.health_factor_wad(p)) for p in positions
               if isinstance(p, MorphoPosition)]
    return min(values, default=None)


def _delta_usd(positions: tuple[Position, ...], before: Snapshot) -> float | None:
    """Returns the net delta in USD of `positions` at `before`'s prices, or None without a fresh price for every
    asset."""
    prices = {p.symbol: p.price_usd for c in before.chains for p in c.prices if not p.stale}
    try:
        return risk_report(positions, before.underlying, prices, before.timestamp).total.delta_usd
    except KeyError:
        return None
