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
from agent.planner.deleverage import DUST_USD, Outcome
from agent.planner.search import least
from agent.policy import Policy
from agent.risk import lending, perps
from agent.risk import lp as lp_math

SLACK_PENALTY_PER_USD = 1.0
_TIE_BREAK = 1e-9  # per candidate index: equal costs resolve the same way every time


@dataclass(frozen=True, slots=True)
class Candidate:
    """One trade the optimiser may size: per USD of notional, its effect on delta (USD), on the health-factor
    surplus h (USD), on the quote-asset balance (USD, + produces), and its cost; `fixed_usd` is its gas."""

    name: str
    instrument: str
    delta: float
    hf: float
    quote: float
    cost_per_usd: float
    fixed_usd: float
    upper_usd: float
    min_usd: float
    lowers_hf: bool = False
    position_id: int = 0


@dataclass(frozen=True, slots=True)
class HedgeChoice:
    """The optimiser's answer: USD per candidate (only those used), residual delta it could not remove, and the
    limit that left it ("" when none)."""

    sizes_usd: tuple[tuple[Candidate, float], ...]
    residual_usd: float
    limited_by: str


def candidates(book: Book, costs: CostModel, policy: Policy, gap_usd: float, hf_min: float) -> list[Candidate]:
    """Return the trades that can move delta by `gap_usd` (their direction), with their coefficients: the perp's
    and the lending and spot trades'."""
    perp = perp_candidate(book, costs, policy, gap_usd) if "perp" in policy.hedging.instruments else None
    return ([perp] if perp is not None else []) + _spot_candidates(book, costs, policy, gap_usd, hf_min)


def perp_candidate(book: Book, costs: CostModel, policy: Policy, gap_usd: float) -> Candidate | None:
    """Return the perp trade in the direction of `gap_usd`, or None without a perp market or margin there.

    Per USD of notional it costs the venue's fee, its price impact at the size of the whole gap and the funding
    the position pays over the hedge horizon at the skew it leaves; its size is capped by what the equity backs at
    90% of the initial margin (a reduction needs none)."""
    market = costs.perp_market(book.chain, book.underlying)
    position = book.perp()
    if market is None or position is None or gap_usd == 0:
        return None
    price = market.index_price_usd
    side = 1.0 if gap_usd > 0 else -1.0
    size = position.size_underlying
    equity = float(perps.equity_usd(position, price))
    if equity <= 0:
        return None
    backed = 0.9 * equity / market.initial_margin_fraction
    held = abs(size) * price
    capacity = held + backed if size * side < 0 else max(backed - held, 0.0)
    if capacity <= 0:
        return None
    trade = side * abs(gap_usd) / price
    impact = side * (market.skew_underlying + trade / 2) / market.skew_scale_underlying
    skew_after = market.skew_underlying + trade
    hours = costs.horizon_years * 365 * 24
    carry = side * market.max_funding_rate_per_hour * skew_after / market.skew_scale_underlying * hours
    cost = max(market.fee_fraction + impact + carry, 0.0)
    cap = policy.limits.max_notional_per_tx_usd
    return Candidate("perp", "perp", side, 0.0, 0.0, cost, costs.gas_usd("perp", book.chain), min(capacity, cap),
                     policy.hedging.min_trade_usd)


def _spot_candidates(book: Book, costs: CostModel, policy: Policy, gap_usd: float,
                     hf_min: float) -> list[Candidate]:
    account, u = book.account, book.underlying
    if account is None or gap_usd == 0 or u not in costs.prices_usd:
        return []
    allowed = set(policy.hedging.instruments)
    cap = policy.limits.max_notional_per_tx_usd
    min_trade = policy.hedging.min_trade_usd
    h = costs.horizon_years
    price = costs.prices_usd
    quote_symbol = _quote_symbol(book, costs)
    if quote_symbol is None:
        return []
    q = quote_symbol
    res_u, res_q = book.reserve(u), book.reserve(q)
    lt_u = res_u.liquidation_threshold_bps / 1e4 if res_u else 0.0
    lt_q = res_q.liquidation_threshold_bps / 1e4 if res_q and res_q.usage_as_collateral else 0.0
    lt_q_new = res_q.liquidation_threshold_bps / 1e4 if res_q and (res_q.usage_as_collateral or
                                                                  res_q.collateral_base_units == 0) else 0.0
    gas = lambda *kinds: sum(costs.gas_usd(k, book.chain) for k in kinds)  # noqa: E731
    apr = lambda table, s: table.get(s, 0.0) * h  # noqa: E731
    out: list[Candidate] = []
    if gap_usd > 0:
        c_buy = costs.swap_cost_rate(book.chain, q, u, gap_usd)
        debt_u = usd(res_u.variable_debt_base_units, res_u.token, price[u]) if res_u else 0.0
        if "aave_borrow" in allowed and debt_u > 0:
            out.append(Candidate("repay_debt", "aave_borrow", 1.0, hf_min, -(1 + c_buy),
                                 c_buy - apr(costs.borrow_apr, u), gas("swap", "repay"), min(debt_u, cap), min_trade))
        if "spot_swap" in allowed and res_u is not None and res_u.liquidation_threshold_bps:
            out.append(Candidate("buy_and_supply", "spot_swap", 1.0, lt_u, -(1 + c_buy),
                                 c_buy - apr(costs.supply_apr, u), gas("swap", "supply"), cap, min_trade))
        if not out:
            return []
        idle_q = usd(book.balance(q), book.token(q), price[q])
        if idle_q > 0:
            out.append(Candidate("idle_quote", "funding", 0.0, 0.0, 1.0, 0.0, 0.0, idle_q, 0.0))
        if res_q is not None and res_q.collateral_base_units:
            coll_q = usd(res_q.collateral_base_units, res_q.token, price[q])
            out.append(Candidate("withdraw_quote", "funding", 0.0, -lt_q, 1.0, apr(costs.supply_apr, q),
                                 gas("withdraw"), min(coll_q, cap), 0.0, lowers_hf=True))
        for position in book.lps:
            symbols = (position.token0.symbol, position.token1.symbol)
            if set(symbols) != {u, q} or position.liquidity == 0:
                continue
            amount0, amount1 = removal_proceeds(position, position.liquidity)
            held = {symbols[0]: amount0, symbols[1]: amount1}
            lp_q = usd(held[q], book.token(q), price[q])
            lp_u = usd(held[u], book.token(u), price[u])
            if lp_q <= 0:
                continue
            # Its underlying goes into Aave too (repaid or supplied), adding at least LT_u of surplus; delta moves
            # by that underlying less the LP delta removed, which the risk engine takes at the oracle price.
            lp_delta = float(lp_math.valuation(position, u, price[u], price[q]).delta_underlying) * price[u]
            out.append(Candidate(f"lp_{position.token_id}", "funding", (lp_u - lp_delta) / lp_q,
                                 min(lt_u, hf_min) * lp_u / lp_q, 1.0,
                                 0.0, gas("remove_liquidity"), min(lp_q, cap), 0.0,
                                 position_id=position.token_id))
    else:
        c_sell = costs.swap_cost_rate(book.chain, u, q, -gap_usd)
        if "aave_borrow" in allowed and res_u is not None:
            borrowable = _available_borrows_usd(book)
            if borrowable > 0:
                out.append(Candidate("borrow_and_sell", "aave_borrow", -1.0, -hf_min, 1 - c_sell,
                                     c_sell + apr(costs.borrow_apr, u), gas("borrow", "swap"), min(borrowable, cap),
                                     min_trade, lowers_hf=True))
        if "spot_swap" in allowed and res_u is not None and res_u.collateral_base_units:
            coll_u = usd(res_u.collateral_base_units, res_u.token, price[u])
            out.append(Candidate("withdraw_and_sell", "spot_swap", -1.0, -lt_u if res_u.usage_as_collateral else 0.0,
                                 1 - c_sell, c_sell + apr(costs.supply_apr, u), gas("withdraw", "swap"),
                                 min(coll_u, cap), min_trade, lowers_hf=True))
        if not out:
            return []
        if res_q is not None and res_q.variable_debt_base_units:
            debt_q = usd(res_q.variable_debt_base_units, res_q.token, price[q])
            out.append(Candidate("repay_quote_debt", "sink", 0.0, hf_min, -1.0, -apr(costs.borrow_apr, q),
                                 gas("repay"), min(debt_q, cap), 0.0))
        if res_q is not None:
            out.append(Candidate("supply_quote", "sink", 0.0, lt_q_new, -1.0, -apr(costs.supply_apr, q),
                                 gas("supply"), cap, 0.0))
    return out


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
    choice = choose(cands, gap, _surplus_usd(book, costs, hf_min), policy)
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
    q = _quote_symbol(book, costs)
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


def _quote_symbol(book: Book, costs: CostModel) -> str | None:
    """The asset the underlying is traded against: the largest other reserve of the account with a swap route."""
    if book.account is None:
        return None
    options = []
    for r in book.account.reserves:
        s = r.token.symbol
        if s == book.underlying or not costs.can_swap(book.chain, s, book.underlying) or s not in costs.prices_usd:
            continue
        size = r.collateral_base_units + r.variable_debt_base_units + book.balance(s)
        options.append((usd(size, r.token, costs.prices_usd[s]), s))
    return max(options)[1] if options else None


def _surplus_usd(book: Book, costs: CostModel, hf_min: float) -> float:
    """h = Σ collateral·LT − hf_min·debt, in USD."""
    if book.account is None:
        return 0.0
    total = 0.0
    for r in book.account.reserves:
        p = costs.prices_usd.get(r.token.symbol, 0.0)
        if r.usage_as_collateral:
            total += usd(r.collateral_base_units, r.token, p) * r.liquidation_threshold_bps / 1e4
        total -= hf_min * usd(r.variable_debt_base_units + r.stable_debt_base_units, r.token, p)
    return total


def _available_borrows_usd(book: Book) -> float:
    assert book.account is not None
    return lending.account_data(book.account).available_borrows_1e8 / 1e8 * 0.99


def actions_text(actions: tuple[Action, ...]) -> str:
    """Return a one-line summary of actions: kind, asset and USD notional of each."""
    return "; ".join(f"{a.kind} {a.asset}{'→' + a.asset_out if a.asset_out else ''} {a.notional_usd:,.0f} USD"
                     for a in actions)
