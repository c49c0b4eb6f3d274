"""`ballast backtest`: one starting portfolio along one price path, managed by the policy, unmanaged, and under
each alternative policy, side by side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import UserInputError
from agent.policy import GreekBand, Policy
from agent.sim.engine import RunResult, Simulation
from agent.sim.market import PricePath
from agent.sim.portfolio import PortfolioSpec
from agent.sim.report import summaries

VOL_NOTE = "options marked with realised vol (EWMA of hourly log returns, 72 h half-life), not DVOL"


@dataclass
class Backtest:
    """The runs of one backtest, by label: "managed", "unmanaged", then the alternatives."""

    spec: PortfolioSpec
    path: PricePath
    policy: Policy
    runs: dict[str, RunResult]

    def figures(self) -> dict[str, dict[str, Any]]:
        """Return each run's summary (`agent.sim.report.summary`)."""
        return summaries(self.runs, self.policy)

    def to_json(self) -> dict[str, Any]:
        """Return the backtest as one JSON-ready object: `managed`, `unmanaged`, `alternatives` and the window."""
        figures = self.figures()
        first, last = self.path.window()
        return {
            "ok": True,
            "portfolio": self.spec.name,
            "policy": self.policy.portfolio.name,
            "prices": self.path.source,
            "window": {"from": first, "to": last, "bars": len(self.path),
                       "first_close_usd": float(self.path.close[0]), "last_close_usd": float(self.path.close[-1])},
            "vol": VOL_NOTE,
            "managed": figures["managed"],
            "unmanaged": figures["unmanaged"],
            "alternatives": {k: v for k, v in figures.items() if k not in ("managed", "unmanaged")},
        }

    def title(self) -> str:
        first, last = self.path.window()
        return f"{self.spec.name} · {first} → {last} · {len(self.path)} hourly bars"

    def notes(self) -> list[str]:
        return [f"prices: {self.path.source}", VOL_NOTE,
                "keeper acts at each bar's close; liquidations are checked at the bar's low and high first"]


def with_delta_band(policy: Policy, half_width_usd: float) -> Policy:
    """Return `policy` with its delta band set to target ± `half_width_usd` (target 0 when it has no delta band)."""
    if half_width_usd <= 0:
        raise UserInputError(f"--alt-delta-band: expected a positive half-width in USD (got {half_width_usd:g})")
    current = policy.bands.main_delta_band(policy.portfolio.underlying)
    target = current.target if current is not None else 0.0
    band = GreekBand(min=target - half_width_usd, target=target, max=target + half_width_usd)
    return policy.model_copy(update={"bands": policy.bands.model_copy(update={"delta_usd": band})})


def run_backtest(spec: PortfolioSpec, path: PricePath, policy: Policy,
                 alternatives: dict[str, Policy] | None = None) -> Backtest:
    """Return the portfolio's runs along `path`: managed by `policy`, unmanaged, and under each alternative."""
    sim = Simulation(spec, path)
    runs = {"managed": sim.run(policy, "managed"), "unmanaged": sim.run(None, "unmanaged")}
    for label, alternative in (alternatives or {}).items():
        runs[label] = sim.run(alternative, label)
    return Backtest(spec, path, policy, runs)


def alternative_label(path: Path, taken: set[str]) -> str:
    """Return a label for an alternative policy file: its stem, made unique."""
    label, n = path.stem, 2
    while label in taken:
        label, n = f"{path.stem}-{n}", n + 1
    return label


__all__ = ["Backtest", "alternative_label", "run_backtest", "with_delta_band"]
