"""What a backtest or a replay found, per run: liquidations, the lowest health factor, time inside each band, hedging
cost (pool fees, price impact, gas), turnover, P&L and its tracking error against the target, actions. As JSON-ready
data, a rich table, and PNG charts with an `index.html` (matplotlib, imported only when charts are drawn).

Tracking error: the annualised standard deviation (√8,760 hourly bars) of each bar's P&L minus the P&L a book held
exactly at the target delta would have made (target delta × the bar's return). The target delta is the policy's
delta band target, or, without a delta band, the portfolio's delta at the start (the exposure it was built with).
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from agent.planner.bands import within
from agent.policy import Policy
from agent.sim.engine import RunResult
from agent.sim.market import iso

HOURS_PER_YEAR = 8_760
CHARTS = ("price.png", "health_factor.png", "delta.png", "cost.png")


def target_delta_usd(run: RunResult, policy: Policy | None) -> float:
    """Return the delta (USD) the run is measured against: the delta band's target, else the starting delta."""
    band = policy.bands.main_delta_band(policy.portfolio.underlying) if policy is not None else None
    return band.target if band is not None else run.start_delta_usd


def time_in_band(run: RunResult, policy: Policy | None) -> dict[str, float]:
    """Return, per band of `policy`, the share of bars (0..1) whose closing value lies inside [min, max]."""
    if policy is None:
        return {}
    series = {"health_factor": run.health_factor, "delta_usd": run.delta_usd, "gamma_usd_1pct": run.gamma_usd_1pct,
              "vega_usd_1vol": run.vega_usd_1vol}
    shares = {}
    for name in policy.bands.names():
        band = getattr(policy.bands, name)
        values = series[name]
        inside = [within(float(v), band.min, band.max) or (name == "health_factor" and v > band.max) for v in values]
        shares[name] = float(np.mean(inside)) if len(inside) else 0.0
    return shares


def tracking_error_usd(run: RunResult, policy: Policy | None) -> float:
    """Return the annualised tracking error of the run's P&L against the target delta's, in USD."""
    values = np.concatenate(([run.start_value_usd], run.value_usd))
    closes = np.concatenate(([run.start_price_usd], run.close))
    pnl = np.diff(values)
    returns = np.diff(closes) / closes[:-1]
    deviation = pnl - target_delta_usd(run, policy) * returns
    return float(np.std(deviation) * math.sqrt(HOURS_PER_YEAR)) if len(deviation) > 1 else 0.0


def summary(run: RunResult, policy: Policy | None) -> dict[str, Any]:
    """Return the run's figures as JSON-ready data; `policy` sets the bands measured (the managed policy's for the
    unmanaged run) and the target."""
    fees = sum(a.fee_usd for a in run.actions)
    slippage = sum(a.slippage_usd for a in run.actions)
    gas = sum(a.gas_usd for a in run.actions)
    cost = fees + slippage + gas
    lowest = float(np.min(run.health_factor_bar_min)) if len(run.health_factor_bar_min) else math.inf
    end_value = float(run.value_usd[-1])
    return {
        "liquidations": len(run.liquidations),
        "liquidations_by_venue": dict(sorted(Counter(x.venue for x in run.liquidations).items())),
        "liquidation_loss_usd": round(sum(x.loss_usd for x in run.liquidations), 2),
        "liquidated_at": [{"time": iso(x.unix), "price_usd": round(x.price_usd, 2), "venue": x.venue,
                           "debt_repaid_usd": round(x.debt_repaid_usd, 2)} for x in run.liquidations],
        "min_health_factor": round(lowest, 4) if math.isfinite(lowest) else None,
        "time_in_band": {k: round(v, 4) for k, v in time_in_band(run, policy).items()},
        "hedge_cost_usd": round(cost, 2),
        "hedge_cost": {"fees_usd": round(fees, 2), "slippage_usd": round(slippage, 2), "gas_usd": round(gas, 2)},
        "turnover_usd": round(sum(a.notional_usd for a in run.actions), 2),
        "actions": len(run.actions),
        "actions_by_kind": dict(sorted(Counter(a.kind for a in run.actions).items())),
        "cost_per_action_usd": round(cost / len(run.actions), 2) if run.actions else 0.0,
        "plans": run.plans,
        "refused_plans": len(run.refusals),
        "start_value_usd": round(run.start_value_usd, 2),
        "end_value_usd": round(end_value, 2),
        "pnl_usd": round(end_value - run.start_value_usd, 2),
        "target_delta_usd": round(target_delta_usd(run, policy), 2),
        "tracking_error_usd": round(tracking_error_usd(run, policy), 2),
    }


def summaries(runs: Mapping[str, RunResult], reference: Policy | None) -> dict[str, dict[str, Any]]:
    """Return `summary` of each run, each measured against its own policy (the unmanaged one against `reference`)."""
    return {label: summary(run, run.policy or reference) for label, run in runs.items()}


def table(title: str, figures: Mapping[str, Mapping[str, Any]]) -> Table:
    """Return the runs side by side, one column each."""
    out = Table(title=title)
    out.add_column("")
    for label in figures:
        out.add_column(label, justify="right")
    bands = sorted({b for f in figures.values() for b in f["time_in_band"]})
    rows: list[tuple[str, Any]] = [
        ("liquidations", lambda f: str(f["liquidations"])),
        ("liquidation loss USD", lambda f: f"{f['liquidation_loss_usd']:,.0f}"),
        ("min health factor", lambda f: "∞" if f["min_health_factor"] is None else f"{f['min_health_factor']:.3f}"),
        *((f"time in {b} band", lambda f, b=b: f"{f['time_in_band'].get(b, 0.0):.1%}") for b in bands),
        ("actions", lambda f: str(f["actions"])),
        ("hedging cost USD", lambda f: f"{f['hedge_cost_usd']:,.2f}"),
        ("  pool fees USD", lambda f: f"{f['hedge_cost']['fees_usd']:,.2f}"),
        ("  price impact USD", lambda f: f"{f['hedge_cost']['slippage_usd']:,.2f}"),
        ("  gas USD", lambda f: f"{f['hedge_cost']['gas_usd']:,.2f}"),
        ("cost per action USD", lambda f: f"{f['cost_per_action_usd']:,.2f}"),
        ("turnover USD", lambda f: f"{f['turnover_usd']:,.0f}"),
        ("refused plans", lambda f: str(f["refused_plans"])),
        ("P&L USD", lambda f: f"{f['pnl_usd']:,.0f}"),
        ("tracking error USD/yr", lambda f: f"{f['tracking_error_usd']:,.0f}"),
    ]
    for name, cell in rows:
        out.add_row(name, *(cell(f) for f in figures.values()))
    return out


def write_report(directory: Path, title: str, runs: Mapping[str, RunResult], reference: Policy | None,
                 figures: Mapping[str, Mapping[str, Any]], notes: Sequence[str] = ()) -> Path:
    """Write the four charts and `index.html` (the figures table, the charts, `notes`) into `directory`; return
    the index's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    first = next(iter(runs.values()))
    times = (first.unix + 3600).astype("datetime64[s]")

    def new(ylabel: str) -> tuple[Any, Any]:
        fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        return fig, ax

    fig, ax = new("underlying USD")
    ax.plot(times, first.close, color="black", linewidth=1, label="close")
    markers = iter(("^", "v", "s", "D", "o", "P"))
    for label, run in runs.items():
        marker = next(markers, "o")
        if run.actions:
            stamps = np.array([a.unix for a in run.actions], dtype="datetime64[s]")
            ax.scatter(stamps, [a.price_usd for a in run.actions], marker=marker, s=25, label=f"{label} actions")
        if run.liquidations:
            stamps = np.array([x.unix for x in run.liquidations], dtype="datetime64[s]")
            ax.scatter(stamps, [x.price_usd for x in run.liquidations], marker="x", s=60, color="red",
                       label=f"{label} liquidations")
    ax.legend(fontsize=8)
    _save(fig, directory / "price.png", plt)

    fig, ax = new("health factor")
    for label, run in runs.items():
        ax.plot(times, np.minimum(run.health_factor_bar_min, 10), linewidth=1, label=label)
    band = reference.bands.health_factor if reference is not None else None
    if band is not None:
        ax.axhspan(band.min, band.max, color="green", alpha=0.08, label="band")
        ax.axhline(band.target, color="green", linestyle="--", linewidth=0.8)
    ax.axhline(1.0, color="red", linewidth=0.8, label="liquidation")
    ax.set_ylim(0.5, max(4.0, band.max + 0.5 if band is not None else 4.0))
    ax.legend(fontsize=8)
    _save(fig, directory / "health_factor.png", plt)

    fig, ax = new("delta USD")
    for label, run in runs.items():
        ax.plot(times, run.delta_usd, linewidth=1, label=label)
    delta_band = reference.bands.main_delta_band(reference.portfolio.underlying) if reference is not None else None
    if delta_band is not None:
        ax.axhspan(delta_band.min, delta_band.max, color="green", alpha=0.08, label="band")
    ax.legend(fontsize=8)
    _save(fig, directory / "delta.png", plt)

    fig, ax = new("cumulative hedging cost USD")
    for label, run in runs.items():
        ax.plot(times, np.cumsum(run.cost_usd), linewidth=1, label=label)
    ax.legend(fontsize=8)
    _save(fig, directory / "cost.png", plt)

    index = directory / "index.html"
    index.write_text(_html(title, figures, notes), encoding="utf-8")
    return index


def _save(fig: Any, path: Path, plt: Any) -> None:
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _html(title: str, figures: Mapping[str, Mapping[str, Any]], notes: Sequence[str]) -> str:
    keys = [k for k in next(iter(figures.values())) if not isinstance(next(iter(figures.values()))[k], dict | list)]
    head = "".join(f"<th>{html.escape(label)}</th>" for label in figures)
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td>" + "".join(f"<td>{html.escape(str(f[key]))}</td>" for f in figures.values())
        + "</tr>" for key in keys)
    bands = sorted({b for f in figures.values() for b in f["time_in_band"]})
    rows += "".join(
        f"<tr><td>time in {b} band</td>" + "".join(f"<td>{f['time_in_band'].get(b, 0):.1%}</td>"
                                                  for f in figures.values()) + "</tr>" for b in bands)
    images = "".join(f'<p><img src="{name}" alt="{name}"></p>' for name in CHARTS)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}"
            "td:first-child{text-align:left}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><ul>{notes_html}</ul><table><tr><th></th>{head}</tr>{rows}</table>"
            f"{images}</body></html>\n")
