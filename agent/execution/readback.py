"""Prediction read-back: the state read after a plan, against what the plan predicted."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.model import Plan, Snapshot
from agent.policy import Policy
from agent.risk.portfolio import risk_report


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


def check_prediction(policy: Policy, plan: Plan, after: Snapshot, health_factor_tolerance: float = 0.05,
                     delta_tolerance_usd: float | None = None) -> PredictionCheck:
    """Returns the state read back after `plan` (`after`, a new snapshot) against the plan's prediction: the lowest
    health factor within `health_factor_tolerance` (relative), net delta within `delta_tolerance_usd` (default: a
    quarter of the delta band's width, or `hedging.min_trade_usd`)."""
    predicted_hf = None
    if plan.predicted is not None and plan.predicted.accounts:
        predicted_hf = min(a.health_factor for a in plan.predicted.accounts)
    elif any(a.predicted_health_factor is not None for a in plan.actions):
        predicted_hf = [a.predicted_health_factor for a in plan.actions if a.predicted_health_factor][-1]
    actual_hf = after.lowest_health_factor
    misses = []
    if predicted_hf is not None and math.isfinite(predicted_hf) and actual_hf is not None and (
            abs(actual_hf - predicted_hf) > health_factor_tolerance * predicted_hf):
        misses.append(f"health factor {actual_hf:.4f}, predicted {predicted_hf:.4f} "
                      f"(tolerance {health_factor_tolerance:.0%})")
    predicted_delta = plan.predicted.total.delta_usd if plan.predicted is not None else None
    actual_delta = _delta_usd(after) if predicted_delta is not None else None
    if predicted_delta is not None and actual_delta is not None:
        band = policy.bands.delta_usd
        tolerance = delta_tolerance_usd if delta_tolerance_usd is not None else (
            (band.max - band.min) / 4 if band is not None else policy.hedging.min_trade_usd)
        if abs(actual_delta - predicted_delta) > tolerance:
            misses.append(f"delta {actual_delta:,.0f} USD, predicted {predicted_delta:,.0f} USD "
                          f"(tolerance {tolerance:,.0f})")
    return PredictionCheck(predicted_hf, actual_hf, predicted_delta, actual_delta, tuple(misses))


def _delta_usd(snapshot: Snapshot) -> float | None:
    """Returns the snapshot's net delta in USD from the risk model, or None without a fresh price for every asset."""
    prices = {p.symbol: p.price_usd for c in snapshot.chains for p in c.prices if not p.stale}
    try:
        return risk_report(snapshot.positions, snapshot.underlying, prices, snapshot.timestamp).total.delta_usd
    except KeyError:
        return None
