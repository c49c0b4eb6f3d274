"""`ballast backtest`: one starting portfolio along one price path, side by side under fixed names: `unmanaged`,
the baselines `hf_only` and `periodic` (`agent.sim.keepers`), Ballast's `policy`; then each alternative policy
and each variant of a sweep (`--sweep FIELD=V1,V2,…`), whose cost and tracking error draw the frontier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.errors import UserInputError
from agent.policy import GreekBand, Policy
from agent.sim.conditions import Conditions, conditions
from agent.sim.engine import Simulation
from agent.sim.keepers import (
    PERIODIC_HOURS,
    PERIODIC_MOVE_PCT,
    HealthFactorKeeper,
    Keeper,
    PeriodicKeeper,
    PolicyKeeper,
)
from agent.sim.market import PricePath
from agent.sim.portfolio import PortfolioSpec
from agent.sim.records import RunResult
from agent.sim.report import summaries

FIXED = ("unmanaged", "hf_only", "periodic", "policy")


@dataclass
class Backtest:
    """The runs of one backtest, by label: the FIXED ones, the alternatives, then the sweep's variants."""

    spec: PortfolioSpec
    path: PricePath
    policy: Policy
    market: Conditions
    runs: dict[str, RunResult]
    sweep: tuple[str, ...] = ()
    periodic: tuple[float, float] = (PERIODIC_HOURS, PERIODIC_MOVE_PCT)
    _figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def figures(self) -> dict[str, dict[str, Any]]:
        """Return each run's summary (`agent.sim.report.summary`), measured against the policy's bands."""
        if not self._figures:
            self._figures = summaries(self.runs, self.policy)
        return self._figures

    def frontier(self) -> dict[str, dict[str, Any]]:
        """Return the figures the cost versus tracking-error chart shows: the fixed runs and the sweep's."""
        figures = self.figures()
        return {k: v for k, v in figures.items() if k in FIXED or k in self.sweep} if self.sweep else {}

    def to_json(self) -> dict[str, Any]:
        """Return the backtest as one JSON-ready object: the window, the market's sources, one object per fixed
        run, `alternatives` and `sweep`."""
        figures = self.figures()
        first, last = self.path.window()
        hours, move = self.periodic
        return {
            "ok": True,
            "portfolio": self.spec.name,
            "policy_name": self.policy.portfolio.name,
            "window": {"from": first, "to": last, "bars": len(self.path),
                       "first_close_usd": float(self.path.close[0]), "last_close_usd": float(self.path.close[-1])},
            "market": self.market.sources,
            "baselines": {"hf_only": "repay to the health-factor band's target below its min, boost above its max",
                          "periodic": f"delta back to target every {hours:g} h and after ±{move:g}% moves"},
            **{name: figures[name] for name in FIXED},
            "comparison": comparison(figures),
            "alternatives": {k: v for k, v in figures.items() if k not in FIXED and k not in self.sweep},
            "sweep": {k: figures[k] for k in self.sweep},
        }

    def title(self) -> str:
        first, last = self.path.window()
        return f"{self.spec.name} · {first} → {last} · {len(self.path)} hourly bars"

    def notes(self) -> list[str]:
        hours, move = self.periodic
        return [*(f"{k}: {v}" for k, v in self.market.sources.items()),
                f"baselines: hf_only repays to the HF target below min and boosts above max; periodic hedges delta to "
                f"target every {hours:g} h and after ±{move:g}% moves",
                "keeper acts at each bar's close; liquidations are checked at the bar's low and high first; swaps "
                "fill against the simulated pool, not the cost model"]


def comparison(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return the policy against the baselines: its hedging cost, tracking error and that error's part from the
    delta held over `periodic`'s (ratios; None when the baseline's is 0) and the liquidations of the policy and of
    `hf_only`."""
    policy, periodic = figures["policy"], figures["periodic"]

    def ratio(mine: float, theirs: float) -> float | None:
        return round(mine / theirs, 3) if theirs else None

    return {"cost_vs_periodic": ratio(policy["hedge_cost_usd"], periodic["hedge_cost_usd"]),
            "tracking_error_vs_periodic": ratio(policy["tracking_error_usd"], periodic["tracking_error_usd"]),
            "delta_tracking_error_vs_periodic": ratio(policy["tracking_error_parts_usd"]["delta"],
                                                      periodic["tracking_error_parts_usd"]["delta"]),
            "liquidations": {"policy": policy["liquidations"], "hf_only": figures["hf_only"]["liquidations"]}}


def with_delta_band(policy: Policy, half_width_usd: float) -> Policy:
    """Return `policy` with its delta band set to target ± `half_width_usd` (target 0 when it has no delta band)."""
    if half_width_usd <= 0:
        raise UserInputError(f"delta band: expected a positive half-width in USD (got {half_width_usd:g})")
    current = policy.bands.main_delta_band(policy.portfolio.underlying)
    target = current.target if current is not None else 0.0
    band = GreekBand(min=target - half_width_usd, target=target, max=target + half_width_usd)
    return policy.model_copy(update={"bands": policy.bands.model_copy(update={"delta_usd": band})})


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """Return (field, values) of `FIELD=V1,V2,…`; UserInputError when it is not that."""
    name, _, values = text.partition("=")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if not name or not numbers:
        raise UserInputError(f"--sweep: expected FIELD=V1,V2,… such as bands.delta_usd=3000,6000 (got {text!r})")
    return name.strip(), numbers


def with_setting(policy: Policy, name: str, value: float) -> Policy:
    """Return `policy` with the field at the dotted `name` set to `value`; a band (`bands.delta_usd`) takes it as
    its half-width around the target. UserInputError naming the field when it is not a number of the policy or the
    result does not validate."""
    if name in ("bands.delta_usd", "bands.gamma_usd_1pct", "bands.vega_usd_1vol"):
        band_name = name.split(".")[1]
        if band_name == "delta_usd":
            return with_delta_band(policy, value)
        old = getattr(policy.bands, band_name)
        target = old.target if old is not None else 0.0
        band = GreekBand(min=target - value, target=target, max=target + value)
        return policy.model_copy(update={"bands": policy.bands.model_copy(update={band_name: band})})
    data = policy.model_dump()
    node: Any = data
    parts = name.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or not isinstance(node.get(parts[-1]), int | float) or isinstance(
            node.get(parts[-1]), bool):
        raise UserInputError(f"--sweep: {name} is not a number in the policy")
    node[parts[-1]] = value
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        raise UserInputError(f"--sweep: {name}={value:g}: {problem['msg']}") from None


def run_backtest(spec: PortfolioSpec, path: PricePath, policy: Policy,
                 alternatives: dict[str, Policy] | None = None, sweep: Sequence[str] = (),
                 market: Conditions | None = None, periodic: tuple[float, float] = (PERIODIC_HOURS,
                                                                                    PERIODIC_MOVE_PCT),
                 on_run: Callable[[str, int, int], None] | None = None) -> Backtest:
    """Return the portfolio's runs along `path`: the FIXED ones, each alternative, each sweep variant.

    `on_run(label, done, total)` is called before each run, `done` of `total` runs done (for a progress bar)."""
    sim = Simulation(spec, path, market if market is not None else conditions(path, spec.market))
    band = policy.bands.main_delta_band(policy.portfolio.underlying)
    target = band.target if band is not None else sim.start_delta_usd()  # as `report.target_delta_usd`
    hours, move = periodic
    keepers: dict[str, Keeper | None] = {
        "unmanaged": None,
        "hf_only": HealthFactorKeeper(policy),
        "periodic": PeriodicKeeper(policy, target, hours, move),
        "policy": PolicyKeeper(policy),
    }
    for label, alternative in (alternatives or {}).items():
        keepers[label] = PolicyKeeper(alternative, label)
    labels = []
    for text in sweep:
        name, values = parse_sweep(text)
        for value in values:
            label = f"{name}={value:g}"
            keepers[label] = PolicyKeeper(with_setting(policy, name, value), label)
            labels.append(label)
    runs = {}
    for done, (label, keeper) in enumerate(keepers.items()):
        if on_run is not None:
            on_run(label, done, len(keepers))
        runs[label] = sim.run(keeper, label) if keeper is None else sim.run(keeper)
    return Backtest(spec, path, policy, sim.market, runs, tuple(labels), periodic)


def alternative_label(path: Path, taken: set[str]) -> str:
    """Return a label for an alternative policy file: its stem, made unique."""
    label, n = path.stem, 2
    while label in taken:
        label, n = f"{path.stem}-{n}", n + 1
    return label


__all__ = ["FIXED", "Backtest", "alternative_label", "comparison", "parse_sweep", "run_backtest", "with_delta_band",
           "with_setting"]
