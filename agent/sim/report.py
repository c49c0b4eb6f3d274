"""What a backtest or a replay found, per run: liquidations by venue, the lowest health factor, time inside each
band, hedging cost (pool and venue fees, price impact, gas, flash-loan premiums, the options' theta) against the
planner's prediction of its trading part, option premium paid, turnover, P&L, maximum drawdown, a risk-adjusted
return, tracking error against the target, actions. As JSON-ready data and a rich table (`agent.sim.charts` draws
them).

Tracking error: the annualised standard deviation (√8,760 hourly bars) of each bar's P&L minus the P&L a book held
exactly at the target delta would have made (target delta × the bar's return). The target delta is the policy's
delta band target, or, without a delta band, the portfolio's delta at the start (the exposure it was built with).
Its two parts: the delta held at the last close away from the target × the bar's return (what a keeper that acts
at the close controls), and the rest, earned within the bar (an LP's or option's gamma, carry, costs), which no
hedge at the close removes.
Risk-adjusted return: the annualised Sharpe ratio (√365, rate 0) of daily P&L over the starting value.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
from rich.table import Table

from agent.planner.bands import within
from agent.policy import Policy
from agent.sim.market import iso
from agent.sim.records import RunResult

HOURS_PER_YEAR = 8_760
VENUES = ("aave_v3", "perp", "options")


def target_delta_usd(run: RunResult, policy: Policy | None) -> float:
    """Return the delta (USD) the run is measured against: the delta band's target, else the starting delta."""
    band = policy.bands.main_delta_band(policy.portfolio.underlying) if policy is not None else None
    return band.target if band is not None else run.start_delta_usd


def time_in_band(run: RunResult, policy: Policy | None) -> dict[str, float]:
    """Return, per band of `policy`, the share of bars (0..1) whose closing value lies inside [min, max] (the stress
    band is not measured: its scenarios are revalued only on the bars the keeper plans)."""
    if policy is None:
        return {}
    series = {"health_factor": run.health_factor, "delta_usd": run.delta_usd, "gamma_usd_1pct": run.gamma_usd_1pct,
              "vega_usd_1vol": run.vega_usd_1vol}
    shares = {}
    for name in (n for n in policy.bands.names() if n in series):
        band = getattr(policy.bands, name)
        values = series[name]
        inside = [within(float(v), band.min, band.max) or (name == "health_factor" and v > band.max) for v in values]
        shares[name] = float(np.mean(inside)) if len(inside) else 0.0
    return shares


def _values(run: RunResult) -> np.ndarray:
    return np.concatenate(([run.start_value_usd], run.value_usd))


def _deviations(run: RunResult, policy: Policy | None) -> tuple[np.ndarray, np.ndarray]:
    """Return each bar's deviation from the target book's P&L, and its part from the delta held since the last
    close (that delta less the target, times the bar's return)."""
    closes = np.concatenate(([run.start_price_usd], run.close))
    returns = np.diff(closes) / closes[:-1]
    target = target_delta_usd(run, policy)
    held = np.concatenate(([run.start_delta_usd], run.delta_usd[:-1]))
    return np.diff(_values(run)) - target * returns, (held - target) * returns


def _annualised(deviation: np.ndarray) -> float:
    return float(np.std(deviation) * math.sqrt(HOURS_PER_YEAR)) if len(deviation) > 1 else 0.0


def tracking_error_usd(run: RunResult, policy: Policy | None) -> float:
    """Return the annualised tracking error of the run's P&L against the target delta's, in USD."""
    return _annualised(_deviations(run, policy)[0])


def tracking_error_parts_usd(run: RunResult, policy: Policy | None) -> tuple[float, float]:
    """Return the tracking error's two parts (annualised, USD): from the delta held at each close away from the
    target (what hedging at the close controls), and the rest, within the bar (gamma, carry, costs)."""
    deviation, from_delta = _deviations(run, policy)
    return _annualised(from_delta), _annualised(deviation - from_delta)


def max_drawdown_usd(run: RunResult) -> float:
    """Return the largest fall of the run's value from an earlier peak, in USD (≥ 0)."""
    values = _values(run)
    return float(np.max(np.maximum.accumulate(values) - values))


def sharpe_daily(run: RunResult) -> float | None:
    """Return the annualised Sharpe ratio of daily P&L over the starting value (None: under two days, or flat)."""
    values = _values(run)
    daily = values[::24]
    if len(daily) < 3 or run.start_value_usd <= 0:
        return None
    returns = np.diff(daily) / run.start_value_usd
    spread = float(np.std(returns))
    return round(float(np.mean(returns)) / spread * math.sqrt(365), 3) if spread > 0 else None


def prediction(run: RunResult) -> dict[str, Any]:
    """Return the planner's predicted cost against the realised one: in total, by action kind, and per action."""
    by_kind: dict[str, dict[str, float]] = {}
    for a in run.actions:
        entry = by_kind.setdefault(a.kind, {"predicted_usd": 0.0, "realised_usd": 0.0})
        entry["predicted_usd"] += a.predicted_usd
        entry["realised_usd"] += a.cost_usd
    predicted = sum(a.predicted_usd for a in run.actions)
    realised = sum(a.cost_usd for a in run.actions)
    return {
        "predicted_usd": round(predicted, 2),
        "realised_usd": round(realised, 2),
        "error_usd": round(realised - predicted, 2),
        "error_pct": round((realised / predicted - 1) * 100, 2) if predicted > 0 else None,
        "by_kind": {k: {n: round(v, 2) for n, v in e.items()} for k, e in sorted(by_kind.items())},
        "per_action": [{"time": iso(a.unix), "kind": a.kind, "asset": a.asset, "notional_usd": round(a.notional_usd, 2),
                        "predicted_usd": round(a.predicted_usd, 2), "realised_usd": round(a.cost_usd, 2),
                        "reverted": a.reverted} for a in run.actions],
    }


def summary(run: RunResult, policy: Policy | None) -> dict[str, Any]:
    """Return the run's figures as JSON-ready data; `policy` sets the bands measured and the target."""
    fees = sum(a.fee_usd for a in run.actions)
    slippage = sum(a.slippage_usd for a in run.actions)
    gas = sum(a.gas_usd for a in run.actions)
    premiums = sum(a.premium_usd for a in run.actions)
    cost = fees + slippage + gas + premiums + run.theta_usd
    lowest = float(np.min(run.health_factor_bar_min)) if len(run.health_factor_bar_min) else math.inf
    end_value = float(run.value_usd[-1])
    venues = Counter(x.venue for x in run.liquidations)
    return {
        "liquidations": len(run.liquidations),
        "liquidations_by_venue": {v: venues.get(v, 0) for v in VENUES},
        "liquidation_loss_usd": round(sum(x.loss_usd for x in run.liquidations), 2),
        "liquidated_at": [{"time": iso(x.unix), "price_usd": round(x.price_usd, 2), "venue": x.venue,
                           "debt_repaid_usd": round(x.debt_repaid_usd, 2)} for x in run.liquidations],
        "min_health_factor": round(lowest, 4) if math.isfinite(lowest) else None,
        "time_in_band": {k: round(v, 4) for k, v in time_in_band(run, policy).items()},
        "hedge_cost_usd": round(cost, 2),
        "hedge_cost": {"fees_usd": round(fees, 2), "slippage_usd": round(slippage, 2), "gas_usd": round(gas, 2),
                       "flash_premium_usd": round(premiums, 2), "option_theta_usd": round(run.theta_usd, 2)},
        "options": {"premium_paid_usd": round(run.premium_paid_usd, 2), "theta_usd": round(run.theta_usd, 2)},
        "cost_prediction": prediction(run),
        "turnover_usd": round(sum(a.notional_usd for a in run.actions), 2),
        "actions": len(run.actions),
        "actions_by_kind": dict(sorted(Counter(a.kind for a in run.actions).items())),
        "reverted_actions": sum(a.reverted for a in run.actions),
        "cost_per_action_usd": round(cost / len(run.actions), 2) if run.actions else 0.0,
        "plans": run.plans,
        "refused_plans": len(run.refusals),
        "start_value_usd": round(run.start_value_usd, 2),
        "end_value_usd": round(end_value, 2),
        "pnl_usd": round(end_value - run.start_value_usd, 2),
        "max_drawdown_usd": round(max_drawdown_usd(run), 2),
        "sharpe_daily": sharpe_daily(run),
        "target_delta_usd": round(target_delta_usd(run, policy), 2),
        "tracking_error_usd": round(tracking_error_usd(run, policy), 2),
        "tracking_error_parts_usd": dict(zip(("delta", "in_bar"),
                                             (round(x, 2) for x in tracking_error_parts_usd(run, policy)),
                                             strict=True)),
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
        *((f"  {v}", lambda f, v=v: str(f["liquidations_by_venue"][v])) for v in VENUES),
        ("liquidation loss USD", lambda f: f"{f['liquidation_loss_usd']:,.0f}"),
        ("min health factor", lambda f: "∞" if f["min_health_factor"] is None else f"{f['min_health_factor']:.3f}"),
        *((f"time in {b} band", lambda f, b=b: f"{f['time_in_band'].get(b, 0.0):.1%}") for b in bands),
        ("actions", lambda f: str(f["actions"])),
        ("  reverted", lambda f: str(f["reverted_actions"])),
        ("hedging cost USD", lambda f: f"{f['hedge_cost_usd']:,.2f}"),
        ("  pool and venue fees USD", lambda f: f"{f['hedge_cost']['fees_usd']:,.2f}"),
        ("  price impact USD", lambda f: f"{f['hedge_cost']['slippage_usd']:,.2f}"),
        ("  gas USD", lambda f: f"{f['hedge_cost']['gas_usd']:,.2f}"),
        ("  flash-loan premiums USD", lambda f: f"{f['hedge_cost']['flash_premium_usd']:,.2f}"),
        ("  option theta USD", lambda f: f"{f['hedge_cost']['option_theta_usd']:,.2f}"),
        ("predicted cost USD", lambda f: f"{f['cost_prediction']['predicted_usd']:,.2f}"),
        ("prediction error", lambda f: "—" if f["cost_prediction"]["error_pct"] is None
         else f"{f['cost_prediction']['error_pct']:+.1f}%"),
        ("option premium paid USD", lambda f: f"{f['options']['premium_paid_usd']:,.0f}"),
        ("turnover USD", lambda f: f"{f['turnover_usd']:,.0f}"),
        ("refused plans", lambda f: str(f["refused_plans"])),
        ("P&L USD", lambda f: f"{f['pnl_usd']:,.0f}"),
        ("max drawdown USD", lambda f: f"{f['max_drawdown_usd']:,.0f}"),
        ("Sharpe (daily, annualised)", lambda f: "—" if f["sharpe_daily"] is None else f"{f['sharpe_daily']:.2f}"),
        ("tracking error USD/yr", lambda f: f"{f['tracking_error_usd']:,.0f}"),
        ("  from the delta held", lambda f: f"{f['tracking_error_parts_usd']['delta']:,.0f}"),
        ("  within the bar", lambda f: f"{f['tracking_error_parts_usd']['in_bar']:,.0f}"),
    ]
    for name, cell in rows:
        out.add_row(name, *(cell(f) for f in figures.values()))
    return out
