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
from collections.abc import Mapping
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
    """A band's current value against its policy: `value` in the band's unit (the health factor, or USD).

    `scope` says what the value is of: the chain of the account for a health factor and for the stress band
    (the account that is lowest in the worst scenario; "" when the book has accounts on one chain only), `total` or
    a factor's symbol for delta, "" otherwise.
    """

    name: str
    value: float
    min: float
    max: float
    target: float
    scope: str = ""

    @property
    def inside(self) -> bool:
        return within(self.value, self.min, self.max)

    def text(self) -> str:
        where = "in" if self.inside else "outside"
        bounds = f"[{_number(self.min)}, {_number(self.max)}]"
        return f"{_label(self.name, self.scope)} {_number(self.value)} {where} {bounds}"


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
    scope: str = ""

    def text(self) -> str:
        name, value = _label(self.band, self.scope), _number(self.value)
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
    tolerance = 1e-6 * max(1.0, *(abs(b) for b in (low, high) if math.isfinite(b)))
    return low - tolerance <= value <= high + tolerance


def band_readings(report: RiskReport, policy: Policy,
                  hf_floors: Mapping[str, float] | None = None) -> tuple[BandReading, ...]:
    """Return the value of every band the policy sets: each account's health factor (scope: its chain), the worst
    stress scenario's lowest health factor, the delta bands (the beta-weighted total, or a factor's delta), and the
    book's total gamma and vega. `hf_floors` (chain → health factor) raise an account's health-factor min above
    the policy's, its target by the same amount (the volatility-aware minimum)."""
    bands = policy.bands
    readings = []
    # The chain is named only when there is more than one: "" is the only account's.
    several = len({a.chain for a in report.accounts}) > 1
    if bands.health_factor is not None:
        hf = bands.health_factor
        for a in report.accounts:
            raised = max((hf_floors or {}).get(a.chain, 0.0) - hf.min, 0.0)
            readings.append(BandReading("health_factor", a.health_factor, hf.min + raised,
                                        max(hf.max, hf.target + raised), hf.target + raised,
                                        a.chain if several else ""))
    worst = report.worst_scenario
    if bands.stress_health_factor is not None and worst is not None:
        stress = bands.stress_health_factor
        lowest = min(worst.accounts, key=lambda a: a.health_factor)
        readings.append(BandReading("stress_health_factor", lowest.health_factor, stress.min, math.inf,
                                    stress.target_value, lowest.chain if several else ""))
    for scope, band in bands.delta_bands().items():
        factor = report.factor(scope)
        value = report.weighted_delta_usd if scope == "total" else (factor.delta_usd if factor else 0.0)
        readings.append(BandReading("delta_usd", value, band.min, band.max, band.target, scope))
    for name in GREEK_BANDS[1:]:
        greek = getattr(bands, name)
        if greek is not None:
            readings.append(BandReading(name, getattr(report.total, name), greek.min, greek.max, greek.target))
    return tuple(readings)


def decide(report: RiskReport, policy: Policy, state: HedgeState, now_ts: int,
           hf_floors: Mapping[str, float] | None = None) -> Decision:
    """Return which bands call for action at block time `now_ts`, given the planner's state (and the health-factor
    floors of `band_readings`)."""
    readings = band_readings(report, policy, hf_floors)
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
            return Trigger(reading.name, "below_min", value, reading.target, reading.min, urgent, reading.scope)
        if above and band.boost and math.isfinite(value):
            return Trigger(reading.name, "above_max", value, reading.target, reading.max, False, reading.scope)
        return None
    if reading.name == "stress_health_factor":
        # A scenario, not the market, is below its floor: act, but not ahead of the cooldown.
        return Trigger(reading.name, "below_min", value, reading.target, reading.min, False, reading.scope) \
            if below else None
    if below:
        urgent = reading.min - value > 2 * (reading.target - reading.min)
        return Trigger(reading.name, "below_min", value, reading.target, reading.min, urgent, reading.scope)
    if above:
        urgent = value - reading.max > 2 * (reading.max - reading.target)
        return Trigger(reading.name, "above_max", value, reading.target, reading.max, urgent, reading.scope)
    edge = reading.max if value > reading.target else reading.min
    drifted = abs(value - reading.target) > DRIFT_FRACTION * abs(edge - reading.target)
    if not drifted or state.reference_ts is None:
        return None
    if now_ts - state.reference_ts > policy.triggers.max_hedge_age_s:
        return Trigger(reading.name, "stale_hedge", value, reading.target, edge, False, reading.scope)
    reference = state.reference_price_usd
    if reference and abs(spot_usd / reference - 1.0) * 100.0 > policy.triggers.price_move_pct:
        return Trigger(reading.name, "price_move", value, reading.target, edge, False, reading.scope)
    return None


def _label(name: str, scope: str = "") -> str:
    label = {"health_factor": "HF", "stress_health_factor": "stress HF"}.get(name, name)
    return f"{label}[{scope}]" if scope and scope != "total" else label


def _number(value: float) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}"
