"""Bring a breached Morpho Blue position's health factor back to its target, and leave the others alone.

A position is deleveraged from the wallet's idle loan token first (a repay only raises its health factor). What is
still missing comes from its collateral, atomically: a flash loan of the loan token funds a repay, the collateral
withdrawn is swapped for the loan token with an on-chain minimum out that covers the loan, and the loan is paid back
in the same recipe — so the health factor never dips between steps. Morpho's own flash loan is free (up to what
Morpho holds of the token); Aave's costs its premium, so it is chosen only when Morpho cannot lend enough.
The flash-loan bracket is the executor's `flash_loan` … `flash_repay` pair; without an atomic executor the
collateral path is not planned (`limited_by` "no_funds").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from agent.model import Action, MorphoPosition
from agent.planner.book import Book, Steps, swap_step
from agent.planner.costs import CostModel, flash_loan_premium, usd
from agent.planner.flash import atomic_recipes
from agent.planner.outcome import Outcome
from agent.planner.search import least
from agent.policy import Policy
from agent.risk import morpho

WAD = 10**18
DUST_USD = 1.0
# Gas of Morpho's calls (a repay or withdrawal touches one market's storage: about half of Aave's).
GAS_UNITS = {"repay": 110_000, "repay_shares": 110_000, "withdraw": 100_000, "supply": 90_000, "borrow": 130_000}


def morpho_positions(book: Book) -> tuple[MorphoPosition, ...]:
    """The book's Morpho Blue positions on its chain."""
    return tuple(p for p in book.others if isinstance(p, MorphoPosition) and p.chain == book.chain)


def market_number(market_id: str) -> int:
    """The market id as an action's `position_id`."""
    return int(market_id, 16)


def position_of(book: Book, position_id: int) -> MorphoPosition:
    """The book's Morpho position in market `position_id`. KeyError when the book has none there."""
    for position in morpho_positions(book):
        if market_number(position.market_id) == position_id:
            return position
    raise KeyError(f"no Morpho Blue position in market 0x{position_id:064x}")


def morpho_step(
    book: Book, costs: CostModel, kind: str, position: MorphoPosition, amount: int, reason: str,
    max_amount_in_base_units: int = 0,
) -> Action:
    """Return a Morpho `kind` ("repay", "repay_shares", "withdraw", "supply", "borrow") of `amount` in the
    position's market: loan-token base units, collateral base units for supply and withdraw, shares for
    repay_shares (its notional is then the assets they are worth)."""
    token = position.collateral_token if kind in ("supply", "withdraw") else position.loan_token
    assets = morpho.to_assets_up(amount, position.total_borrow_assets, position.total_borrow_shares) \
        if kind == "repay_shares" else amount
    return Action(kind, book.chain, "morpho_blue", token.symbol, amount,
                  usd(assets, token, costs.prices_usd[token.symbol]), reason,
                  cost_usd=costs.gas_usd(kind, book.chain, GAS_UNITS[kind]),
                  position_id=market_number(position.market_id), max_amount_in_base_units=max_amount_in_base_units)


def apply_morpho(book: Book, action: Action) -> Book:
    """Return the book after a Morpho action (see `morpho_step`)."""
    old = position_of(book, action.position_id)
    loan, collateral, amount = old.loan_token.symbol, old.collateral_token.symbol, action.amount_base_units
    if action.kind in ("repay", "repay_shares"):
        new, paid = morpho.after_repay(old, **({"assets": amount} if action.kind == "repay" else {"shares": amount}))
        changes = {loan: -paid}
    elif action.kind == "borrow":
        new = morpho.with_borrowed(old, amount)
        changes = {loan: amount}
    else:
        sign = 1 if action.kind == "supply" else -1
        new, changes = morpho.with_collateral(old, sign * amount), {collateral: -sign * amount}
    return book.with_wallet_changes(changes).with_other_replaced(old, new)


def plan_morpho_deleverage(book: Book, costs: CostModel, policy: Policy, target_hf: float, below_hf: float,
                           start: Book | None = None, prior: Sequence[Action] = ()) -> Outcome:
    """Return the steps that bring every Morpho position of the book whose health factor is below `below_hf` back
    to `target_hf`: the idle loan token, then (when the account runs atomic recipes: a Safe's keeper module) a
    flash-loan funded repay, withdrawal and swap of collateral. Positions at or above `below_hf` are left alone.
    `prior` are the plan's actions before these (from `start` to `book`): the idle loan token used is only what they
    leave for certain (swaps at their minimum out), and no second flash loan is opened after theirs (a recipe
    carries one)."""
    atomic = atomic_recipes(policy) and not any(a.kind == "flash_loan" for a in prior)
    steps = Steps(book, costs)
    limited = ""
    for position in morpho_positions(book):
        if morpho.health_factor_wad(position) >= int(below_hf * WAD):
            continue
        run = _Deleverage(steps, policy, target_hf, position.market_id)
        run.from_idle_loan_token(sure_balance(start or book, prior, run.loan))
        if run.need() and atomic:
            run.from_collateral()
        if run.need():
            limited = limited or "no_funds"
    return Outcome(tuple(steps.actions), steps.book, limited)


def sure_balance(start: Book, prior: Sequence[Action], symbol: str) -> int:
    """Return the base units of `symbol` the wallet holds for certain after `prior` from `start`: a swap's output
    counts at its on-chain minimum (the book credits the expected output, which the pool need not deliver)."""
    held = start.balance(symbol)
    for action in prior:
        if action.kind == "swap" and action.asset_out == symbol:
            held += action.min_amount_out_base_units
        elif action.asset == symbol and action.kind in ("swap", "repay", "supply", "flash_repay"):
            held -= action.amount_base_units
        elif action.asset == symbol and action.kind in ("withdraw", "borrow", "flash_loan"):
            held += action.amount_base_units
    return max(held, 0)


class _Deleverage:
    def __init__(self, steps: Steps, policy: Policy, target_hf: float, market_id: str) -> None:
        self.steps = steps
        self.costs = steps.costs
        self.policy = policy
        self.id = market_number(market_id)
        self.target_wad = int(target_hf * WAD)
        start = self.position()
        self.loan, self.collateral = start.loan_token.symbol, start.collateral_token.symbol
        self.reason = (f"Morpho {self.collateral}/{self.loan} HF {morpho.health_factor_wad(start) / WAD:.4g} below "
                       f"min, repay {self.loan} to target {target_hf:g}")

    def position(self, book: Book | None = None) -> MorphoPosition:
        return position_of(book or self.steps.book, self.id)

    def need(self) -> int:
        return morpho.repay_needed(self.position(), self.target_wad)

    def add(self, action: Action) -> Action:
        return self.steps.add(action)

    def repay(self, book: Book, assets: int, why: str) -> Action:
        """A repay of `assets`, by shares when it clears the debt (interest accrued meanwhile leaves no dust)."""
        position = self.position(book)
        if assets >= morpho.borrowed_base_units(position):
            shares = position.borrow_shares
            # The approval covers the shares' value now plus a day of interest at 100%/year.
            cap = morpho.borrowed_base_units(position) * (365 + 1) // 365 + 1
            return morpho_step(book, self.costs, "repay_shares", position, shares, why,
                               max_amount_in_base_units=cap)
        return morpho_step(book, self.costs, "repay", position, assets, why)

    def from_idle_loan_token(self, sure: int) -> None:
        """Repay from the idle loan token, at most `sure` base units of it (what earlier steps leave for certain)."""
        use = min(self.steps.book.balance(self.loan), sure, self.need())
        if use and usd(use, self.steps.book.token(self.loan), self.costs.prices_usd[self.loan]) >= DUST_USD:
            self.add(self.repay(self.steps.book, use, f"{self.reason}: from the idle balance"))

    def from_collateral(self) -> None:
        """Flash loan X → repay X → withdraw W → swap W for ≥ X + premium → pay the loan back, with the least X
        that reaches the target (the health factor after the bracket rises with X while collateral covers debt)."""
        book = self.steps.book
        if not self.costs.can_swap(book.chain, self.collateral, self.loan):
            return
        owed = morpho.borrowed_base_units(self.position())
        lender, premium_of = self.lender(owed)

        def bracket(loan: int) -> tuple[list[Action], Book] | None:
            return self.bracket(book, loan, lender, premium_of(loan))

        def reaches(loan: int) -> bool:
            outcome = bracket(loan)
            return outcome is not None and morpho.health_factor_wad(self.position(outcome[1])) >= self.target_wad

        loan = least(reaches, owed)
        outcome = bracket(loan)
        if outcome is None or loan == 0:
            return
        for action in outcome[0]:
            self.add(action)

    def lender(self, amount: int) -> tuple[str, Callable[[int], int]]:
        """The flash lender for `amount` of the loan token and its premium function: Morpho (free) when it holds
        enough, else Aave at its premium."""
        bps = self.costs.flash_premium_bps.get(self.steps.book.chain)
        if self.position().flash_liquidity_base_units >= amount or bps is None:
            return "morpho_blue", lambda _loan: 0
        return "aave_v3", lambda loan: flash_loan_premium(loan, bps)

    def bracket(self, book: Book, loan: int, lender: str, premium: int) -> tuple[list[Action], Book] | None:
        """The bracket's actions for a flash loan of `loan`, and the book after it; None when the collateral
        cannot cover it."""
        token = book.token(self.loan)
        why = f"{self.reason}: flash loan, repay, withdraw {self.collateral}, swap"
        opened = Action("flash_loan", book.chain, lender, self.loan, loan, usd(loan, token, self.costs.prices_usd[
            self.loan]), why, cost_usd=usd(premium, token, self.costs.prices_usd[self.loan])
            + self.costs.gas_usd("flash_loan", book.chain))
        trial = Steps(book, self.costs)
        trial.add(opened)
        trial.add(self.repay(trial.book, loan, why))
        collateral = self.position(trial.book).collateral_base_units

        def swap_for(w: int, at: Book) -> Action:
            return swap_step(at, self.costs, self.collateral, self.loan, w, self.policy.hedging.max_slippage_bps, why)

        def covers(w: int) -> bool:
            withdrawn = apply_morpho(trial.book, morpho_step(trial.book, self.costs, "withdraw",
                                                             self.position(trial.book), w, why))
            return swap_for(w, withdrawn).min_amount_out_base_units >= loan + premium

        if loan and not covers(collateral):
            return None
        w = least(covers, collateral) if loan else 0
        trial.add(morpho_step(trial.book, self.costs, "withdraw", self.position(trial.book), w, why))
        trial.add(swap_for(w, trial.book))
        trial.add(dataclasses.replace(opened, kind="flash_repay", amount_base_units=loan + premium, cost_usd=0.0))
        return trial.actions, trial.book

