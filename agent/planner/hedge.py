"""Choose how to bring delta back to target at the least cost: a mixed-integer linear programme (scipy's HiGHS).

Variables are USD notionals of the underlying moved by each candidate trade, each with a binary "used" indicator:

- raise delta: repay underlying debt with underlying bought (aave_borrow), or buy the underlying and supply it
  (spot_swap); the quote asset they spend comes from the idle balance, quote-asset collateral withdrawn, or LP
  liquidity removed (whose underlying part is put into Aave too, so it leaves delta unchanged);
- lower delta: borrow the underlying and sell it (aave_borrow), or withdraw underlying collateral and sell it
  (spot_swap); the quote asset received may repay quote-asset debt or be supplied.

minimise   Σ (swap fee + impact + carry over the horizon)_i · x_i + Σ gas_i · z_i + P · (s⁺ + s⁻)
subject to Σ delta_i · x_i + s⁺ − s⁻ = target − delta              (delta back to target; slack only if it must)
           Σ hf_i · x_i ≥ −max(h0, 0)  over all and over the HF-lowering trades alone, where
               h = Σ collateral·LT − HF_min · debt (USD) and h0 its value now: the HF stays ≥ its min throughout
           Σ quote_i · x_i ≥ 0                                       (the quote asset spent is funded)
           min_trade_usd · z_i ≤ x_i ≤ min(upper_i, max_notional_per_tx_usd) · z_i,  z_i ∈ {0, 1}

Swap costs are linearised at the size of the whole gap; the plan's prediction re-runs the exact risk engine.
The penalty P (1 USD per USD of residual delta) exceeds any real trade's cost, so slack is used only where a
limit makes the target unreachable, and `limited_by` then names the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from agent.model import Action, LpPosition
from agent.planner.book import (
    Book,
    Steps,
    aave_step,
    add_removal,
    chunks,
    removal_proceeds,
    swap_step,
)
from agent.planner.costs import CostModel, base_units, usd
from agent.planner.hedge_candidates import Candidate, candidates, quote_symbol, surplus_usd
from agent.planner.outcome import DUST_USD, Outcome
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
        cost[n + i] = c.fixed_usd
    cost[2 * n] = cost[2 * n + 1] = SLACK_PENALTY_PER_USD
    rows, lower, upper = [], [], []
    delta = np.zeros(size)
    delta[:n] = [c.delta for c in cands]
    delta[2 * n], delta[2 * n + 1] = 1.0, -1.0
    rows.append(delta)
    lower.append(gap_usd)
    upper.append(gap_usd)
    floor = -max(h0_usd, 0.0)
    hf_all = np.zeros(size)
    hf_all[:n] = [c.hf for c in cands]
    rows.append(hf_all)
    lower.append(floor)
    upper.append(np.inf)
    hf_lowering = np.zeros(size)
    hf_lowering[:n] = [c.hf if c.lowers_hf else 0.0 for c in cands]
    rows.append(hf_lowering)
    lower.append(floor)
    upper.append(np.inf)
    funded = np.zeros(size)
    funded[:n] = [c.quote for c in cands]
    rows.append(funded)
    lower.append(0.0)
    upper.append(np.inf)
    for i, c in enumerate(cands):
        on = np.zeros(size)
        on[i], on[n + i] = 1.0, -c.upper_usd  # x ≤ upper·z
        rows.append(on)
        lower.append(-np.inf)
        upper.append(0.0)
        least = np.zeros(size)
        least[i], least[n + i] = 1.0, -c.min_usd  # x ≥ min·z
        rows.append(least)
        lower.append(0.0)
        upper.append(np.inf)
    integrality = np.zeros(size)
    integrality[n:2 * n] = 1
    bounds_upper = np.concatenate([[c.upper_usd for c in cands], np.ones(n), [np.inf, np.inf]])
    result = milp(cost, constraints=LinearConstraint(np.array(rows), lower, upper), integrality=integrality,
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


def _limit(cands: list[Candidate], sizes: tuple[tuple[Candidate, float], ...], gap: float, policy: Policy) -> str:
    cap = policy.limits.max_notional_per_tx_usd
    if abs(gap) < policy.hedging.min_trade_usd:
        return "min_trade_usd"
    if any(abs(x - cap) < 1e-6 * cap for _c, x in sizes):
        return "max_notional_per_tx_usd"
    if any(c.hf < 0 for c in cands):
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
        _emit(steps, costs, policy, choice, reason)
    return Outcome(tuple(steps.actions), steps.book, choice.limited_by)


def _emit(steps: Steps, costs: CostModel, policy: Policy, choice: HedgeChoice, reason: str) -> None:
    book = steps.book
    u = book.underlying
    price = costs.prices_usd
    sizes = {c.name: x for c, x in choice.sizes_usd}
    by_name = {c.name: c for c, _x in choice.sizes_usd}
    slip = policy.hedging.max_slippage_bps
    plan_text = ", ".join(f"{c.instrument}:{c.name} {x:,.0f} USD" for c, x in choice.sizes_usd)
    why = f"{reason}; cheapest: {plan_text}"
    if "perp" in sizes:
        steps.add(perp_step(book, costs, by_name["perp"].delta * sizes.pop("perp"), slip, why))
        if not sizes:
            return
        book = steps.book
    q = quote_symbol(book, costs)
    assert q is not None
    if "repay_debt" in sizes or "buy_and_supply" in sizes:
        u_before = book.balance(u)
        for name, x in sizes.items():
            candidate = by_name[name]
            if candidate.instrument != "funding" or name == "idle_quote":
                continue
            if name == "withdraw_quote":
                _aave(steps, policy, "withdraw", q, base_units(x, book.token(q), price[q]), why)
            else:
                position = steps.book.lp(candidate.position_id)
                _, q_all = _lp_quote(position, q)
                x_units = base_units(x, book.token(q), price[q])
                liquidity = min(position.liquidity, int(position.liquidity * x_units / q_all) + 1) if q_all else 0
                add_removal(steps, position.token_id, liquidity, policy.limits.max_notional_per_tx_usd, why)
        wanted_u = base_units(sizes.get("repay_debt", 0.0) + sizes.get("buy_and_supply", 0.0), book.token(u), price[u])
        available_q = steps.book.balance(q)
        start = steps.book

        def bought(amount: int) -> int:
            return Steps(start, costs).add(swap_step(start, costs, q, u, amount, slip, "")).min_amount_out_base_units \
                if amount else 0

        amount_q = least(lambda a: bought(a) >= wanted_u, available_q)
        lp_u = steps.book.balance(u) - u_before
        # Only what is certain to arrive is put into Aave: LP proceeds and the swap's minimum output.
        got_u = lp_u
        if amount_q:
            got_u += _swap(steps, policy, q, u, amount_q, why)
        reserve = steps.book.reserve(u)
        assert reserve is not None
        repay = min(got_u, reserve.variable_debt_base_units) if "repay_debt" in sizes or got_u else 0
        if "buy_and_supply" in sizes and "repay_debt" not in sizes:
            repay = 0
        if repay:
            _aave(steps, policy, "repay", u, repay, why)
        rest = got_u - repay
        if rest > 0:
            _aave(steps, policy, "supply", u, rest, why)
        return
    sold = 0
    if "borrow_and_sell" in sizes:
        amount = base_units(sizes["borrow_and_sell"], book.token(u), price[u])
        _aave(steps, policy, "borrow", u, amount, why)
        sold += amount
    if "withdraw_and_sell" in sizes:
        reserve = steps.book.reserve(u)
        assert reserve is not None
        amount = min(base_units(sizes["withdraw_and_sell"], book.token(u), price[u]), reserve.collateral_base_units)
        _aave(steps, policy, "withdraw", u, amount, why)
        sold += amount
    got_q = 0
    if sold:
        got_q = _swap(steps, policy, u, q, sold, why)
    if "repay_quote_debt" in sizes:
        reserve = steps.book.reserve(q)
        assert reserve is not None
        repay = min(got_q, reserve.variable_debt_base_units, base_units(sizes["repay_quote_debt"], book.token(q),
                                                                         price[q]) + 1)
        if repay:
            _aave(steps, policy, "repay", q, repay, why)
            got_q -= repay
    if "supply_quote" in sizes and got_q > 0:
        _aave(steps, policy, "supply", q, got_q, why)


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


def _cap_units(steps: Steps, policy: Policy, symbol: str) -> int:
    return base_units(policy.limits.max_notional_per_tx_usd, steps.book.token(symbol),
                      steps.costs.prices_usd[symbol])


def _aave(steps: Steps, policy: Policy, kind: str, symbol: str, amount: int, why: str) -> None:
    """Add an Aave action, split into transactions within the per-transaction notional cap (nothing for dust)."""
    if usd(amount, steps.book.token(symbol), steps.costs.prices_usd[symbol]) < DUST_USD:
        return
    for part in chunks(amount, _cap_units(steps, policy, symbol)):
        steps.add(aave_step(steps.book, steps.costs, kind, symbol, part, why))


def _swap(steps: Steps, policy: Policy, symbol_in: str, symbol_out: str, amount: int, why: str) -> int:
    """Add a swap split within the cap; return the sum of the parts' minimum outputs."""
    received = 0
    for part in chunks(amount, _cap_units(steps, policy, symbol_in)):
        received += steps.add(swap_step(steps.book, steps.costs, symbol_in, symbol_out, part,
                                        policy.hedging.max_slippage_bps, why)).min_amount_out_base_units
    return received


def _lp_quote(position: LpPosition, q: str) -> tuple[int, float]:
    """Return the side (0, 1) of the quote asset in an LP position and how much of it removing everything pays
    (USD at the quote asset's price of 1 per base unit is not assumed: base units)."""
    amount0, amount1 = removal_proceeds(position, position.liquidity)
    return (0, amount0) if position.token0.symbol == q else (1, amount1)


def actions_text(actions: tuple[Action, ...]) -> str:
    """Return a one-line summary of actions: kind, asset and USD notional of each."""
    return "; ".join(f"{a.kind} {a.asset}{'→' + a.asset_out if a.asset_out else ''} {a.notional_usd:,.0f} USD"
                     for a in actions)
