"""What the risk engine says about a book: desk Greeks per position, per risk factor and in total, every lending
account's health, and the book under joint stress scenarios, in a `RiskReport`. Re-exported by `agent.model`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeskGreeks:
    """Sensitivities in desk units, all in USD (DESIGN.md): `delta_usd` = dV/dS·S, `gamma_usd_1pct` = change of
    delta_usd for a 1% move of the underlying, `vega_usd_1vol` per vol point (0.01), `theta_usd_1d` per calendar
    day, `rho_usd_1pct` per 1% of rate."""

    delta_usd: float = 0.0
    gamma_usd_1pct: float = 0.0
    vega_usd_1vol: float = 0.0
    theta_usd_1d: float = 0.0
    rho_usd_1pct: float = 0.0

    def __add__(self, other: DeskGreeks) -> DeskGreeks:
        return DeskGreeks(
            self.delta_usd + other.delta_usd,
            self.gamma_usd_1pct + other.gamma_usd_1pct,
            self.vega_usd_1vol + other.vega_usd_1vol,
            self.theta_usd_1d + other.theta_usd_1d,
            self.rho_usd_1pct + other.rho_usd_1pct,
        )


@dataclass(frozen=True, slots=True)
class PositionRisk:
    """One position's value and desk Greeks; `label` names it (e.g. "aave_v3:localnet:0xabc…")."""

    label: str
    value_usd: float
    greeks: DeskGreeks


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """A lending position's health now (an Aave account, a Morpho Blue market position), and how far the underlying
    can move before the health factor crosses 1.

    `health_factor_wad` is the protocol's own integer (2**256 − 1 with no debt), `health_factor` the same as a float
    (inf with no debt). Distances are in % of spot, `math.inf` when no move in that direction liquidates, 0 when the
    account is liquidatable now. `liquidation_price_usd` is the underlying's price at the nearer crossing (None: none).
    `protocol` names the lending protocol, `market_id` the Morpho market ("" for an Aave account).
    """

    chain: str
    account: str
    health_factor_wad: int
    health_factor: float
    liquidation_price_usd: float | None
    distance_down_pct: float
    distance_up_pct: float
    protocol: str = "aave_v3"
    market_id: str = ""


@dataclass(frozen=True, slots=True)
class FactorRisk:
    """One risk factor (a priced asset) of the book: its USD price, its beta to the policy's underlying, and the
    book's desk Greeks against it alone, every other price fixed: `delta_usd` = dV/dS·S, `gamma_usd_1pct` the
    change of that delta for a 1% move of this factor. `beta_delta_usd` = beta · delta_usd, the factor's part of
    the beta-weighted delta (USD of the underlying)."""

    symbol: str
    price_usd: float
    beta: float
    delta_usd: float
    gamma_usd_1pct: float

    @property
    def beta_delta_usd(self) -> float:
        return self.beta * self.delta_usd


@dataclass(frozen=True, slots=True)
class Scenario:
    """A joint stress scenario: simultaneous relative moves of factor prices (`shocks`, −0.08: an 8% fall) and of
    option vols per underlying (`vol_shocks`, +0.5: vols × 1.5)."""

    name: str
    shocks: tuple[tuple[str, float], ...]
    vol_shocks: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class AccountStress:
    """A lending position in one scenario: its exact health factor (inf with no debt) and, when it is below 1, what
    one liquidation call would cost its owner (the liquidator's bonus on the collateral seized, USD) and the debt
    it would repay (USD) at the protocol's close factor (Aave: 50%, 100% at or below HF 0.95; Morpho: none).
    `protocol` and `market_id` say which position it is, as in `AccountHealth`."""

    chain: str
    account: str
    health_factor: float
    liquidation_cost_usd: float = 0.0
    liquidated_debt_usd: float = 0.0
    protocol: str = "aave_v3"
    market_id: str = ""

    @property
    def liquidatable(self) -> bool:
        return self.health_factor < 1.0


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """The book in one joint stress scenario: `shocks` are relative moves per factor (−0.08: an 8% fall), `vol_shocks`
    relative moves of option vols per underlying (+0.5: vols × 1.5); P&L against today's value (USD) and every
    account's health factor and liquidation cost."""

    name: str
    shocks: tuple[tuple[str, float], ...]
    vol_shocks: tuple[tuple[str, float], ...]
    pnl_usd: float
    accounts: tuple[AccountStress, ...]

    @property
    def min_health_factor(self) -> float:
        """The lowest health factor of any account in the scenario (inf without accounts or debt)."""
        return min((a.health_factor for a in self.accounts), default=float("inf"))

    @property
    def liquidation_cost_usd(self) -> float:
        return sum(a.liquidation_cost_usd for a in self.accounts)


@dataclass(frozen=True, slots=True)
class RiskReport:
    """The whole book against one underlying at one spot price: per-position and total desk Greeks, every lending
    account's health, and the smallest move of the underlying (in % of spot) that liquidates any account."""

    underlying: str
    spot_usd: float
    positions: tuple[PositionRisk, ...]
    total: DeskGreeks
    value_usd: float
    accounts: tuple[AccountHealth, ...]
    liquidation_distance_down_pct: float
    liquidation_distance_up_pct: float
    factors: tuple[FactorRisk, ...] = ()
    beta_delta_usd: float | None = None  # Σ beta·delta over the factors (None: the report has no factor view)
    scenarios: tuple[ScenarioResult, ...] = ()

    @property
    def weighted_delta_usd(self) -> float:
        """The beta-weighted delta to the underlying (USD), or the underlying's delta without a factor view."""
        return self.total.delta_usd if self.beta_delta_usd is None else self.beta_delta_usd

    def factor(self, symbol: str) -> FactorRisk | None:
        return next((f for f in self.factors if f.symbol == symbol), None)

    @property
    def worst_scenario(self) -> ScenarioResult | None:
        """The scenario with the lowest account health factor (None without scenarios or accounts)."""
        with_accounts = [s for s in self.scenarios if s.accounts]
        return min(with_accounts, key=lambda s: s.min_health_factor, default=None)
