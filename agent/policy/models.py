"""The policy: bands, triggers, hedging, limits and execution, the whole `Policy`, and its JSON schema.

A policy is meant to be reviewed and committed by its owner, so secrets stay out of it: any string may hold
`${VAR}` references, expanded from the environment at load time (`loader.py`)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Tag,
    WithJsonSchema,
    model_validator,
)

from agent.policy.fields import Instrument, Name, StrictModel, field_error
from agent.policy.portfolio import Portfolio
from agent.policy.risk import Risk


class _Band(StrictModel):
    min: float
    target: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> _Band:
        if not self.min < self.max:
            raise field_error(f"expected a value above min ({self.min:g})", "max")
        if not self.min < self.target:
            raise field_error(f"expected a value above min ({self.min:g})", "target")
        if not self.target < self.max:
            raise field_error(f"expected a value below max ({self.max:g})", "target")
        return self


def _above_one(value: float) -> float:
    if value <= 1.0:
        raise ValueError("expected a health factor above 1: at 1 the position can be liquidated")
    return value


# Closer than this, a small move after a repay (or boost) trips the trigger again: the two chase each other.
_HF_MIN_GAP = 0.05


class VolatilityMin(StrictModel):
    """Raise the band's min (and target, by the same gap) to the smallest health factor that survives a k-sigma move
    of the account's factors over the reaction horizon: HF_min = exp(k·σ_HF·√horizon) (README)."""

    k_sigma: PositiveFloat = 3.0
    horizon_s: PositiveFloat = 3600.0
    """How long the agent may take to act: a few cycles and a confirmation."""
    realised_vols: dict[Name, PositiveFloat] = Field(default_factory=dict)
    """Factor → annual realised vol (0.8 = 80%), used where no option on it is listed; for an LST, the vol of its
    price in its peg."""


class HealthFactorBand(_Band):
    """Repay when the health factor falls below min, back to target; with boost, re-lever above max."""

    min: Annotated[
        float, AfterValidator(_above_one), WithJsonSchema({"type": "number", "exclusiveMinimum": 1})
    ]
    boost: bool = False
    """Re-lever when the health factor rises above max."""
    volatility: VolatilityMin | None = None
    """Widen the band when the market gets wild (off by default)."""

    @model_validator(mode="after")
    def _triggers_apart_from_target(self) -> HealthFactorBand:
        gap = _HF_MIN_GAP * self.target
        if self.target - self.min < gap:
            raise field_error(
                f"expected min and target at least 5% of target apart (min ≤ {self.target - gap:.4g}): "
                "closer, repay and boost would chase each other",
                "min",
            )
        if self.boost and self.max - self.target < gap:
            raise field_error(
                f"expected max and target at least 5% of target apart when boost is on "
                f"(max ≥ {self.target + gap:.4g}): closer, repay and boost would chase each other",
                "max",
            )
        return self


class GreekBand(_Band):
    """A band in desk units (USD)."""

    target: float = 0.0
    """Default: 0 when 0 is inside (min, max), else the midpoint."""

    @model_validator(mode="before")
    @classmethod
    def _default_target(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "target" in data:
            return data
        try:
            low, high = float(data["min"]), float(data["max"])
        except (KeyError, TypeError, ValueError):
            return data  # the field validators report it
        return {**data, "target": 0.0 if low < 0 < high else (low + high) / 2}


def _delta_form(value: Any) -> str:
    # A mapping with a band's own keys is one band; any other mapping names factors.
    return "<band>" if isinstance(value, dict) and {"min", "max", "target"} & set(value) else "<factors>"


# The tags start with "<" so that the loader can drop them from a location (no key can start with it).
DeltaBands = Annotated[
    Annotated[GreekBand, Tag("<band>")] | Annotated[dict[Name, GreekBand], Tag("<factors>")],
    Discriminator(_delta_form),
]


class StressBand(StrictModel):
    """Deleverage when the worst stress scenario's lowest health factor falls below min, until it is at target."""

    min: PositiveFloat = 1.0
    target: PositiveFloat | None = None
    """Default: 5% above min."""

    @model_validator(mode="after")
    def _target_above_min(self) -> StressBand:
        if self.target is not None and self.target <= self.min:
            raise field_error(f"expected a value above min ({self.min:g})", "target")
        return self

    @property
    def target_value(self) -> float:
        return self.target if self.target is not None else self.min * 1.05


class Bands(StrictModel):
    """Trigger when a figure leaves [min, max]; trade back to target. At least one band is required."""

    health_factor: HealthFactorBand | None = None
    """Aave's health factor of each account: liquidation below 1."""
    delta_usd: DeltaBands | None = None
    """dV/dS·S, USD: one band on the beta-weighted delta to the underlying, or one band per named factor
    (`{WETH: {…}, WBTC: {…}}`; the key `total` names the beta-weighted delta)."""
    stress_health_factor: StressBand | None = None
    """The lowest health factor of any account in the worst stress scenario (`risk.scenarios` and the defaults)."""
    gamma_usd_1pct: GreekBand | None = None
    """Change of delta_usd for a 1% move of the underlying, USD."""
    vega_usd_1vol: GreekBand | None = None
    """Change of value for one vol point, USD."""

    def names(self) -> list[str]:
        """Returns the names of the bands that are set, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    def delta_bands(self) -> dict[str, GreekBand]:
        """Returns the delta bands by what they bound: `total` (the beta-weighted delta) or a factor's symbol."""
        if self.delta_usd is None:
            return {}
        return {"total": self.delta_usd} if isinstance(self.delta_usd, GreekBand) else dict(self.delta_usd)

    def main_delta_band(self, underlying: str) -> GreekBand | None:
        """Returns the band on the beta-weighted delta, else the underlying's own delta band (None: neither)."""
        bands = self.delta_bands()
        return bands.get("total", bands.get(underlying))

    @model_validator(mode="after")
    def _at_least_one(self) -> Bands:
        if not self.names():
            raise field_error(f"expected at least one band of {', '.join(type(self).model_fields)}")
        return self


class Triggers(StrictModel):
    """When a cycle runs and when it may act."""

    interval_s: PositiveFloat = 12.0
    """Seconds between two cycles."""
    max_hedge_age_s: PositiveInt = 86400
    """Re-hedge at least this often."""
    price_move_pct: PositiveFloat = 2.0
    """Re-assess at once after a move of the underlying this large."""
    cooldown_s: NonNegativeFloat = 60.0
    """Minimum seconds between two actions."""


class Hedging(StrictModel):
    """What the planner may use, and the smallest trade worth its cost."""

    instruments: tuple[Instrument, ...] = Field(
        default=("perp", "aave_borrow", "spot_swap", "options"), min_length=1
    )
    max_slippage_bps: PositiveFloat = Field(default=30.0, le=10_000)
    min_trade_usd: NonNegativeFloat = 500.0

    @model_validator(mode="after")
    def _instruments_unique(self) -> Hedging:
        twice = sorted({item for item in self.instruments if self.instruments.count(item) > 1})
        if twice:
            raise field_error(f"expected each instrument once ({', '.join(twice)} repeated)", "instruments")
        return self


class Limits(StrictModel):
    """Caps the guard enforces on every plan."""

    max_notional_per_tx_usd: PositiveFloat = 250_000.0
    max_daily_turnover_usd: PositiveFloat = 2_000_000.0
    max_gas_price_gwei: PositiveFloat = 200.0
    gas_cap_lift_hf: NonNegativeFloat = 0.1
    """The gas cap is ignored while the health factor is below 1 + this: better an expensive repay than a
    liquidation."""
    emergency_max_slippage_bps: PositiveFloat = Field(default=300.0, le=10_000)
    """While the health factor is below 1 + gas_cap_lift_hf a swap may accept this much below the oracle price
    (never less than hedging.max_slippage_bps): dearer than usual, still well under a liquidation's bonus."""

    @model_validator(mode="after")
    def _turnover_covers_one_tx(self) -> Limits:
        if self.max_daily_turnover_usd < self.max_notional_per_tx_usd:
            raise field_error(
                f"expected at least max_notional_per_tx_usd ({self.max_notional_per_tx_usd:g})",
                "max_daily_turnover_usd",
            )
        return self


class Execution(StrictModel):
    """How transactions are sent; dry-run records what would have been sent and sends nothing."""

    mode: Literal["dry-run", "live"] = "dry-run"
    confirmations: PositiveInt = 1
    replace_after_s: PositiveFloat = 30.0
    """Bump the fees of a transaction still pending after this long."""
    deadline_s: PositiveFloat = 600.0
    """Cancel an intent still pending after this long."""

    @model_validator(mode="after")
    def _replace_before_deadline(self) -> Execution:
        if self.replace_after_s >= self.deadline_s:
            raise field_error(f"expected less than deadline_s ({self.deadline_s:g})", "replace_after_s")
        return self


class Policy(StrictModel):
    """A Ballast policy: the portfolio, its risk bands, and how the agent may act to keep it inside them.
    Any string may hold ${VAR} references, expanded from the environment at load time."""

    version: Literal[1]
    portfolio: Portfolio
    bands: Bands
    triggers: Triggers = Field(default_factory=Triggers)
    hedging: Hedging = Field(default_factory=Hedging)
    limits: Limits = Field(default_factory=Limits)
    execution: Execution = Field(default_factory=Execution)
    risk: Risk = Field(default_factory=Risk)

    def swap_slippage_limit_bps(self, health_factor: float | None) -> float:
        """Returns how far below the oracle price a swap may accept to go at `health_factor` (the lowest): the
        hedging cap, raised near liquidation to the bounded emergency cap (the guard's rule, and the backtest's)."""
        near_liquidation = health_factor is not None and health_factor < 1 + self.limits.gas_cap_lift_hf
        if near_liquidation:
            return max(self.hedging.max_slippage_bps, self.limits.emergency_max_slippage_bps)
        return self.hedging.max_slippage_bps


def policy_json_schema() -> dict[str, Any]:
    """Returns the JSON schema (draft 2020-12) of the policy file, generated from the models."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Policy.model_json_schema()}


def policy_json_schema_text() -> str:
    """Returns the schema as committed in config/policy.schema.json: indented, sorted keys, final newline."""
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
