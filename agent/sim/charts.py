"""The report directory of a backtest or a replay: PNG charts (matplotlib, imported only here) and an `index.html`
with the figures side by side, the market's sources and the charts."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.policy import Policy
from agent.sim.records import RunResult

CHARTS = ("price.png", "health_factor.png", "delta.png", "cost.png", "value.png", "prediction.png")
FRONTIER = "frontier.png"


def write_report(directory: Path, title: str, runs: Mapping[str, RunResult], reference: Policy | None,
                 figures: Mapping[str, Mapping[str, Any]], notes: Sequence[str] = (),
                 frontier: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write the charts (and the cost/tracking-error frontier of `frontier`'s runs, when given) and `index.html`
    into `directory`; return the index's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    first = next(iter(runs.values()))
    times = (first.unix + 3600).astype("datetime64[s]")

    def new(ylabel: str, xlabel: str = "") -> tuple[Any, Any]:
        fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
        ax.set_ylabel(ylabel)
        if xlabel:
            ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        return fig, ax

    def save(fig: Any, name: str, dates: bool = True) -> None:
        if dates:
            fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(directory / name)
        plt.close(fig)

    fig, ax = new("underlying USD")
    ax.plot(times, first.close, color="black", linewidth=1, label="close")
    markers = iter(("^", "v", "s", "D", "o", "P", "X", "*"))
    for label, run in runs.items():
        marker = next(markers, "o")
        if run.actions:
            stamps = np.array([a.unix for a in run.actions], dtype="datetime64[s]")
            ax.scatter(stamps, [a.price_usd for a in run.actions], marker=marker, s=18, label=f"{label} actions")
        if run.liquidations:
            stamps = np.array([x.unix for x in run.liquidations], dtype="datetime64[s]")
            ax.scatter(stamps, [x.price_usd for x in run.liquidations], marker="x", s=60, color="red",
                       label=f"{label} liquidations")
    ax.legend(fontsize=7)
    save(fig, "price.png")

    fig, ax = new("health factor")
    for label, run in runs.items():
        ax.plot(times, np.minimum(run.health_factor_bar_min, 10), linewidth=1, label=label)
    band = reference.bands.health_factor if reference is not None else None
    if band is not None:
        ax.axhspan(band.min, band.max, color="green", alpha=0.08, label="band")
        ax.axhline(band.target, color="green", linestyle="--", linewidth=0.8)
    ax.axhline(1.0, color="red", linewidth=0.8, label="liquidation")
    ax.set_ylim(0.5, max(4.0, band.max + 0.5 if band is not None else 4.0))
    ax.legend(fontsize=7)
    save(fig, "health_factor.png")

    fig, ax = new("delta USD")
    for label, run in runs.items():
        ax.plot(times, run.delta_usd, linewidth=1, label=label)
    delta_band = reference.bands.delta_usd if reference is not None else None
    if delta_band is not None:
        ax.axhspan(delta_band.min, delta_band.max, color="green", alpha=0.08, label="band")
    ax.legend(fontsize=7)
    save(fig, "delta.png")

    fig, ax = new("cumulative hedging cost USD")
    for label, run in runs.items():
        ax.plot(times, np.cumsum(run.cost_usd), linewidth=1, label=label)
    ax.legend(fontsize=7)
    save(fig, "cost.png")

    fig, ax = new("portfolio value USD")
    for label, run in runs.items():
        ax.plot(times, run.value_usd, linewidth=1, label=label)
    ax.legend(fontsize=7)
    save(fig, "value.png")

    fig, ax = new("realised cost USD", "predicted cost USD")
    top = 1.0
    for label, run in runs.items():
        if run.actions:
            predicted = [a.predicted_usd for a in run.actions]
            realised = [a.cost_usd for a in run.actions]
            top = max(top, *predicted, *realised)
            ax.scatter(predicted, realised, s=12, label=label)
    ax.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle="--", label="realised = predicted")
    ax.legend(fontsize=7)
    save(fig, "prediction.png", dates=False)

    charts = list(CHARTS)
    if frontier:
        fig, ax = new("tracking error USD/yr", "hedging cost USD")
        for label, f in frontier.items():
            ax.scatter([f["hedge_cost_usd"]], [f["tracking_error_usd"]], s=30)
            ax.annotate(label, (f["hedge_cost_usd"], f["tracking_error_usd"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        save(fig, FRONTIER, dates=False)
        charts.append(FRONTIER)

    index = directory / "index.html"
    index.write_text(_html(title, figures, notes, charts), encoding="utf-8")
    return index


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
