"""Band breaches and the triggers that decide whether a cycle acts.

A cycle acts when a band is breached; when the last hedge is older than `max_hedge_age_s` and a Greek has drifted
from its target; or when the underlying moved more than `price_move_pct` since the last hedge and a Greek has
drifted. After an action, `cooldown_s` of block time must pass before the next, unless a band is breached by more
than twice its width (the distance from the breached edge to the target) or the health factor is within
`limits.gas_cap_lift_hf` of liquidation. A health factor below `min` is repaired to `target`; above `max` it is
re-levered to `target` only with `boost`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.model import Plan, RiskReport
from agent.policy import Policy

GREEK_BANDS = ("delta_usd", "gamma_usd_1pct", "vega_usd_1vol")
# A Greek has drifted when it is this share of the way from its target to the band's edge on that side.
DRIFT_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class HedgeState:
    """What the planner remembers between cycles (the daemon keeps it): the block time of the last action, and
    the block time and underlying price (USD) of the last hedge or, before any, of the first observation."""

    last_action_ts: int | None = None
    reference_ts: int | None = None
    reference_price_usd: float | None = None

    def after(self, plan: Plan, timestamp: int, spot_usd: float) -> HedgeState:
        """Return the state once `plan` is done at block time `timestamp` with the underlying at `spot_usd`."""
        if not plan.empty:
            return HedgeState(timestamp, timestamp, spot_usd)
        if self.reference_ts is None:
            return HedgeState(self.last_action_ts, timestamp, spot_usd)
        return self


@dataclass(frozen=True, slots=True)
class BandReading:
    """A band's current value against its policy: `value` in the band's unit (the health factor, or USD)."""

    name: str
    value: float
    min: float
    max: float
    target: float

    @property
    def inside(self) -> bool:
        return within(self.value, self.min, self.max)

    def text(self) -> str:
        where = "in" if self.inside else "outside"
        return f"{_label(self.name)} {_number(self.value)} {where} [{_number(self.min)}, {_number(self.max)}]"


@dataclass(frozen=True, slots=True)
class Trigger:
    """Why a band calls for action: `kind` is "below_min", "above_max", "stale_hedge" or "price_move"; the plan
    trades the band's value back to `target`."""

    band: str
    kind: str
    value: float
    target: float
    edge: float
    overrides_cooldown: bool

    def text(self) -> str:
        name, value = _label(self.band), _number(self.value)
        if self.kind == "below_min":
            return f"{name} {value} below min {_number(self.edge)} by {_number(self.edge - self.value)}"
        if self.kind == "above_max":
            return f"{name} {value} above max {_number(self.edge)} by {_number(self.value - self.edge)}"
        if self.kind == "stale_hedge":
            return f"{name} {value} drifted from target {_number(self.target)} since a hedge older than max age"
        return f"{name} {value} drifted from target {_number(self.target)} after a price move"


@dataclass(frozen=True, slots=True)
class Decision:
    """The triggers that act this cycle, the band readings, and a one-line reason."""

    readings: tuple[BandReading, ...]
    triggers: tuple[Trigger, ...]
    reason: str


def within(value: float, low: float, high: float) -> bool:
    """Whether `value` lies in [low, high], give or take float rounding (1e-6 of the bounds' size)."""
    tolerance = 1e-6 * max(1.0, abs(low), abs(high))
    return low - tolerance <= value <= high + tolerance


def band_readings(report: RiskReport, policy: Policy) -> tuple[BandReading, ...]:
    """Return the value of every band the policy sets: the lowest health factor of the report's accounts (no band
    reading without an account), and the book's total desk Greeks."""
    bands = policy.bands
    readings = []
    if bands.health_factor is not None and report.accounts:
        hf = bands.health_factor
        value = min(a.health_factor for a in report.accounts)
        readings.append(BandReading("health_factor", value, hf.min, hf.max, hf.target))
    for name in GREEK_BANDS:
        band = getattr(bands, name)
        if band is not None:
            readings.append(BandReading(name, getattr(report.total, name), band.min, band.max, band.target))
    return tuple(readings)


def decide(report: RiskReport, policy: Policy, state: HedgeState, now_ts: int) -> Decision:
    """Return which bands call for action at block time `now_ts`, given the planner's state."""
    readings = band_readings(report, policy)
    triggers: list[Trigger] = []
    for reading in readings:
        trigger = _trigger(reading, policy, state, now_ts, report.spot_usd)
        if trigger is not None:
            triggers.append(trigger)
    if not triggers:
        return Decision(readings, (), "all bands inside: " + ", ".join(r.text() for r in readings))
    if state.last_action_ts is not None:
        waited = now_ts - state.last_action_ts
        if waited < policy.triggers.cooldown_s:
            urgent = [t for t in triggers if t.overrides_cooldown]
            if not urgent:
                left = policy.triggers.cooldown_s - waited
                return Decision(readings, (), f"cooldown: {left:g} s of {policy.triggers.cooldown_s:g} s left; "
                                + "; ".join(t.text() for t in triggers))
            triggers = urgent
    return Decision(readings, tuple(triggers), "; ".join(t.text() for t in triggers))


def _trigger(reading: BandReading, policy: Policy, state: HedgeState, now_ts: int, spot_usd: float) -> Trigger | None:
    value = reading.value
    below = value < reading.min and not reading.inside
    above = value > reading.max and not reading.inside
    if reading.name == "health_factor":
        band = policy.bands.health_factor
        assert band is not None
        near_liquidation = value < 1.0 + policy.limits.gas_cap_lift_hf
        if below:
            urgent = near_liquidation or reading.min - value > 2 * (reading.target - reading.min)
            return Trigger(reading.name, "below_min", value, reading.target, reading.min, urgent)
        if above and band.boost and math.isfinite(value):
            return Trigger(reading.name, "above_max", value, reading.target, reading.max, False)
        return None
    if below:
        urgent = reading.min - value > 2 * (reading.target - reading.min)
        return Trigger(reading.name, "below_min", value, reading.target, reading.min, urgent)
    if above:
        urgent = value - reading.max > 2 * (reading.max - reading.target)
        return Trigger(reading.name, "above_max", value, reading.target, reading.max, urgent)
    edge = reading.max if value > reading.target else reading.min
    drifted = abs(value - reading.target) > DRIFT_FRACTION * abs(edge - reading.target)
    if not drifted or state.reference_ts is None:
        return None
    if now_ts - state.reference_ts > policy.triggers.max_hedge_age_s:
        return Trigger(reading.name, "stale_hedge", value, reading.target, edge, False)
    reference = state.reference_price_usd
    if reference and abs(spot_usd / reference - 1.0) * 100.0 > policy.triggers.price_move_pct:
        return Trigger(reading.name, "price_move", value, reading.target, edge, False)
    return None


def whalley_wilmott_half_width_usd(
    gamma_usd_1pct: float, spot_usd: float, cost_fraction: float, risk_aversion: float, rate: float = 0.0,
    years_left: float = 0.0,
) -> float:
    """Return the Whalley–Wilmott no-trade half-width of a delta band, in USD of delta.

    In units of the underlying it is (3/2 · e^(−r(T−t)) · k · S · Γ² / γ)^(1/3), with Γ per unit² (from the desk
    gamma: Γ = gamma_usd_1pct / (0.01 · S²)), k the proportional cost of a trade and γ the risk aversion; times S
    in USD.
    """
    if spot_usd <= 0 or risk_aversion <= 0:
        raise ValueError("expected a positive spot and risk aversion")
    gamma = gamma_usd_1pct / (0.01 * spot_usd * spot_usd)
    units = (1.5 * math.exp(-rate * years_left) * cost_fraction * spot_usd * gamma * gamma / risk_aversion) ** (1 / 3)
    return units * spot_usd


def _label(name: str) -> str:
    return "HF" if name == "health_factor" else name


def _number(value: float) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}"
