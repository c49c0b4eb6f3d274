"""The trades the delta optimiser (`hedge.py`) may size, each with its coefficients per USD of notional: its effect
on delta, on the health-factor surplus h = Σ collateral·LT − HF_min·debt (as Aave counts it: e-mode thresholds at
the Aave oracle's prices), on the quote-asset balance, and its cost."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model import AaveAccount, AaveReserve, LpPosition, Token
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
    """Return the lending and spot trades in the direction of `gap_usd` with what funds them (raising delta) or
    takes their proceeds (lowering it); none without an Aave account, a quote asset or a trade that moves delta."""
    if book.account is None or gap_usd == 0 or book.underlying not in costs.prices_usd:
        return []
    q = quote_symbol(book, costs)
    if q is None:
        return []
    spot = _Spot(book, costs, policy, q, hf_min)
    if gap_usd > 0:
        buys = spot.buys(gap_usd)
        return buys + spot.quote_sources() if buys else []
    sells = spot.sells(-gap_usd)
    return sells + spot.quote_sinks() if sells else []


class _Spot:
    """The spot and lending candidates of one book, against quote asset `q`."""

    def __init__(self, book: Book, costs: CostModel, policy: Policy, q: str, hf_min: float) -> None:
        assert book.account is not None
        self.book, self.costs, self.q, self.hf_min = book, costs, q, hf_min
        self.u = book.underlying
        self.allowed = set(policy.hedging.instruments)
        self.cap, self.min_trade = policy.limits.max_notional_per_tx_usd, policy.hedging.min_trade_usd
        self.res_u, self.res_q = book.reserve(self.u), book.reserve(q)
        # The health factor counts a reserve at its e-mode threshold and the Aave oracle's price: per USD traded at
        # the feed price, a collateral adds LT × (Aave price / feed price) of surplus.
        price, res_q = costs.prices_usd, self.res_q
        self.lt_u = _aave_weight(book.account, self.res_u, price[self.u])
        self.lt_q = _aave_weight(book.account, res_q, price[q]) if res_q and res_q.usage_as_collateral else 0.0
        self.lt_q_new = _aave_weight(book.account, res_q, price[q]) if res_q and (
            res_q.usage_as_collateral or res_q.collateral_base_units == 0) else 0.0

    def gas(self, *kinds: str) -> float:
        return sum(self.costs.gas_usd(k, self.book.chain) for k in kinds)

    def carry(self, apr_by_symbol: dict[str, float], symbol: str) -> float:
        """The interest one USD earns or pays over the hedge horizon at `symbol`'s rate."""
        return apr_by_symbol.get(symbol, 0.0) * self.costs.horizon_years

    def usd(self, amount: int, token: Token, symbol: str) -> float:
        return usd(amount, token, self.costs.prices_usd[symbol])

    def buys(self, gap_usd: float) -> list[Candidate]:
        """Raising delta: repay underlying debt with underlying bought, or buy it and supply it."""
        c_buy = self.costs.swap_cost_rate(self.book.chain, self.q, self.u, gap_usd)
        res_u, borrow_apr, supply_apr = self.res_u, self.costs.borrow_apr, self.costs.supply_apr
        out = []
        debt_u = self.usd(res_u.variable_debt_base_units, res_u.token, self.u) if res_u else 0.0
        if "aave_borrow" in self.allowed and debt_u > 0:
            out.append(Candidate("repay_debt", "aave_borrow", delta_per_usd=1.0, surplus_per_usd=self.hf_min,
                                 quote_per_usd=-(1 + c_buy), cost_per_usd=c_buy - self.carry(borrow_apr, self.u),
                                 gas_usd=self.gas("swap", "repay"), max_usd=min(debt_u, self.cap),
                                 min_usd=self.min_trade))
        if "spot_swap" in self.allowed and res_u is not None and res_u.liquidation_threshold_bps:
            out.append(Candidate("buy_and_supply", "spot_swap", delta_per_usd=1.0, surplus_per_usd=self.lt_u,
                                 quote_per_usd=-(1 + c_buy), cost_per_usd=c_buy - self.carry(supply_apr, self.u),
                                 gas_usd=self.gas("swap", "supply"), max_usd=self.cap, min_usd=self.min_trade))
        return out

    def quote_sources(self) -> list[Candidate]:
        """What pays for the buys: the idle quote asset, quote-asset collateral withdrawn, LP liquidity removed."""
        q, res_q = self.q, self.res_q
        out = []
        idle_q = self.usd(self.book.balance(q), self.book.token(q), q)
        if idle_q > 0:
            out.append(Candidate("idle_quote", "funding", delta_per_usd=0.0, surplus_per_usd=0.0, quote_per_usd=1.0,
                                 cost_per_usd=0.0, gas_usd=0.0, max_usd=idle_q, min_usd=0.0))
        if res_q is not None and res_q.collateral_base_units:
            coll_q = self.usd(res_q.collateral_base_units, res_q.token, q)
            out.append(Candidate("withdraw_quote", "funding", delta_per_usd=0.0, surplus_per_usd=-self.lt_q,
                                 quote_per_usd=1.0, cost_per_usd=self.carry(self.costs.supply_apr, q),
                                 gas_usd=self.gas("withdraw"), max_usd=min(coll_q, self.cap), min_usd=0.0,
                                 lowers_surplus=True))
        for position in self.book.lps:
            source = self.lp_source(position)
            if source is not None:
                out.append(source)
        return out

    def lp_source(self, position: LpPosition) -> Candidate | None:
        """Removing liquidity from an LP position of the underlying and the quote asset (None for another pair or
        one with no quote asset in it)."""
        u, q = self.u, self.q
        symbols = (position.token0.symbol, position.token1.symbol)
        if set(symbols) != {u, q} or position.liquidity == 0:
            return None
        amount0, amount1 = removal_proceeds(position, position.liquidity)
        held = {symbols[0]: amount0, symbols[1]: amount1}
        lp_q = self.usd(held[q], self.book.token(q), q)
        lp_u = self.usd(held[u], self.book.token(u), u)
        if lp_q <= 0:
            return None
        # Its underlying goes into Aave too (repaid or supplied), adding at least LT_u of surplus; delta moves by
        # that underlying less the LP delta removed, which the risk engine takes at the oracle price.
        price = self.costs.prices_usd
        lp_delta = float(lp_math.valuation(position, u, price[u], price[q]).delta_underlying) * price[u]
        return Candidate(f"lp_{position.token_id}", "funding", delta_per_usd=(lp_u - lp_delta) / lp_q,
                         surplus_per_usd=min(self.lt_u, self.hf_min) * lp_u / lp_q, quote_per_usd=1.0,
                         cost_per_usd=0.0, gas_usd=self.gas("remove_liquidity"), max_usd=min(lp_q, self.cap),
                         min_usd=0.0, lp_token_id=position.token_id)

    def sells(self, gap_usd: float) -> list[Candidate]:
        """Lowering delta by `gap_usd`: borrow the underlying and sell it, or withdraw underlying collateral and
        sell it."""
        c_sell = self.costs.swap_cost_rate(self.book.chain, self.u, self.q, gap_usd)
        res_u, borrow_apr, supply_apr = self.res_u, self.costs.borrow_apr, self.costs.supply_apr
        out = []
        if "aave_borrow" in self.allowed and res_u is not None:
            borrowable = _available_borrows_usd(self.book)
            if borrowable > 0:
                out.append(Candidate("borrow_and_sell", "aave_borrow", delta_per_usd=-1.0,
                                     surplus_per_usd=-self.hf_min, quote_per_usd=1 - c_sell,
                                     cost_per_usd=c_sell + self.carry(borrow_apr, self.u),
                                     gas_usd=self.gas("borrow", "swap"), max_usd=min(borrowable, self.cap),
                                     min_usd=self.min_trade, lowers_surplus=True))
        if "spot_swap" in self.allowed and res_u is not None and res_u.collateral_base_units:
            coll_u = self.usd(res_u.collateral_base_units, res_u.token, self.u)
            out.append(Candidate("withdraw_and_sell", "spot_swap", delta_per_usd=-1.0,
                                 surplus_per_usd=-self.lt_u if res_u.usage_as_collateral else 0.0,
                                 quote_per_usd=1 - c_sell, cost_per_usd=c_sell + self.carry(supply_apr, self.u),
                                 gas_usd=self.gas("withdraw", "swap"), max_usd=min(coll_u, self.cap),
                                 min_usd=self.min_trade, lowers_surplus=True))
        return out

    def quote_sinks(self) -> list[Candidate]:
        """Where the sales' proceeds go: repaying quote-asset debt or supplying the quote asset."""
        q, res_q = self.q, self.res_q
        if res_q is None:
            return []
        out = []
        if res_q.variable_debt_base_units:
            debt_q = self.usd(res_q.variable_debt_base_units, res_q.token, q)
            out.append(Candidate("repay_quote_debt", "sink", delta_per_usd=0.0, surplus_per_usd=self.hf_min,
                                 quote_per_usd=-1.0, cost_per_usd=-self.carry(self.costs.borrow_apr, q),
                                 gas_usd=self.gas("repay"), max_usd=min(debt_q, self.cap), min_usd=0.0))
        out.append(Candidate("supply_quote", "sink", delta_per_usd=0.0, surplus_per_usd=self.lt_q_new,
                             quote_per_usd=-1.0, cost_per_usd=-self.carry(self.costs.supply_apr, q),
                             gas_usd=self.gas("supply"), max_usd=self.cap, min_usd=0.0))
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
