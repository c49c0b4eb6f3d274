"""Choose how to bring delta back to target at the least cost: a mixed-integer linear programme (scipy's HiGHS).

Variables are USD notionals of the underlying moved by each candidate trade, each with a binary "used" indicator:

- raise delta: repay underlying debt with underlying bought (aave_borrow), or buy the underlying and supply it
  (spot_swap); the quote asset they spend comes from the idle balance, quote-asset collateral withdrawn, or LP
  liquidity removed (whose underlying part is put into Aave too, so it leaves delta unchanged);
- lower delta: borrow the underlying and sell it (aave_borrow), or withdraw underlying collateral and sell it
  (spot_swap); the quote asset received may repay quote-asset debt or be supplied.

minimise   Σ (swap fee + impact + carry over the horizon)_i · x_i + Σ gas_i · z_i + P · (s⁺ + s⁻)
subject to Σ delta_i · x_i + s⁺ − s⁻ = target − delta              (delta back to target; slack only if it must)
           Σ surplus_i · x_i ≥ −max(h0, 0)  over all and over the surplus-lowering trades alone, where
               h = Σ collateral·LT − HF_min · debt (USD) and h0 its value now: the HF stays ≥ its min throughout
           Σ quote_i · x_i ≥ 0                                       (the quote asset spent is funded)
           min_i · z_i ≤ x_i ≤ max_i · z_i,  z_i ∈ {0, 1}     (max_i within max_notional_per_tx_usd)

Swap costs are linearised at the size of the whole gap; the plan's prediction re-runs the exact risk engine.
The penalty P (1 USD per USD of residual delta) exceeds any real trade's cost, so slack is used only where a
limit makes the target unreachable, and `limited_by` then names the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from agent.model import Action
from agent.planner.book import (
    Book,
    Steps,
    add_removal,
    removal_proceeds,
    swap_step,
)
from agent.planner.costs import CostModel, base_units, usd
from agent.planner.hedge_candidates import Candidate, candidates, quote_symbol, surplus_usd
from agent.planner.outcome import DUST_USD, CappedPlanner, Outcome
from agent.planner.search import least
from agent.policy import Policy

SLACK_PENALTY_PER_USD = 1.0
_TIE_BREAK = 1e-9  # per candidate index: equal costs resolve the same way every time


@dataclass(frozen=True, slots=True)
class HedgeChoice:
    """The optimiser's answer: USD per candidate (only those used), residual delta it could not remove, and the
    limit that left it ("" when none)."""

    sizes_usd: tuple[tuple[Candidate, float], ...]
    residual_usd: float
    limited_by: str


def choose(cands: list[Candidate], gap_usd: float, h0_usd: float, policy: Policy) -> HedgeChoice:
    """Solve the programme of the module docstring; return the sizes of the candidates used."""
    n = len(cands)
    if n == 0:
        return HedgeChoice((), gap_usd, "no_instrument")
    # x_0..x_{n-1}, z_0..z_{n-1}, s+, s-
    size = 2 * n + 2
    cost = np.zeros(size)
    for i, c in enumerate(cands):
        cost[i] = c.cost_per_usd + _TIE_BREAK * (i + 1)
        cost[n + i] = c.gas_usd
    cost[2 * n] = cost[2 * n + 1] = SLACK_PENALTY_PER_USD
    rows, lower, upper = _constraints(cands, gap_usd, h0_usd)
    integrality = np.zeros(size)
    integrality[n:2 * n] = 1
    bounds_upper = np.concatenate([[c.max_usd for c in cands], np.ones(n), [np.inf, np.inf]])
    result = milp(cost, constraints=LinearConstraint(rows, lower, upper), integrality=integrality,
                  bounds=Bounds(np.zeros(size), bounds_upper), options={"presolve": True})
    if result.x is None:
        return HedgeChoice((), gap_usd, "no_instrument")
    x = result.x
    sizes = tuple((c, float(x[i])) for i, c in enumerate(cands) if x[n + i] > 0.5 and x[i] > 1e-6)
    residual = float(x[2 * n] - x[2 * n + 1])
    limited = ""
    if abs(residual) > 1.0:
        limited = _limit(cands, sizes, gap_usd, policy)
    return HedgeChoice(sizes, residual, limited)


def _constraints(cands: list[Candidate], gap_usd: float, h0_usd: float) -> tuple[np.ndarray, list[float], list[float]]:
    """Return the programme's constraint rows over (x, z, s⁺, s⁻) with their lower and upper bounds."""
    n = len(cands)
    floor = -max(h0_usd, 0.0)
    rows, lower, upper = [], [], []

    def row(coefficients: list[float], low: float, high: float) -> None:
        r = np.zeros(2 * n + 2)
        r[:n] = coefficients
        rows.append(r)
        lower.append(low)
        upper.append(high)

    row([c.delta_per_usd for c in cands], gap_usd, gap_usd)
    rows[-1][2 * n], rows[-1][2 * n + 1] = 1.0, -1.0  # the slack
    row([c.surplus_per_usd for c in cands], floor, np.inf)
    row([c.surplus_per_usd if c.lowers_surplus else 0.0 for c in cands], floor, np.inf)
    row([c.quote_per_usd for c in cands], 0.0, np.inf)
    for i, c in enumerate(cands):
        for bound, low, high in ((c.max_usd, -np.inf, 0.0), (c.min_usd, 0.0, np.inf)):  # x ≤ max·z, x ≥ min·z
            r = np.zeros(2 * n + 2)
            r[i], r[n + i] = 1.0, -bound
            rows.append(r)
            lower.append(low)
            upper.append(high)
    return np.array(rows), lower, upper


def _limit(cands: list[Candidate], sizes: tuple[tuple[Candidate, float], ...], gap: float, policy: Policy) -> str:
    cap = policy.limits.max_notional_per_tx_usd
    if abs(gap) < policy.hedging.min_trade_usd:
        return "min_trade_usd"
    if any(abs(x - cap) < 1e-6 * cap for _c, x in sizes):
        return "max_notional_per_tx_usd"
    if any(c.surplus_per_usd < 0 for c in cands):
        return "health_factor_min"
    return "no_funds"


def plan_hedge(book: Book, costs: CostModel, policy: Policy, delta_usd: float, target_usd: float,
               hf_min: float, reason: str) -> Outcome:
    """Return the cheapest steps that move the book's delta from `delta_usd` to `target_usd`, keeping the health
    factor ≥ `hf_min` (or not lowering it when it is already below)."""
    gap = target_usd - delta_usd
    cands = candidates(book, costs, policy, gap, hf_min)
    choice = choose(cands, gap, surplus_usd(book, hf_min), policy)
    steps = Steps(book, costs)
    if choice.sizes_usd:
        plan_text = ", ".join(f"{c.instrument}:{c.name} {x:,.0f} USD" for c, x in choice.sizes_usd)
        _Emitter(steps, policy, f"{reason}; cheapest: {plan_text}").emit(choice)
    return Outcome(tuple(steps.actions), steps.book, choice.limited_by)


# The candidates that raise delta: they buy the underlying with the quote asset. A choice without them lowers delta.
_BUYS = ("repay_debt", "buy_and_supply")


class _Emitter(CappedPlanner):
    """Turns a hedge choice into steps: the perp trade, then the spot and lending steps of one direction."""

    def __init__(self, steps: Steps, policy: Policy, why: str) -> None:
        super().__init__(steps, policy)
        self.why = why
        self.u = steps.book.underlying

    def emit(self, choice: HedgeChoice) -> None:
        sizes = {c.name: (c, x) for c, x in choice.sizes_usd}
        perp = sizes.pop("perp", None)
        if perp is not None:
            c, x = perp
            self.steps.add(perp_step(self.steps.book, self.costs, c.delta_per_usd * x, self.slippage_bps, self.why))
            if not sizes:
                return
        q = quote_symbol(self.steps.book, self.costs)
        assert q is not None
        if any(name in sizes for name in _BUYS):
            self.raise_delta(q, sizes)
        else:
            self.lower_delta(q, sizes)

    def raise_delta(self, q: str, sizes: dict[str, tuple[Candidate, float]]) -> None:
        """Fund the quote asset, buy the underlying, repay underlying debt with it (when chosen) and supply the
        rest. Only what is certain to arrive goes into Aave: LP proceeds and the swaps' minimum output."""
        u_before = self.steps.book.balance(self.u)
        for name, (c, x) in sizes.items():
            if name == "withdraw_quote":
                self.aave("withdraw", q, self.units(x, q))
            elif c.lp_token_id:
                self.remove_for_quote(c.lp_token_id, q, x)
        got_u = self.steps.book.balance(self.u) - u_before
        got_u += self.buy(q, self.units(sum(x for name, (_c, x) in sizes.items() if name in _BUYS), self.u))
        reserve = self.steps.book.reserve(self.u)
        assert reserve is not None
        repay = min(got_u, reserve.variable_debt_base_units) if "repay_debt" in sizes else 0
        if repay:
            self.aave("repay", self.u, repay)
        if got_u - repay > 0:
            self.aave("supply", self.u, got_u - repay)

    def lower_delta(self, q: str, sizes: dict[str, tuple[Candidate, float]]) -> None:
        """Borrow or withdraw the underlying, sell it, repay quote-asset debt (when chosen) and supply the rest
        (when chosen)."""
        sold = 0
        if "borrow_and_sell" in sizes:
            amount = self.units(sizes["borrow_and_sell"][1], self.u)
            self.aave("borrow", self.u, amount)
            sold += amount
        if "withdraw_and_sell" in sizes:
            reserve = self.steps.book.reserve(self.u)
            assert reserve is not None
            amount = min(self.units(sizes["withdraw_and_sell"][1], self.u), reserve.collateral_base_units)
            self.aave("withdraw", self.u, amount)
            sold += amount
        got_q = self.swap(self.u, q, sold) if sold else 0
        if "repay_quote_debt" in sizes:
            reserve = self.steps.book.reserve(q)
            assert reserve is not None
            repay = min(got_q, reserve.variable_debt_base_units, self.units(sizes["repay_quote_debt"][1], q) + 1)
            if repay:
                self.aave("repay", q, repay)
                got_q -= repay
        if "supply_quote" in sizes and got_q > 0:
            self.aave("supply", q, got_q)

    def remove_for_quote(self, token_id: int, q: str, quote_usd: float) -> None:
        """Remove the liquidity of LP `token_id` that pays `quote_usd` of the quote asset."""
        position = self.steps.book.lp(token_id)
        amount0, amount1 = removal_proceeds(position, position.liquidity)
        q_all = amount0 if position.token0.symbol == q else amount1
        wanted = self.units(quote_usd, q)
        liquidity = min(position.liquidity, int(position.liquidity * wanted / q_all) + 1) if q_all else 0
        add_removal(self.steps, token_id, liquidity, self.policy.limits.max_notional_per_tx_usd, self.why)

    def buy(self, q: str, wanted_u: int) -> int:
        """Swap the least of the quote asset held whose minimum output is `wanted_u` of the underlying (all of it
        when that falls short); return the minimum output."""
        start = self.steps.book

        def min_out(amount: int) -> int:
            step = swap_step(start, self.costs, q, self.u, amount, self.slippage_bps, "")
            return Steps(start, self.costs).add(step).min_amount_out_base_units if amount else 0

        amount_q = least(lambda a: min_out(a) >= wanted_u, start.balance(q))
        return self.swap(q, self.u, amount_q) if amount_q else 0

    def units(self, amount_usd: float, symbol: str) -> int:
        return base_units(amount_usd, self.steps.book.token(symbol), self.costs.prices_usd[symbol])

    def aave(self, kind: str, symbol: str, amount: int) -> None:
        """Add an Aave action, split into transactions within the per-transaction notional cap (nothing for dust)."""
        if usd(amount, self.steps.book.token(symbol), self.costs.prices_usd[symbol]) < DUST_USD:
            return
        self.steps.add_aave(kind, symbol, amount, self.cap_units(symbol), self.why)

    def swap(self, symbol_in: str, symbol_out: str, amount: int) -> int:
        """Add a swap split within the cap; return the sum of the parts' minimum outputs."""
        return self.steps.add_swaps(symbol_in, symbol_out, amount, self.cap_units(symbol_in), self.slippage_bps,
                                    self.why)


def perp_step(book: Book, costs: CostModel, delta_usd: float, max_slippage_bps: float, reason: str) -> Action:
    """Return the perp trade that moves delta by `delta_usd` (signed), accepting a fill up to `max_slippage_bps`
    worse than the index price (the trade's own price impact included)."""
    market = costs.perp_market(book.chain, book.underlying)
    assert market is not None
    price = market.index_price_usd
    size = int(delta_usd / price * 1e18)
    side = 1 if size > 0 else -1
    acceptable = int(price * (1 + side * max_slippage_bps / 1e4) * 1e18)
    notional = abs(size) / 1e18 * price
    fill = market.fill_price_usd(size / 1e18)
    cost = abs(size) / 1e18 * (fill * market.fee_fraction + side * (fill - price)) + costs.gas_usd("perp", book.chain)
    return Action("perp", book.chain, "perps", book.underlying, size, notional, reason, cost_usd=cost,
                  acceptable_price_1e18=acceptable)


def actions_text(actions: tuple[Action, ...]) -> str:
    """Return a one-line summary of actions: kind, asset and USD notional of each."""
    return "; ".join(f"{a.kind} {a.asset}{'→' + a.asset_out if a.asset_out else ''} {a.notional_usd:,.0f} USD"
                     for a in actions)
