"""The planner's entry point: from a snapshot, its risk report, the policy and the planner's state to a `Plan`.

Order of work: the health factor first (deleverage below min, boost above max when enabled), then gamma and vega,
which only options can hedge, then delta on the book as those steps leave it (a deleverage or an option trade
moves delta too), and last a perp position whose liquidation price has come too near gets margin (`margin.py`),
whether or not a band calls for action. Every action is applied to the book as it is chosen; the plan's
`predicted` report is the risk engine run on the book after all of them.
"""

from __future__ import annotations

import math

from agent.model import Action, Plan, RiskReport, Snapshot
from agent.planner.bands import BandReading, HedgeState, band_readings, decide, within
from agent.planner.book import Book, Steps
from agent.planner.costs import CostModel
from agent.planner.deleverage import Outcome, plan_boost, plan_deleverage
from agent.planner.hedge import actions_text, plan_hedge
from agent.planner.margin import perp_at_risk, plan_perp_margin
from agent.planner.morpho import market_number, morpho_positions, plan_morpho_deleverage
from agent.planner.options import OPTION_BANDS, plan_options
from agent.policy import Policy

HEDGE_PASSES = 2
KNOWN_LIMITS = (
    "max_notional_per_tx_usd", "min_trade_usd", "health_factor_min", "health_factor_floor", "no_funds",
    "no_instrument", "stale_price",
)


def prices_usd(snapshot: Snapshot) -> dict[str, float]:
    """Return the USD price of every symbol the snapshot prices: the first fresh reading, else the first stale one
    (the guard refuses plans made on stale prices; the planner still says what it would do)."""
    prices: dict[str, float] = {}
    for fresh in (True, False):
        for chain in snapshot.chains:
            for reading in chain.prices:
                if reading.stale != fresh:
                    prices.setdefault(reading.symbol, reading.price_usd)
    return prices


def _deleverage_lenders(book: Book, costs: CostModel, policy: Policy, target_hf: float, min_hf: float) -> Outcome:
    """Return the steps that deleverage each lending position below `min_hf` (Aave, then Morpho) to `target_hf`.
    A recipe carries one flash loan: when Aave's plan takes it and leaves Morpho short, Aave in rounds with the
    flash loan for Morpho is tried too, and the outcome whose lowest health factor is highest is kept."""
    outcomes = []
    for flash in (True, False):
        aave = plan_deleverage(book, costs, policy, target_hf, flash) if book.health_factor() < min_hf \
            else Outcome((), book)
        morpho = plan_morpho_deleverage(aave.book, costs, policy, target_hf, min_hf, book, aave.actions)
        outcomes.append(Outcome(aave.actions + morpho.actions, morpho.book, aave.limited_by or morpho.limited_by))
        if not morpho.limited_by or not any(a.kind == "flash_loan" for a in aave.actions):
            break
    return max(outcomes, key=lambda o: _lowest_health_factor(o.book))


def _lowest_health_factor(book: Book) -> float:
    """The lowest health factor of the book's Aave account and Morpho positions."""
    morpho = [book.morpho_health_factor(market_number(p.market_id)) for p in morpho_positions(book)]
    return min([book.health_factor(), *morpho])


def plan(snapshot: Snapshot, report: RiskReport, policy: Policy, state: HedgeState | None = None) -> Plan:
    """Return what to do about `snapshot`: the ordered actions that bring every breached band back to its target
    at the least cost, the risk report predicted after them, and why (an empty plan says why nothing is done).

    Pure and deterministic: time is the snapshot's block time; `state` (default: no history) holds the last
    action and hedge for the cooldown, max-age and price-move triggers — `HedgeState.after` gives the next one.
    """
    blocks = tuple((c.chain, c.block_number) for c in snapshot.chains)
    decision = decide(report, policy, state or HedgeState(), snapshot.timestamp)
    prices = prices_usd(snapshot)
    start = Book.from_snapshot(snapshot)
    # A perp near liquidation is acted on whatever the bands and the cooldown say.
    perp_risk = snapshot.underlying in prices and perp_at_risk(start.perp(), prices[snapshot.underlying])
    if not decision.triggers and not perp_risk:
        return Plan(snapshot.portfolio, blocks, (), decision.reason, predicted=report)
    if snapshot.underlying not in prices:
        return Plan(snapshot.portfolio, blocks, (), f"{decision.reason}; no price for {snapshot.underlying}",
                    predicted=report, limited_by="stale_price")
    costs = CostModel(snapshot, policy.triggers.max_hedge_age_s, prices)
    book = start
    actions: list[Action] = []
    limits: list[str] = []
    kinds = {t.band: t for t in decision.triggers}
    hf_band = policy.bands.health_factor
    hf_min = hf_band.min if hf_band is not None else 1.0 + policy.limits.gas_cap_lift_hf

    hf_trigger = kinds.get("health_factor")
    if hf_trigger is not None and hf_band is not None:
        if hf_trigger.kind == "below_min":
            outcome = _deleverage_lenders(book, costs, policy, hf_band.target, hf_band.min)
        else:
            outcome = plan_boost(book, costs, policy, hf_band.target, hf_band.min)
        actions += outcome.actions
        book = outcome.book
        limits.append(outcome.limited_by)

    breached = {t.band for t in decision.triggers if t.band in OPTION_BANDS}
    if breached:
        # Options first: their delta is then hedged with the rest of the book's.
        why = "; ".join(t.text() for t in decision.triggers if t.band in breached)
        outcome = plan_options(book, costs, policy, breached, why)
        actions += outcome.actions
        book = outcome.book
        limits.append(outcome.limited_by)

    delta_band = policy.bands.delta_usd
    if delta_band is not None:
        now = book.report(prices, snapshot.timestamp).total.delta_usd
        outside = not within(now, delta_band.min, delta_band.max)
        if "delta_usd" in kinds or (outside and actions):
            why = kinds["delta_usd"].text() if "delta_usd" in kinds else (
                f"delta_usd {now:,.0f} outside [{delta_band.min:g}, {delta_band.max:g}] after the deleverage")
            # The programme is linearised: a second pass trades away what the first left outside the band.
            for _ in range(HEDGE_PASSES):
                outcome = plan_hedge(book, costs, policy, now, delta_band.target, hf_min, why)
                actions += outcome.actions
                book = outcome.book
                now = book.report(prices, snapshot.timestamp).total.delta_usd
                inside = within(now, delta_band.min, delta_band.max)
                # A limit that kept delta off target but inside its band did not stop the fix.
                limits.append("" if inside else outcome.limited_by)
                if outcome.limited_by or not outcome.actions or inside:
                    break
                why = f"delta_usd {now:,.0f} still outside [{delta_band.min:g}, {delta_band.max:g}]"
    if perp_risk:
        outcome = plan_perp_margin(book, costs, policy, hf_min)
        actions += outcome.actions
        book = outcome.book
        limits.append(outcome.limited_by)
    ordered, book = _ordered(start, costs, actions)
    predicted = book.report(prices, snapshot.timestamp)
    readings = band_readings(predicted, policy)
    unresolved = [r for r in readings if not _settled(r, policy)]
    limited_by = next((limit for limit in limits if limit), "")
    if unresolved and not limited_by:
        limited_by = "no_instrument"
    summary = actions_text(ordered) if ordered else "nothing can be done"
    after = ", ".join(r.text() for r in readings)
    reason = f"{decision.reason} → {summary}; predicted: {after}"
    if limited_by:
        reason += f"; limited by {limited_by}"
    return Plan(snapshot.portfolio, blocks, ordered, reason, predicted=predicted, limited_by=limited_by)


def _settled(reading: BandReading, policy: Policy) -> bool:
    """Whether a band is where the plan should leave it: inside, or a health factor above max without boost."""
    if reading.inside:
        return True
    band = policy.bands.health_factor
    return reading.name == "health_factor" and reading.value > reading.max and (
        band is None or not band.boost or math.isinf(reading.value))


def _ordered(start: Book, costs: CostModel, actions: list[Action]) -> tuple[tuple[Action, ...], Book]:
    """Return the actions with liquidity removals first (they change no health factor, and their proceeds are
    exact only before the plan's swaps move the pool), re-stamped with their health factors, and the final book."""
    removals = [a for a in actions if a.kind == "remove_liquidity"]
    rest = [a for a in actions if a.kind != "remove_liquidity"]
    steps = Steps(start, costs)
    for action in [*removals, *rest]:
        steps.add(action)
    return tuple(steps.actions), steps.book
