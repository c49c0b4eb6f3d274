"""Shape gamma and vega with options: the cheapest purchases of listed series (and sales of held ones) that bring
the breached Greek bands back to target and keep the others inside, a linear programme (scipy's HiGHS).

Variables are the units bought b_i ≥ 0 and sold s_i ∈ [0, held_i] of each live series, with per unit its desk gamma
(gamma·S·0.01·S), vega (vega/100) and delta (delta·S) from `black_scholes` at the venue's vol and rate:

minimise   Σ fee_i·mark_i·(b_i + s_i) + P · Σ slack
subject to G + Σ g_i·(b_i − s_i) + e⁺ − e⁻ = target_G          for each breached band (gamma, vega)
           min_G ≤ G + Σ g_i·(b_i − s_i) + e⁺ − e⁻ ≤ max_G    for each other banded Greek
           Σ mark_i·(1 + fee_i)·b_i − Σ mark_i·(1 − fee_i)·s_i ≤ idle quote balance

The options' delta is left to the delta band when there is one (the planner hedges delta after this step);
without one it is offset at once with the perp, when the policy allows it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linprog

from agent.model import Action, OptionSeries
from agent.planner.book import Book, Steps
from agent.planner.costs import CostModel, usd
from agent.planner.hedge import perp_step
from agent.planner.hedge_candidates import perp_candidate
from agent.planner.outcome import Outcome
from agent.policy import Policy
from agent.risk.greeks import black_scholes
from agent.risk.portfolio import years_to_expiry

OPTION_BANDS = ("gamma_usd_1pct", "vega_usd_1vol")
MIN_LIFE_S = 86_400  # a series this close to expiry is not traded: its gamma is too unstable to aim with
SLACK_PENALTY = 1.0  # per USD of a Greek left off target: above any option's cost per USD of gamma or vega
MIN_UNITS = 1e-3  # smaller trades are dust
_TIE_BREAK = 1e-9


def plan_options(book: Book, costs: CostModel, policy: Policy, breached: set[str], reason: str) -> Outcome:
    """Return the option trades that bring the `breached` Greek bands (of OPTION_BANDS) back to their targets and
    keep the policy's other Greek bands inside, at the least fee; `limited_by` is "no_instrument" without options
    to trade, "no_funds" when the idle quote balance cannot pay for them."""
    if "options" not in policy.hedging.instruments:
        return Outcome((), book, "no_instrument")
    u = book.underlying
    spot = costs.prices_usd.get(u)
    live = [s for s in costs.option_series if s.chain == book.chain and s.underlying == u and s.mark_price_usd > 0
            and s.expiry_ts - costs.now_ts >= MIN_LIFE_S]
    if spot is None or not live:
        return Outcome((), book, "no_instrument")
    report = book.report(costs.prices_usd, costs.now_ts)
    bands = [(name, getattr(policy.bands, name)) for name in OPTION_BANDS if getattr(policy.bands, name) is not None]
    per_unit = _greeks_per_unit(live, spot, costs.now_ts)
    held = np.array([(position.quantity if (position := book.option(s.venue, s.series_id)) else 0.0) for s in live])
    n, k = len(live), len(bands)
    # Variables: b (n), s (n), e+ (k), e- (k).
    size = 2 * n + 2 * k
    fee = np.array([s.fee_fraction * s.mark_price_usd for s in live])
    cost = np.concatenate([fee + _TIE_BREAK * np.arange(1, n + 1), fee, np.full(2 * k, SLACK_PENALTY)])
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for j, (name, band) in enumerate(bands):
        row = np.zeros(size)
        row[:n], row[n:2 * n] = per_unit[name], -per_unit[name]
        row[2 * n + j], row[2 * n + k + j] = 1.0, -1.0
        now = getattr(report.total, name)
        if name in breached:
            a_eq.append(row)
            b_eq.append(band.target - now)
        else:
            a_ub += [row, -row]
            b_ub += [band.max - now, now - band.min]
    quote = live[0].quote_token
    budget = usd(book.balance(quote), book.token(quote), costs.prices_usd.get(quote, 1.0)) if any(
        t.symbol == quote for t in book.tokens) else 0.0
    pay = np.zeros(size)
    pay[:n] = [s.mark_price_usd * (1 + s.fee_fraction) for s in live]
    pay[n:2 * n] = [-s.mark_price_usd * (1 - s.fee_fraction) for s in live]
    a_ub.append(pay)
    b_ub.append(0.99 * budget)
    cap_underlying = policy.limits.max_notional_per_tx_usd / spot  # option units are units of the underlying
    bounds = [(0.0, cap_underlying)] * n + [(0.0, float(h)) for h in held] + [(0.0, None)] * (2 * k)
    result = linprog(cost, A_ub=np.array(a_ub), b_ub=np.array(b_ub), A_eq=np.array(a_eq) if a_eq else None,
                     b_eq=np.array(b_eq) if b_eq else None, bounds=bounds, method="highs")
    if result.x is None:
        return Outcome((), book, "no_funds")
    x = result.x
    steps = _trades(Steps(book, costs), policy, live, x[:n], x[n:2 * n], reason)
    limited = ""
    if float(np.sum(x[2 * n:])) > 1.0:
        limited = "no_funds" if result.ineqlin is not None and abs(result.ineqlin.residual[-1]) < 1e-6 * max(
            budget, 1.0) else "no_instrument"
    if steps.actions and policy.bands.delta_usd is None and "perp" in policy.hedging.instruments:
        _offset_delta(steps, policy, float(report.total.delta_usd), reason)
    return Outcome(tuple(steps.actions), steps.book, limited)


def _offset_delta(steps: Steps, policy: Policy, delta_before_usd: float, reason: str) -> None:
    """Add the perp trade that takes back the delta the option trades moved (none below the minimum trade or
    without a perp that can)."""
    costs = steps.costs
    moved = float(steps.book.report(costs.prices_usd, costs.now_ts).total.delta_usd - delta_before_usd)
    if abs(moved) >= policy.hedging.min_trade_usd and perp_candidate(steps.book, costs, policy, -moved):
        steps.add(perp_step(steps.book, costs, -moved, policy.hedging.max_slippage_bps,
                            f"{reason}; offset the options' delta {moved:,.0f} USD"))


def _trades(steps: Steps, policy: Policy, live: list[OptionSeries], buy: np.ndarray, sell: np.ndarray,
            reason: str) -> Steps:
    """Return `steps` with the option buys and sells of the solution (units of the underlying per series, rounded
    down to MIN_UNITS; smaller ones dropped)."""
    slip = policy.hedging.max_slippage_bps / 1e4
    for i, series in enumerate(live):
        for side, units in (("option_buy", buy[i]), ("option_sell", sell[i])):
            units = math.floor(units / MIN_UNITS) * MIN_UNITS
            if units >= MIN_UNITS:
                steps.add(option_step(steps.book, series, side, units, slip, reason))
    return steps


def option_step(book: Book, series: OptionSeries, kind: str, units: float, slippage: float, reason: str) -> Action:
    """Return a purchase ("option_buy") or sale ("option_sell") of `units` options of `series`, bounded at the
    venue's mark plus (less) its fee, moved by the `slippage` fraction; its notional is the premium."""
    amount = round(units * 1e18)
    token = book.token(series.quote_token)
    premium = units * series.mark_price_usd
    scale = 10**token.decimals
    if kind == "option_buy":
        expected = premium * (1 + series.fee_fraction)
        bound = {"max_amount_in_base_units": math.floor(expected * (1 + slippage) * scale)}
    else:
        expected = premium * (1 - series.fee_fraction)
        bound = {"min_amount_out_base_units": math.ceil(expected * (1 - slippage) * scale)}
    return Action(kind, book.chain, "options", series.label, amount, premium, reason,
                  cost_usd=premium * series.fee_fraction, position_id=series.series_id, **bound)


def _greeks_per_unit(live: list[OptionSeries], spot: float, now_ts: int) -> dict[str, np.ndarray]:
    """Desk gamma and vega (USD) of one unit of each series, from black_scholes at the venue's vol and rate."""
    g = black_scholes(np.array([s.is_call for s in live]), spot, np.array([s.strike_usd for s in live]),
                      np.array([years_to_expiry(s.expiry_ts, now_ts) for s in live]),
                      np.array([s.vol_annual for s in live]), np.array([s.rate_annual for s in live]))
    return {"gamma_usd_1pct": g.gamma * spot * 0.01 * spot, "vega_usd_1vol": g.vega / 100.0}
