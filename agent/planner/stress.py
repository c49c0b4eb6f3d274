"""The policy's risk factors and stress scenarios as the risk engine takes them, and the deleverage that lifts the
worst scenario's health factor back to the stress band's target.

A deleverage to health factor h leaves a scenario's health factor at about h · (worst now / HF now): the scenario
scales collateral and debt, the deleverage shrinks both. So the target health factor starts at
HF · target / worst and is raised by the remaining ratio, up to `STRESS_ROUNDS` times, each plan made afresh from
the same book.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agent.model import AaveAccount, Position, Scenario, Snapshot
from agent.planner.book import Book
from agent.planner.costs import CostModel
from agent.planner.deleverage import plan_deleverage
from agent.planner.outcome import Outcome
from agent.policy import Policy
from agent.risk.factors import factor_symbols
from agent.risk.scenarios import account_stress, default_scenarios, option_underlyings
from agent.risk.volatility import factor_vols, survival_health_factor

STRESS_ROUNDS = 4
_MAX_TARGET_HF = 20.0


def scenarios_for(policy: Policy, positions: Iterable[Position]) -> tuple[Scenario, ...]:
    """Return the policy's named scenarios, then the default set for the book's factors (unless turned off)."""
    book = tuple(positions)
    risk = policy.risk
    named = tuple(spec.scenario() for spec in risk.scenarios)
    if not risk.default_scenarios:
        return named
    return named + default_scenarios(factor_symbols(book), stablecoins=risk.stablecoins, lsts=risk.lsts,
                                     decoupled=risk.decoupled, option_underlyings=option_underlyings(book))


def betas_for(policy: Policy, positions: Iterable[Position]) -> dict[str, float]:
    """Return each of the book's factors' beta to the policy's underlying (`Risk.betas_for`)."""
    return policy.risk.betas_for(policy.portfolio.underlying, factor_symbols(tuple(positions)))


def volatility_floors(snapshot: Snapshot, policy: Policy) -> dict[str, float]:
    """Return, per chain with an Aave account, the volatility-aware health-factor minimum of the policy's band
    (`risk.volatility.survival_health_factor`), or nothing when the band has no `volatility` option."""
    band = policy.bands.health_factor
    if band is None or band.volatility is None:
        return {}
    option = band.volatility
    pegs = dict(policy.risk.lsts)
    vols = factor_vols(snapshot.markets, option.realised_vols, snapshot.timestamp, pegs)
    return {p.chain: survival_health_factor(p, vols, option.k_sigma, option.horizon_s, pegs)
            for p in snapshot.positions if isinstance(p, AaveAccount)}


def worst_health_factor(account: AaveAccount | None, scenarios: Sequence[Scenario]) -> float:
    """Return the account's lowest health factor over the scenarios (inf without an account, debt or scenario)."""
    if account is None:
        return float("inf")
    return min((account_stress(account, dict(s.shocks)).health_factor for s in scenarios), default=float("inf"))


def plan_stress_deleverage(book: Book, costs: CostModel, policy: Policy, scenarios: Sequence[Scenario],
                           at_least_hf: float = 0.0) -> Outcome:
    """Return the deleverage after which the account's worst scenario health factor is at least the stress band's
    target (and its health factor at least `at_least_hf`)."""
    band = policy.bands.stress_health_factor
    assert band is not None
    goal = band.target_value
    worst = worst_health_factor(book.account, scenarios)
    now = book.health_factor()
    target = max(at_least_hf, min(now * goal / worst, _MAX_TARGET_HF) if worst > 0 else _MAX_TARGET_HF)
    outcome = plan_deleverage(book, costs, policy, target)
    for _ in range(STRESS_ROUNDS - 1):
        after = worst_health_factor(outcome.book.account, scenarios)
        if after >= goal or outcome.limited_by or not outcome.actions or target >= _MAX_TARGET_HF:
            break
        target = min(target * goal / max(after, 1e-9), _MAX_TARGET_HF)
        outcome = plan_deleverage(book, costs, policy, target)
    return outcome
