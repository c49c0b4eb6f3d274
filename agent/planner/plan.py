"""The planner's entry point: from a snapshot, its risk report, the policy and the planner's state to a `Plan`.

Order of work: the health factor of each chain's lending positions first (deleverage an Aave account below min or
when a stress scenario is below the stress band, a Morpho position below min, boost above max when enabled), then
gamma and vega, which only options can hedge, then delta on the book as those steps leave it (a deleverage or an
option trade moves delta too), and last a perp position whose liquidation price has come too near gets margin
(`margin.py`), whether or not a band calls for action. Every action is applied to the book as it is chosen; the plan's
`predicted` report is the risk engine run on the book after all of them.
"""

from __future__ import annotations

import math

from agent.model import AaveAccount, Action, MorphoPosition, Plan, RiskReport, Snapshot
from agent.planner.bands import BandReading, Decision, HedgeState, Trigger, band_readings, decide, within
from agent.planner.book import Book, Steps
from agent.planner.costs import CostModel
from agent.planner.deleverage import plan_boost, plan_deleverage
from agent.planner.hedge import actions_text, plan_hedge
from agent.planner.margin import perp_at_risk, plan_perp_margin
from agent.planner.morpho import market_number, morpho_positions, plan_morpho_deleverage
from agent.planner.options import OPTION_BANDS, plan_options
from agent.planner.outcome import Outcome
from agent.planner.stress import betas_for, plan_stress_deleverage, scenarios_for, volatility_floors
from agent.policy import Policy

HEDGE_PASSES = 2
KNOWN_LIMITS = (
    "max_notional_per_tx_usd", "min_trade_usd", "health_factor_min", "health_factor_floor", "no_funds",
    "no_instrument", "stale_price",
)


def prices_usd(snapshot: Snapshot, chain: str | None = None) -> dict[str, float]:
    """Return the USD price of every symbol the snapshot prices: the first fresh reading (`chain`'s first, when
    given), else the first stale one (the guard refuses plans made on stale prices; the planner still says what it
    would do)."""
    prices: dict[str, float] = {}
    ordered = sorted(snapshot.chains, key=lambda c: c.chain != chain)
    for fresh in (True, False):
        for chain_snapshot in ordered:
            for reading in chain_snapshot.prices:
                if reading.stale != fresh:
                    prices.setdefault(reading.symbol, reading.price_usd)
    return prices


def plan(snapshot: Snapshot, report: RiskReport, policy: Policy, state: HedgeState | None = None) -> Plan:
    """Return what to do about `snapshot`: the ordered actions that bring every breached band back to its target
    at the least cost, the risk report predicted after them, and why (an empty plan says why nothing is done).

    Each chain's account is planned on its own chain's book (a health factor breached on chain 2 deleverages
    chain 2); delta, gamma, vega and perp margin are traded on the first chain with an account. Pure and
    deterministic: time is the snapshot's block time; `state` (default: no history) holds the last action and
    hedge for the cooldown, max-age and price-move triggers — `HedgeState.after` gives the next one.
    """
    blocks = tuple((c.chain, c.block_number) for c in snapshot.chains)
    floors = volatility_floors(snapshot, policy)
    decision = decide(report, policy, state or HedgeState(), snapshot.timestamp, floors)
    prices = prices_usd(snapshot)
    work = _Planning(snapshot, policy, prices)
    # A perp near liquidation is acted on whatever the bands and the cooldown say.
    perp_risk = snapshot.underlying in prices and perp_at_risk(work.primary.perp(), prices[snapshot.underlying])
    if not decision.triggers and not perp_risk:
        return Plan(snapshot.portfolio, blocks, (), decision.reason, predicted=report)
    if snapshot.underlying not in prices:
        return Plan(snapshot.portfolio, blocks, (), f"{decision.reason}; no price for {snapshot.underlying}",
                    predicted=report, limited_by="stale_price")
    work.lending(decision)
    work.options(decision)
    work.delta(decision)
    if perp_risk:
        work.add(plan_perp_margin(work.primary, work.costs, policy, work.hf_min))
    ordered, predicted = work.result()
    readings = band_readings(predicted, policy, floors)
    unresolved = [r for r in readings if not _settled(r, policy)]
    limited_by = next((limit for limit in work.limits if limit), "")
    if unresolved and not limited_by:
        limited_by = "no_instrument"
    summary = actions_text(ordered) if ordered else "nothing can be done"
    after = ", ".join(r.text() for r in readings)
    reason = f"{decision.reason} → {summary}; predicted: {after}"
    if limited_by:
        reason += f"; limited by {limited_by}"
    return Plan(snapshot.portfolio, blocks, ordered, reason, predicted=predicted, limited_by=limited_by)


class _Planning:
    """A plan under construction: one book per chain with an Aave account (the first is the primary, where the
    Greeks are traded), the actions chosen on each, and the limits that stopped a step short."""

    def __init__(self, snapshot: Snapshot, policy: Policy, prices: dict[str, float]) -> None:
        self.snapshot, self.policy, self.prices = snapshot, policy, prices
        betas = betas_for(policy, snapshot.positions)
        chains = [p.chain for p in snapshot.positions if isinstance(p, AaveAccount | MorphoPosition)] or [
            snapshot.chains[0].chain]
        self.start = {c: Book.from_snapshot(snapshot, c, betas) for c in dict.fromkeys(chains)}
        self.books = dict(self.start)
        self.primary_chain = chains[0]
        # Each chain's trades are sized and bounded at its own oracles' prices.
        self.chain_costs = {c: CostModel(snapshot, policy.triggers.max_hedge_age_s, prices_usd(snapshot, c))
                            for c in self.start}
        self.costs = self.chain_costs[self.primary_chain]
        self.actions: list[Action] = []
        self.limits: list[str] = []
        self.scenarios = scenarios_for(policy, snapshot.positions)
        hf_band = policy.bands.health_factor
        self.hf_min = hf_band.min if hf_band is not None else 1.0 + policy.limits.gas_cap_lift_hf

    @property
    def primary(self) -> Book:
        return self.books[self.primary_chain]

    def add(self, outcome: Outcome) -> None:
        self.actions += outcome.actions
        self.books[outcome.book.chain] = outcome.book
        self.limits.append(outcome.limited_by)

    def view(self) -> Book:
        """The primary book with every other chain's acted positions as its own book now has them."""
        book = self.primary
        for chain, other in self.books.items():
            if chain != self.primary_chain:
                book = book.with_chain(other)
        return book

    def lending(self, decision: Decision) -> None:
        """Health factor first, per chain: deleverage below min (to the stress target too when a scenario is below
        its floor), boost above max when enabled."""
        hf_band = self.policy.bands.health_factor
        for chain in self.start:
            hf = _trigger_on(decision, "health_factor", chain, self.primary_chain)
            stress = _trigger_on(decision, "stress_health_factor", chain, self.primary_chain)
            book, costs = self.books[chain], self.chain_costs[chain]
            # The trigger's target and edge are the band's, raised by a volatility floor where there is one. The
            # band applies to each lending position: only those below min (Aave's account, Morpho's positions) are
            # deleveraged.
            below = hf is not None and hf_band is not None and hf.kind == "below_min"
            aave_below = below and hf is not None and book.health_factor() < hf.edge
            if stress is not None:
                at_least = hf.target if aave_below and hf is not None else 0.0
                self.add(plan_stress_deleverage(book, costs, self.policy, self.scenarios, at_least))
            elif aave_below and hf is not None:
                self.add(_deleverage_lenders(book, costs, self.policy, hf.target, hf.edge))
                continue
            elif hf is not None and hf_band is not None and not below:
                self.add(plan_boost(book, costs, self.policy, hf.target, hf_band.min))
            if below and hf is not None:
                prior = tuple(a for a in self.actions if a.chain == chain)
                self.add(plan_morpho_deleverage(self.books[chain], costs, self.policy, hf.target, hf.edge, book,
                                                prior))

    def options(self, decision: Decision) -> None:
        """Gamma and vega, which only options can hedge; their delta is then hedged with the rest of the book's."""
        breached = {t.band for t in decision.triggers if t.band in OPTION_BANDS}
        if breached:
            why = "; ".join(t.text() for t in decision.triggers if t.band in breached)
            self.add(plan_options(self.primary, self.costs, self.policy, breached, why))

    def delta(self, decision: Decision) -> None:
        """Each delta band on the book as the earlier steps leave it: the beta-weighted total and the underlying's
        own delta are traded in the underlying on the primary chain; no instrument trades another factor."""
        triggers = {t.scope: t for t in decision.triggers if t.band == "delta_usd"}
        for scope, band in self.policy.bands.delta_bands().items():
            now = self._delta(scope)
            outside = not within(now, band.min, band.max)
            if scope not in triggers and not (outside and self.actions):
                continue
            if scope not in ("total", self.snapshot.underlying):
                self.limits.append("no_instrument")
                continue
            why = triggers[scope].text() if scope in triggers else (
                f"delta_usd {now:,.0f} outside [{band.min:g}, {band.max:g}] after the deleverage")
            # The programme is linearised: a second pass trades away what the first left outside the band.
            for _ in range(HEDGE_PASSES):
                outcome = plan_hedge(self.primary, self.costs, self.policy, now, band.target, self.hf_min, why)
                self.actions += outcome.actions
                self.books[self.primary_chain] = outcome.book
                now = self._delta(scope)
                inside = within(now, band.min, band.max)
                # A limit that kept delta off target but inside its band did not stop the fix.
                self.limits.append("" if inside else outcome.limited_by)
                if outcome.limited_by or not outcome.actions or inside:
                    break
                why = f"delta_usd {now:,.0f} still outside [{band.min:g}, {band.max:g}]"

    def _delta(self, scope: str) -> float:
        report = self.view().report(self.prices, self.snapshot.timestamp)
        if scope == "total":
            return report.weighted_delta_usd
        factor = report.factor(scope)
        return factor.delta_usd if factor is not None else 0.0

    def result(self) -> tuple[tuple[Action, ...], RiskReport]:
        """Return the actions per chain in the order `_ordered` gives them, and the report predicted after all."""
        ordered: list[Action] = []
        for chain, start in self.start.items():
            mine = [a for a in self.actions if a.chain == chain]
            actions, self.books[chain] = _ordered(start, self.chain_costs[chain], mine)
            ordered += actions
        predicted = self.view().report(self.prices, self.snapshot.timestamp, self.scenarios)
        return tuple(ordered), predicted


def _trigger_on(decision: Decision, band: str, chain: str, primary: str) -> Trigger | None:
    """The trigger of `band` on `chain` ("" scopes name the primary chain)."""
    return next((t for t in decision.triggers if t.band == band and (t.scope or primary) == chain), None)


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
