"""Bring an Aave health factor back to its target: repay the main debt with what the wallet holds, then with LP
proceeds, then with collateral withdrawn and swapped: in rounds, or — for an account that runs atomic recipes (a
Safe with the keeper module) — in one flash-loan recipe (`flash.py`), whichever reaches the target at the lower
full cost.

Health factor along the way: repaying, swapping and removing liquidity never lower it. A withdrawal does, until its
swap and repay follow; without a flash loan no non-atomic withdraw → swap → repay can avoid that dip. So each
withdrawal is sized to keep the health factor at or above the *withdraw floor*, 1 + half the distance to
liquidation the account had when the plan started, and each round (withdraw, swap, repay) ends above where it
began. Rounds repeat until the target is reached, the per-transaction notional cap or the floor stops them
(`limited_by` says which), or MAX_ROUNDS are spent. The flash-loan recipe repays first, with borrowed funds, and
never lets the health factor fall below where it started. Boost is the mirror image: borrow the debt asset (the borrow
leaves the health factor at or above the band's min), swap it for the collateral and supply it.
"""

from __future__ import annotations

from agent.model import LpPosition
from agent.planner.book import Book, Steps, aave_step, add_removal, remove_liquidity_step, swap_step
from agent.planner.costs import CostModel, base_units, usd
from agent.planner.flash import flash_deleverage, full_cost_usd
from agent.planner.outcome import DUST_USD, WAD, CappedPlanner, Outcome, cap_base_units
from agent.planner.search import least, most
from agent.policy import Policy
from agent.risk import lending

MAX_ROUNDS = 12
_MIN_FLOOR_GAP = 0.005  # below 1.005 a withdrawal would risk Aave's own HF < 1 revert


def withdraw_floor(start_health_factor: float) -> float:
    """Return the lowest health factor a withdrawal may leave: 1 + half the starting distance to liquidation."""
    return 1.0 + max(start_health_factor - 1.0, 0.0) / 2.0


def main_debt_symbol(book: Book, prices_usd: dict[str, float]) -> str | None:
    """Return the symbol of the account's largest debt by USD value (None without debt)."""
    if book.account is None:
        return None
    debts = [(usd(r.variable_debt_base_units + r.stable_debt_base_units, r.token, prices_usd[r.token.symbol]),
              r.token.symbol) for r in book.account.reserves if r.variable_debt_base_units + r.stable_debt_base_units]
    return max(debts)[1] if debts else None


def repay_needed(book: Book, symbol: str, target_wad: int) -> int:
    """Return the fewest base units of `symbol` whose repayment brings the health factor to `target_wad` (all of
    that debt when even repaying it all falls short)."""
    assert book.account is not None
    reserve = book.reserve(symbol)
    assert reserve is not None
    owed = reserve.variable_debt_base_units
    if lending.health_factor_wad(book.account) >= target_wad:
        return 0

    def enough(amount: int) -> bool:
        return lending.health_factor_wad(book.with_reserve_changes(symbol, debt=-amount).account) >= target_wad  # type: ignore[arg-type]

    return least(enough, owed)


class _Deleverage(CappedPlanner):
    def __init__(self, book: Book, costs: CostModel, policy: Policy, target_hf: float, debt: str,
                 start_hf: float | None = None) -> None:
        super().__init__(Steps(book, costs), policy)
        self.debt = debt
        self.target_wad = int(target_hf * WAD)
        self.start_hf = book.health_factor() if start_hf is None else start_hf
        self.reason = f"HF {self.start_hf:.4g} below min, repay {debt} to target {target_hf:g}"

    def need(self) -> int:
        return repay_needed(self.steps.book, self.debt, self.target_wad)

    def repay(self, amount: int, why: str) -> None:
        reserve = self.steps.book.reserve(self.debt)
        assert reserve is not None
        amount = min(amount, reserve.variable_debt_base_units, self.steps.book.balance(self.debt))
        self.steps.add_aave("repay", self.debt, amount, self.cap_units(self.debt), f"{self.reason}: {why}")

    def swap_to_debt(self, symbol: str, amount: int, why: str) -> int:
        """Swap `amount` of `symbol` for the debt asset in chunks; return the sum of the minimum outputs."""
        return self.steps.add_swaps(symbol, self.debt, amount, self.cap_units(symbol), self.slippage_bps,
                                    f"{self.reason}: {why}")

    def min_out_after(self, book: Book, symbol: str, amount: int) -> int:
        if amount <= 0:
            return 0
        return Steps(book, self.costs).add_swaps(symbol, self.debt, amount, self.cap_units(symbol),
                                                 self.slippage_bps, "")

    def from_idle_debt_asset(self) -> None:
        idle = self.steps.book.balance(self.debt)
        use = min(idle, self.need())
        if use and self.usd(self.debt, use) >= DUST_USD:
            self.repay(use, f"{self.usd(self.debt, use):,.0f} USD from the idle balance")

    def from_idle_tokens(self) -> None:
        book = self.steps.book
        idle = sorted(((self.usd(s, a), s) for s, a in book.wallet
                       if s != self.debt and a and self.costs.can_swap(book.chain, s, self.debt)), reverse=True)
        for value, symbol in idle:
            need = self.need()
            if need == 0 or value < DUST_USD:
                break
            available = self.steps.book.balance(symbol)

            def enough(a: int, symbol: str = symbol, need: int = need) -> bool:
                return self.min_out_after(self.steps.book, symbol, a) >= need

            amount = least(enough, available)
            if self.usd(symbol, amount) < DUST_USD:
                continue
            why = f"swap idle {symbol} for {self.debt}"
            received = self.swap_to_debt(symbol, amount, why)
            self.repay(received, why)

    def from_lp(self, position: LpPosition) -> None:
        need = self.need()
        if need == 0 or position.liquidity == 0:
            return
        book = self.steps.book
        other = position.token1 if position.token0.symbol == self.debt else position.token0
        if self.debt not in (position.token0.symbol, position.token1.symbol) and not self.costs.can_swap(
                book.chain, position.token0.symbol, self.debt):
            return
        if not self.costs.can_swap(book.chain, other.symbol, self.debt):
            return

        def proceeds(liquidity: int) -> int:
            action = remove_liquidity_step(book, self.costs, position, liquidity, "")
            after = book.apply(action, self.costs)
            direct = after.balance(self.debt) - book.balance(self.debt)
            return direct + self.min_out_after(after, other.symbol, after.balance(other.symbol) -
                                               book.balance(other.symbol))

        liquidity = least(lambda x: proceeds(x) >= need, position.liquidity)
        if liquidity == 0:
            return
        why = f"remove {liquidity / position.liquidity:.1%} of LP {position.token_id}, swap {other.symbol} " \
              f"for {self.debt}"
        before_debt, before_other = book.balance(self.debt), book.balance(other.symbol)
        add_removal(self.steps, position.token_id, liquidity, self.policy.limits.max_notional_per_tx_usd,
                    f"{self.reason}: {why}")
        got_other = self.steps.book.balance(other.symbol) - before_other
        direct = self.steps.book.balance(self.debt) - before_debt
        received = self.swap_to_debt(other.symbol, got_other, why) if got_other else 0
        self.repay(direct + received, why)

    def from_collateral(self) -> str:
        """Withdraw → swap → repay rounds; return the limit that stopped them short ("" when none)."""
        book = self.steps.book
        assert book.account is not None
        candidates = sorted(
            ((self.usd(r.token.symbol, r.collateral_base_units), r.token.symbol) for r in book.account.reserves
             if r.usage_as_collateral and r.collateral_base_units and r.token.symbol != self.debt
             and self.costs.can_swap(book.chain, r.token.symbol, self.debt)), reverse=True)
        if not candidates:
            return "no_funds" if self.need() else ""
        symbol = candidates[0][1]
        floor = withdraw_floor(self.start_hf)
        if floor - 1.0 < _MIN_FLOOR_GAP:
            return "health_factor_floor"
        floor_wad = int(floor * WAD)
        limited = ""
        for _ in range(MAX_ROUNDS):
            if self.need() == 0:
                return ""
            book = self.steps.book
            reserve = book.reserve(symbol)
            assert reserve is not None

            def after_withdraw(w: int, book: Book = book) -> int:
                return book.with_reserve_changes(symbol, collateral=-w).health_factor_wad()

            def after_round(w: int, book: Book = book) -> int:
                withdrawn = book.with_reserve_changes(symbol, collateral=-w).with_wallet_changes({symbol: w})
                out = self.min_out_after(withdrawn, symbol, w)
                owed = withdrawn.reserve(self.debt).variable_debt_base_units  # type: ignore[union-attr]
                return withdrawn.with_reserve_changes(self.debt, debt=-min(out, owed)).health_factor_wad()

            w_floor = most(lambda w: after_withdraw(w) >= floor_wad, reserve.collateral_base_units)
            w_need = least(lambda w: after_round(w) >= self.target_wad, w_floor)
            w_cap = self.cap_units(symbol)
            w = min(w_need, w_cap)
            limited = "max_notional_per_tx_usd" if w_cap < w_need else (
                "health_factor_floor" if w_need == w_floor and after_round(w_floor) < self.target_wad else "")
            if w == 0 or self.usd(symbol, w) < DUST_USD:
                return limited or "health_factor_floor"
            why = f"withdraw {self.usd(symbol, w):,.0f} USD of {symbol} (HF stays ≥ floor {floor:.3g}), swap, repay"
            self.steps.add(aave_step(self.steps.book, self.costs, "withdraw", symbol, w, f"{self.reason}: {why}"))
            received = self.swap_to_debt(symbol, w, why)
            self.repay(received, why)
        return limited if self.need() else ""

    def usd(self, symbol: str, amount: int) -> float:
        return usd(amount, self.steps.book.token(symbol), self.costs.prices_usd[symbol])


def plan_deleverage(book: Book, costs: CostModel, policy: Policy, target_hf: float, flash: bool = True) -> Outcome:
    """Return the steps that bring the account's health factor up to `target_hf`: idle debt asset, idle tokens
    swapped, LP liquidity removed and swapped, then collateral: in withdraw → swap → repay rounds, or in one
    flash-loan recipe when the account runs atomic recipes (and `flash` allows it), whichever reaches the target
    at the lower full cost."""
    debt = main_debt_symbol(book, costs.prices_usd)
    if debt is None or book.health_factor() >= target_hf:
        return Outcome((), book)
    run = _Deleverage(book, costs, policy, target_hf, debt)
    run.from_idle_debt_asset()
    run.from_idle_tokens()
    for position in sorted(run.steps.book.lps, key=lambda p: -p.liquidity):
        run.from_lp(run.steps.book.lp(position.token_id))
    idle = tuple(run.steps.actions)
    if not run.need():
        return Outcome(idle, run.steps.book)
    rounds = _Deleverage(run.steps.book, costs, policy, target_hf, debt, start_hf=run.start_hf)
    limited = rounds.from_collateral()
    classic = Outcome(idle + tuple(rounds.steps.actions), rounds.steps.book, limited)
    recipe = flash_deleverage(run.steps.book, costs, policy, debt, run.target_wad, run.reason) if flash else None
    if recipe is None:
        return classic
    atomic = Outcome(idle + recipe.actions, recipe.book, recipe.limited_by)
    return min((classic, atomic), key=lambda o: _rank(o, costs, policy, run.target_wad))


def _rank(outcome: Outcome, costs: CostModel, policy: Policy, target_wad: int) -> tuple[bool, float, float]:
    """Orders deleverage candidates: those that reach the target first, then the nearest to it, then the cheapest
    by full cost (USD)."""
    hf_wad = outcome.book.health_factor_wad()
    short = hf_wad < target_wad
    return short, -hf_wad / WAD if short else 0.0, full_cost_usd(outcome.actions, costs, policy, outcome.book.chain)


def plan_boost(book: Book, costs: CostModel, policy: Policy, target_hf: float, min_hf: float) -> Outcome:
    """Return the steps that re-lever the account down to `target_hf`: borrow its main debt asset (the borrow
    leaves the health factor ≥ `min_hf`), swap it for its main collateral and supply it, in rounds."""
    debt = main_debt_symbol(book, costs.prices_usd)
    if debt is None or book.account is None:
        return Outcome((), book)
    collateral = max(((usd(r.collateral_base_units, r.token, costs.prices_usd[r.token.symbol]), r.token.symbol)
                      for r in book.account.reserves if r.usage_as_collateral and r.collateral_base_units
                      and r.token.symbol != debt and costs.can_swap(book.chain, debt, r.token.symbol)),
                     default=None)
    if collateral is None:
        return Outcome((), book, "no_funds")
    symbol = collateral[1]
    steps = Steps(book, costs)
    target_wad, min_wad = int(target_hf * WAD), int(min_hf * WAD)
    cap = cap_base_units(policy, book.token(debt), costs.prices_usd[debt])
    reason = f"HF {book.health_factor():.4g} above max with boost: borrow {debt} to target {target_hf:g}"
    for _ in range(MAX_ROUNDS):
        current = steps.book
        if current.health_factor_wad() <= int(target_wad * 1.01):
            break
        data = lending.account_data(current.account)  # type: ignore[arg-type]
        borrowable = base_units(data.available_borrows_1e8 / 1e8, current.token(debt), costs.prices_usd[debt])

        def after_round(b: int, current: Book = current) -> int:
            borrowed = current.with_reserve_changes(debt, debt=b).with_wallet_changes({debt: b})
            trial = Steps(borrowed, costs)
            out = trial.add(swap_step(borrowed, costs, debt, symbol, b, policy.hedging.max_slippage_bps,
                                      "")).min_amount_out_base_units
            return borrowed.with_reserve_changes(symbol, collateral=out).health_factor_wad()

        def above_min(b: int, current: Book = current) -> bool:
            return current.with_reserve_changes(debt, debt=b).health_factor_wad() >= min_wad

        b_min = most(above_min, borrowable)
        b = min(most(lambda b: after_round(b) >= target_wad, b_min), cap)
        if usd(b, current.token(debt), costs.prices_usd[debt]) < DUST_USD:
            break
        steps.add(aave_step(current, costs, "borrow", debt, b, reason))
        out = steps.add(swap_step(steps.book, costs, debt, symbol, b, policy.hedging.max_slippage_bps, reason))
        steps.add(aave_step(steps.book, costs, "supply", symbol, out.min_amount_out_base_units, reason))
    return Outcome(tuple(steps.actions), steps.book)
