"""The report directory of a backtest or a replay: PNG charts (matplotlib, imported only here) and an `index.html`
with the figures side by side, the market's sources and the charts."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.policy import GreekBand, HealthFactorBand, Policy
from agent.sim.backtest import FIXED
from agent.sim.records import RunResult

CHARTS = ("price.png", "health_factor.png", "delta.png", "cost.png", "value.png", "prediction.png")
FRONTIER = "frontier.png"


def write_report(directory: Path, title: str, runs: Mapping[str, RunResult], reference: Policy | None,
                 figures: Mapping[str, Mapping[str, Any]], notes: Sequence[str] = (),
                 frontier: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write the charts (and the cost/tracking-error frontier of `frontier`'s runs, when given) and `index.html`
    into `directory`; return the index's path."""
    directory.mkdir(parents=True, exist_ok=True)
    charts = _Charts(directory, runs)
    charts.price()
    charts.health_factor(reference.bands.health_factor if reference is not None else None)
    charts.delta(reference.bands.main_delta_band(reference.portfolio.underlying) if reference is not None else None)
    charts.finish(*charts.lines("cumulative hedging cost USD", lambda run: np.cumsum(run.cost_usd)), "cost.png")
    charts.finish(*charts.lines("portfolio value USD", lambda run: run.value_usd), "value.png")
    charts.prediction()
    names = list(CHARTS)
    if frontier:
        charts.frontier(frontier)
        names.append(FRONTIER)
    index = directory / "index.html"
    index.write_text(_html(title, figures, notes, names), encoding="utf-8")
    return index


class _Charts:
    """The runs' charts, one PNG each in `directory`, over the bars of the first run."""

    def __init__(self, directory: Path, runs: Mapping[str, RunResult]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt, self.directory, self.runs = plt, directory, runs
        self.first = next(iter(runs.values()))
        self.times = (self.first.unix + 3600).astype("datetime64[s]")

    def new(self, ylabel: str, xlabel: str = "") -> tuple[Any, Any]:
        fig, ax = self.plt.subplots(figsize=(10, 4), dpi=100)
        ax.set_ylabel(ylabel)
        if xlabel:
            ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        return fig, ax

    def lines(self, ylabel: str, values: Callable[[RunResult], Any]) -> tuple[Any, Any]:
        """A chart of one line per run over time."""
        fig, ax = self.new(ylabel)
        for label, run in self.runs.items():
            ax.plot(self.times, values(run), linewidth=1, label=label)
        return fig, ax

    def finish(self, fig: Any, ax: Any, name: str, dates: bool = True) -> None:
        ax.legend(fontsize=7)
        if dates:
            fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(self.directory / name)
        self.plt.close(fig)

    def price(self) -> None:
        """The close, with each run's actions and liquidations marked at their prices."""
        fig, ax = self.new("underlying USD")
        ax.plot(self.times, self.first.close, color="black", linewidth=1, label="close")
        markers = iter(("^", "v", "s", "D", "o", "P", "X", "*"))
        for label, run in self.runs.items():
            marker = next(markers, "o")
            if run.actions:
                stamps = np.array([a.unix for a in run.actions], dtype="datetime64[s]")
                ax.scatter(stamps, [a.price_usd for a in run.actions], marker=marker, s=18, label=f"{label} actions")
            if run.liquidations:
                stamps = np.array([x.unix for x in run.liquidations], dtype="datetime64[s]")
                ax.scatter(stamps, [x.price_usd for x in run.liquidations], marker="x", s=60, color="red",
                           label=f"{label} liquidations")
        self.finish(fig, ax, "price.png")

    def health_factor(self, band: HealthFactorBand | None) -> None:
        fig, ax = self.lines("health factor", lambda run: np.minimum(run.health_factor_bar_min, 10))
        if band is not None:
            ax.axhspan(band.min, band.max, color="green", alpha=0.08, label="band")
            ax.axhline(band.target, color="green", linestyle="--", linewidth=0.8)
        ax.axhline(1.0, color="red", linewidth=0.8, label="liquidation")
        ax.set_ylim(0.5, max(4.0, band.max + 0.5 if band is not None else 4.0))
        self.finish(fig, ax, "health_factor.png")

    def delta(self, band: GreekBand | None) -> None:
        fig, ax = self.lines("delta USD", lambda run: run.delta_usd)
        if band is not None:
            ax.axhspan(band.min, band.max, color="green", alpha=0.08, label="band")
        self.finish(fig, ax, "delta.png")

    def prediction(self) -> None:
        """Each action's realised cost against its predicted cost."""
        fig, ax = self.new("realised cost USD", "predicted cost USD")
        top = 1.0
        for label, run in self.runs.items():
            if run.actions:
                predicted = [a.predicted_usd for a in run.actions]
                realised = [a.cost_usd for a in run.actions]
                top = max(top, *predicted, *realised)
                ax.scatter(predicted, realised, s=12, label=label)
        ax.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle="--", label="realised = predicted")
        self.finish(fig, ax, "prediction.png", dates=False)

    def frontier(self, frontier: Mapping[str, Mapping[str, Any]]) -> None:
        """Hedging cost against tracking error: the sweep's variants as a line, the fixed runs as points."""
        fig, ax = self.new("tracking error USD/yr (log)", "hedging cost USD")
        variants = [(label, f) for label, f in frontier.items() if label not in FIXED]
        if variants:
            ax.plot([f["hedge_cost_usd"] for _l, f in variants], [f["tracking_error_usd"] for _l, f in variants],
                    marker="o", linewidth=1, color="grey", label="sweep")
        for label, f in frontier.items():
            point = (f["hedge_cost_usd"], max(f["tracking_error_usd"], 1.0))
            if label in FIXED:
                ax.scatter([point[0]], [point[1]], s=45, marker="D", label=label)
            ax.annotate(label.rsplit("=", 1)[-1] if label not in FIXED else label, point, fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_yscale("log")
        self.finish(fig, ax, FRONTIER, dates=False)


def _html(title: str, figures: Mapping[str, Mapping[str, Any]], notes: Sequence[str], charts: Sequence[str]) -> str:
    sample = next(iter(figures.values()))
    keys = [k for k in sample if not isinstance(sample[k], dict | list)]
    head = "".join(f"<th>{html.escape(label)}</th>" for label in figures)
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td>" + "".join(f"<td>{html.escape(str(f[key]))}</td>" for f in figures.values())
        + "</tr>" for key in keys)
    for group in ("liquidations_by_venue", "hedge_cost", "options"):
        for name in sample[group]:
            rows += f"<tr><td>{html.escape(group)}.{html.escape(name)}</td>" + "".join(
                f"<td>{html.escape(str(f[group][name]))}</td>" for f in figures.values()) + "</tr>"
    for name in ("predicted_usd", "realised_usd", "error_pct"):
        rows += f"<tr><td>cost_prediction.{name}</td>" + "".join(
            f"<td>{html.escape(str(f['cost_prediction'][name]))}</td>" for f in figures.values()) + "</tr>"
    bands = sorted({b for f in figures.values() for b in f["time_in_band"]})
    rows += "".join(
        f"<tr><td>time in {b} band</td>" + "".join(f"<td>{f['time_in_band'].get(b, 0):.1%}</td>"
                                                  for f in figures.values()) + "</tr>" for b in bands)
    images = "".join(f'<p><img src="{name}" alt="{name}"></p>' for name in charts)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}"
            "td:first-child{text-align:left}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><ul>{notes_html}</ul><table><tr><th></th>{head}</tr>{rows}</table>"
            f"{images}</body></html>\n")
