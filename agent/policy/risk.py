"""The policy's `risk` section: every priced asset is a risk factor; their betas to the underlying, which assets are
stablecoins and LSTs (for the default depeg scenarios), and the named joint stress scenarios."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from agent.model import Scenario
from agent.policy.fields import Name, StrictModel, field_error


def _above_minus_one(value: float) -> float:
    if value <= -1.0:
        raise ValueError("expected a relative move above -1 (-0.4 is a 40% fall; -1 would take the price to zero)")
    return value


Move = Annotated[float, AfterValidator(_above_minus_one), WithJsonSchema({"type": "number", "exclusiveMinimum": -1})]


class ScenarioSpec(StrictModel):
    """A named joint stress scenario: simultaneous relative moves of factor prices and of option vols."""

    name: str = Field(min_length=1, max_length=80)
    shocks: dict[Name, Move] = Field(min_length=1)
    """Factor symbol → relative price move (-0.40: a 40% fall)."""
    vols: dict[Name, Move] = Field(default_factory=dict)
    """Underlying symbol → relative move of its options' vols (0.5: vols × 1.5)."""

    def scenario(self) -> Scenario:
        """Returns the risk engine's form of this scenario."""
        return Scenario(self.name, tuple(sorted(self.shocks.items())), tuple(sorted(self.vols.items())))


class Risk(StrictModel):
    """Risk factors and joint stress scenarios. Betas come from here (not from market history): a factor without
    one has beta 1 if it is the underlying or an LST pegged to it, else 0."""

    betas: dict[Name, float] = Field(default_factory=dict)
    """Factor symbol → beta to the underlying, for the beta-weighted delta (e.g. WBTC: 0.8)."""
    stablecoins: tuple[Name, ...] = ("USDC", "USDT", "DAI")
    """Assets the default scenarios depeg by 5% and 10%."""
    lsts: dict[Name, Name] = Field(default_factory=lambda: {"WSTETH": "WETH", "STETH": "WETH", "RETH": "WETH"})
    """Liquid staking token → the asset it is pegged to: it moves with it in spot scenarios, and the default
    scenarios depeg it by 3% and 8%."""
    decoupled: tuple[tuple[Name, Name], ...] = (("WETH", "WBTC"),)
    """Pairs the default scenarios move apart: one −20%, the other +10%, both ways."""
    default_scenarios: bool = True
    """Add the default set (spot × vol grid per factor, depegs, decoupling) to the named scenarios."""
    scenarios: tuple[ScenarioSpec, ...] = ()

    @model_validator(mode="after")
    def _names_unique(self) -> Risk:
        seen: set[str] = set()
        for index, spec in enumerate(self.scenarios):
            if spec.name in seen:
                raise field_error(f"expected each scenario name once ({spec.name!r} repeated)", "scenarios", index,
                               "name")
            seen.add(spec.name)
        return self

    def betas_for(self, underlying: str, factors: tuple[str, ...]) -> dict[str, float]:
        """Returns each factor's beta to `underlying`: the policy's, else 1 for the underlying and its LSTs, else 0."""
        pegged = {lst for lst, peg in self.lsts.items() if peg == underlying}
        return {f: self.betas.get(f, 1.0 if f == underlying or f in pegged else 0.0) for f in factors}
