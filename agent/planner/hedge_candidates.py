"""The trades the delta optimiser (`hedge.py`) may size, each with its coefficients per USD of notional: its effect
on delta, on the health-factor surplus h = Σ collateral·LT − HF_min·debt (as Aave counts it: e-mode thresholds at
the Aave oracle's prices), on the quote-asset balance, and its cost."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model import AaveAccount, AaveReserve
from agent.planner.book import Book, removal_proceeds
from agent.planner.costs import CostModel, usd
from agent.policy import Policy
from agent.risk import lending, perps
from agent.risk import lp as lp_math


@dataclass(frozen=True, slots=True)
class Candidate:
    """One trade the optimiser may size between `min_usd` and `max_usd` of notional, with its effects per USD of
    notional: on delta, on the health-factor surplus h, on the quote-asset balance (+ produces, − spends), all in
    USD, and its cost; `gas_usd` is paid once when it is used."""

    name: str
    instrument: str
    delta_per_usd: float
    surplus_per_usd: float
    quote_per_usd: float
    cost_per_usd: float
    gas_usd: float
    max_usd: float
    min_usd: float
    lowers_surplus: bool = False  # counted alone too: the surplus must hold after these, whatever else runs
    lp_token_id: int = 0  # the LP position a liquidity removal takes from


def candidates(book: Book, costs: CostModel, policy: Policy, gap_usd: float, hf_min: float) -> list[Candidate]:
    """Return the trades that can move delta by `gap_usd` (their direction), with their coefficients: the perp's
    and the lending and spot trades'."""
    perp = perp_candidate(book, costs, policy, gap_usd) if "perp" in policy.hedging.instruments else None
    return ([perp] if perp is not None else []) + spot_candidates(book, costs, policy, gap_usd, hf_min)


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
    return Candidate("perp", "perp", delta_per_usd=side, surplus_per_usd=0.0, quote_per_usd=0.0, cost_per_usd=cost,
                     gas_usd=costs.gas_usd("perp", book.chain), max_usd=min(capacity, cap),
                     min_usd=policy.hedging.min_trade_usd)


def spot_candidates(book: Book, costs: CostModel, policy: Policy, gap_usd: float,
                     hf_min: float) -> list[Candidate]:
    account, u = book.account, book.underlying
    if account is None or gap_usd == 0 or u not in costs.prices_usd:
        return []
    allowed = set(policy.hedging.instruments)
    cap = policy.limits.max_notional_per_tx_usd
    min_trade = policy.hedging.min_trade_usd
    h = costs.horizon_years
    price = costs.prices_usd
    found = quote_symbol(book, costs)
    if found is None:
        return []
    q = found
    res_u, res_q = book.reserve(u), book.reserve(q)
    # The health factor counts a reserve at its e-mode threshold and the Aave oracle's price: per USD traded at the
    # feed price, a collateral adds LT × (Aave price / feed price) of surplus.
    lt_u = _aave_weight(account, res_u, price[u])
    lt_q = _aave_weight(account, res_q, price[q]) if res_q and res_q.usage_as_collateral else 0.0
    lt_q_new = _aave_weight(account, res_q, price[q]) if res_q and (
        res_q.usage_as_collateral or res_q.collateral_base_units == 0) else 0.0
    gas = lambda *kinds: sum(costs.gas_usd(k, book.chain) for k in kinds)  # noqa: E731
    apr = lambda table, s: table.get(s, 0.0) * h  # noqa: E731
    out: list[Candidate] = []
    if gap_usd > 0:
        c_buy = costs.swap_cost_rate(book.chain, q, u, gap_usd)
        debt_u = usd(res_u.variable_debt_base_units, res_u.token, price[u]) if res_u else 0.0
        if "aave_borrow" in allowed and debt_u > 0:
            out.append(Candidate("repay_debt", "aave_borrow", delta_per_usd=1.0, surplus_per_usd=hf_min,
                                 quote_per_usd=-(1 + c_buy), cost_per_usd=c_buy - apr(costs.borrow_apr, u),
                                 gas_usd=gas("swap", "repay"), max_usd=min(debt_u, cap), min_usd=min_trade))
        if "spot_swap" in allowed and res_u is not None and res_u.liquidation_threshold_bps:
            out.append(Candidate("buy_and_supply", "spot_swap", delta_per_usd=1.0, surplus_per_usd=lt_u,
                                 quote_per_usd=-(1 + c_buy), cost_per_usd=c_buy - apr(costs.supply_apr, u),
                                 gas_usd=gas("swap", "supply"), max_usd=cap, min_usd=min_trade))
        if not out:
            return []
        idle_q = usd(book.balance(q), book.token(q), price[q])
        if idle_q > 0:
            out.append(Candidate("idle_quote", "funding", delta_per_usd=0.0, surplus_per_usd=0.0, quote_per_usd=1.0,
                                 cost_per_usd=0.0, gas_usd=0.0, max_usd=idle_q, min_usd=0.0))
        if res_q is not None and res_q.collateral_base_units:
            coll_q = usd(res_q.collateral_base_units, res_q.token, price[q])
            out.append(Candidate("withdraw_quote", "funding", delta_per_usd=0.0, surplus_per_usd=-lt_q,
                                 quote_per_usd=1.0, cost_per_usd=apr(costs.supply_apr, q), gas_usd=gas("withdraw"),
                                 max_usd=min(coll_q, cap), min_usd=0.0, lowers_surplus=True))
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
            out.append(Candidate(f"lp_{position.token_id}", "funding", delta_per_usd=(lp_u - lp_delta) / lp_q,
                                 surplus_per_usd=min(lt_u, hf_min) * lp_u / lp_q, quote_per_usd=1.0,
                                 cost_per_usd=0.0, gas_usd=gas("remove_liquidity"), max_usd=min(lp_q, cap),
                                 min_usd=0.0, lp_token_id=position.token_id))
    else:
        c_sell = costs.swap_cost_rate(book.chain, u, q, -gap_usd)
        if "aave_borrow" in allowed and res_u is not None:
            borrowable = _available_borrows_usd(book)
            if borrowable > 0:
                out.append(Candidate("borrow_and_sell", "aave_borrow", delta_per_usd=-1.0, surplus_per_usd=-hf_min,
                                     quote_per_usd=1 - c_sell, cost_per_usd=c_sell + apr(costs.borrow_apr, u),
                                     gas_usd=gas("borrow", "swap"), max_usd=min(borrowable, cap),
                                     min_usd=min_trade, lowers_surplus=True))
        if "spot_swap" in allowed and res_u is not None and res_u.collateral_base_units:
            coll_u = usd(res_u.collateral_base_units, res_u.token, price[u])
            out.append(Candidate("withdraw_and_sell", "spot_swap", delta_per_usd=-1.0,
                                 surplus_per_usd=-lt_u if res_u.usage_as_collateral else 0.0,
                                 quote_per_usd=1 - c_sell, cost_per_usd=c_sell + apr(costs.supply_apr, u),
                                 gas_usd=gas("withdraw", "swap"), max_usd=min(coll_u, cap), min_usd=min_trade,
                                 lowers_surplus=True))
        if not out:
            return []
        if res_q is not None and res_q.variable_debt_base_units:
            debt_q = usd(res_q.variable_debt_base_units, res_q.token, price[q])
            out.append(Candidate("repay_quote_debt", "sink", delta_per_usd=0.0, surplus_per_usd=hf_min,
                                 quote_per_usd=-1.0, cost_per_usd=-apr(costs.borrow_apr, q), gas_usd=gas("repay"),
                                 max_usd=min(debt_q, cap), min_usd=0.0))
        if res_q is not None:
            out.append(Candidate("supply_quote", "sink", delta_per_usd=0.0, surplus_per_usd=lt_q_new,
                                 quote_per_usd=-1.0, cost_per_usd=-apr(costs.supply_apr, q), gas_usd=gas("supply"),
                                 max_usd=cap, min_usd=0.0))
    return out


def quote_symbol(book: Book, costs: CostModel) -> str | None:
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


def surplus_usd(book: Book, hf_min: float) -> float:
    """h = Σ collateral·LT − hf_min·debt, in USD, as Aave counts them (e-mode thresholds, the Aave oracle's prices,
    the pool's truncations)."""
    if book.account is None:
        return 0.0
    data = lending.account_data(book.account)
    return (lending.percent_mul(data.total_collateral_1e8, data.liquidation_threshold_bps)
            - hf_min * data.total_debt_1e8) / 1e8


def _aave_weight(account: AaveAccount, reserve: AaveReserve | None, feed_price_usd: float) -> float:
    """The surplus one USD (at the feed price) of `reserve` as collateral adds: its threshold for this user times
    the ratio of the price Aave counts it at to the feed's (0 without the reserve or a threshold)."""
    if reserve is None or not reserve.liquidation_threshold_bps or feed_price_usd <= 0:
        return 0.0
    aave_usd = lending.effective_price_1e8(account, reserve) / 1e8
    return lending.liquidation_threshold_bps(account, reserve) / 1e4 * aave_usd / feed_price_usd


def _available_borrows_usd(book: Book) -> float:
    assert book.account is not None
    return lending.account_data(book.account).available_borrows_1e8 / 1e8 * 0.99
