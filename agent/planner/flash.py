"""Deleverage as one atomic recipe around a flash loan, which only a Safe's keeper module can run: borrow the debt
asset, repay the account's debt with it, withdraw collateral, swap it for the debt asset with an on-chain minimum
that covers the loan and its premium, and let the module pay the loan back.

Health factor along the recipe: the repayment comes first, so it rises; the withdrawal then takes only what paying
the loan back needs, so the end is above the start for any account whose collateral is worth more than its debt.
The loan is the least that reaches the target, at most the debt owed and `max_notional_per_tx_usd`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.model import Action
from agent.planner.book import Book, Steps
from agent.planner.costs import TX_BASE_GAS, CostModel, flash_loan_premium, usd
from agent.planner.outcome import cap_base_units
from agent.planner.search import least, most
from agent.policy import Policy

LENDER = "aave_v3"  # the paying lender (kind 1: Aave v3 flashLoanSimple); Morpho Blue (kind 2) is free where it lends


@dataclass(frozen=True, slots=True)
class FlashRecipe:
    """The flash-loan recipe's actions (bracket included, stamped with their health factors), the book after it,
    and the limit that kept it short of the target ("" when none)."""

    actions: tuple[Action, ...]
    book: Book
    limited_by: str = ""


def atomic_recipes(policy: Policy) -> bool:
    """Whether the policy's account runs a plan as one atomic recipe (a Safe with the keeper module)."""
    return policy.portfolio.executor.kind == "safe_module"


def transactions(actions: Sequence[Action], policy: Policy) -> int:
    """Return how many transactions the actions take: one recipe through the module, else one per action."""
    if not actions:
        return 0
    return 1 if atomic_recipes(policy) else sum(a.kind not in ("flash_loan", "flash_repay") for a in actions)


def full_cost_usd(actions: Sequence[Action], costs: CostModel, policy: Policy, chain: str) -> float:
    """Return what the actions cost in USD: their own costs (gas, swap fee and impact, premium) plus the base gas of
    every transaction they take."""
    base = costs.gas_usd("", chain, TX_BASE_GAS * transactions(actions, policy))
    return sum(a.cost_usd for a in actions) + base


def main_collateral(book: Book, costs: CostModel, debt: str) -> str | None:
    """Return the symbol of the account's largest collateral (by USD) that can be swapped for `debt`, or None."""
    assert book.account is not None
    candidates = [(usd(r.collateral_base_units, r.token, costs.prices_usd[r.token.symbol]), r.token.symbol)
                  for r in book.account.reserves if r.usage_as_collateral and r.collateral_base_units
                  and r.token.symbol != debt and costs.can_swap(book.chain, r.token.symbol, debt)]
    return max(candidates)[1] if candidates else None


class _Sizing:
    """Builds the recipe for a given loan on one book."""

    def __init__(self, book: Book, costs: CostModel, policy: Policy, debt: str, collateral: str, premium_bps: int,
                 reason: str) -> None:
        self.book, self.costs, self.debt, self.collateral = book, costs, debt, collateral
        self.premium_bps, self.reason = premium_bps, reason
        self.slippage_bps = policy.hedging.max_slippage_bps
        self.cap_debt = cap_base_units(policy, book.token(debt), costs.prices_usd[debt])
        self.cap_collateral = cap_base_units(policy, book.token(collateral), costs.prices_usd[collateral])

    def min_out(self, book: Book, amount: int) -> int:
        """The sum of the minimum outputs of swapping `amount` collateral (once withdrawn) in chunks under the cap."""
        trial = Steps(book.with_wallet_changes({self.collateral: amount}), self.costs)
        return trial.add_swaps(self.collateral, self.debt, amount, self.cap_collateral, self.slippage_bps, "")

    def recipe(self, loan: int) -> Steps | None:
        """The recipe that borrows `loan` (None when the collateral cannot pay it back with its premium)."""
        # Morpho's flash loan is free: it lends whenever it holds enough of the token, Aave (its premium) otherwise.
        free = self.costs.morpho_flash_liquidity.get((self.book.chain, self.debt), 0) >= loan
        lender, premium = ("morpho_blue", 0) if free else (LENDER, flash_loan_premium(loan, self.premium_bps))
        reserve = self.book.reserve(self.collateral)
        assert reserve is not None
        if loan <= 0 or self.min_out(self.book, reserve.collateral_base_units) < loan + premium:
            return None
        withdraw = least(lambda w: self.min_out(self.book, w) >= loan + premium, reserve.collateral_base_units)
        costs, chain, token = self.costs, self.book.chain, self.book.token(self.debt)
        steps = Steps(self.book, costs)
        loan_usd = usd(loan, token, costs.prices_usd[self.debt])
        why = (f"{self.reason}: flash-loan {loan_usd:,.0f} USD of {self.debt}, repay, withdraw {self.collateral}, "
               "swap, pay the loan back")
        premium_usd = usd(premium, token, costs.prices_usd[self.debt])
        try:
            steps.add(Action("flash_loan", chain, lender, self.debt, loan, loan_usd, why,
                             cost_usd=premium_usd + costs.gas_usd("flash_loan", chain)))
            steps.add_aave("repay", self.debt, loan, self.cap_debt, why)
            steps.add_aave("withdraw", self.collateral, withdraw, self.cap_collateral, why)
            steps.add_swaps(self.collateral, self.debt, withdraw, self.cap_collateral, self.slippage_bps, why)
            steps.add(Action("flash_repay", chain, lender, self.debt, loan + premium, 0.0, why))
        except ValueError:  # the swaps' expected output falls short of what the module must pay back
            return None
        return steps


def flash_deleverage(book: Book, costs: CostModel, policy: Policy, debt: str, target_wad: int,
                     reason: str) -> FlashRecipe | None:
    """Return the flash-loan recipe that brings the health factor to `target_wad` (or as near as the debt owed and
    the notional cap allow), or None: no atomic executor, no premium known, no swappable collateral, or no loan
    that leaves the health factor above where it started."""
    premium_bps = costs.flash_premium_bps.get(book.chain)
    reserve = book.reserve(debt)
    if premium_bps is None or not atomic_recipes(policy) or reserve is None:
        return None
    collateral = main_collateral(book, costs, debt)
    if collateral is None:
        return None
    sizing = _Sizing(book, costs, policy, debt, collateral, premium_bps, reason)
    owed = reserve.variable_debt_base_units
    high = min(owed, sizing.cap_debt)
    feasible = most(lambda loan: sizing.recipe(loan) is not None, high)
    loan = least(lambda x: _reaches(sizing.recipe(x), target_wad), feasible)
    steps = sizing.recipe(loan)
    if steps is None or steps.book.health_factor_wad() <= book.health_factor_wad():
        return None
    limited = "" if _reaches(steps, target_wad) else (
        "max_notional_per_tx_usd" if high < owed and feasible == high else "no_funds")
    return FlashRecipe(tuple(steps.actions), steps.book, limited)


def _reaches(steps: Steps | None, target_wad: int) -> bool:
    return steps is not None and steps.book.health_factor_wad() >= target_wad
