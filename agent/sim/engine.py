"""The simulated market, one hourly bar at a time, around the unchanged risk engine and planner.

Each bar: interest accrues at the bar's Aave rates, the LP earns its share of the pool's fees, perps pay the bar's
funding (`sim.conditions`); the bar's low and high are checked for liquidations (`sim.mechanics`); the book is
marked at the close and arbitrageurs take the pool (`sim.pool`) to the close; then the keeper (`sim.keepers`:
the policy or a baseline) decides on a `Snapshot` of the simulated positions (QuoterV2-like quotes of the pool at
the reader's sizes, the bar's gas price as base fee, the perp and options venues as markets), and its actions are
carried out against the market, not the cost model: a swap fills against the pool's liquidity (and moves it), and
reverts when its fill falls short of its minimum output; a later step that needs what an earlier one did not
deliver fails too. The keeper acts once per bar, at its close: a wick can liquidate before it reacts, as it would
a keeper on an hourly schedule.

The plan is refused, as the daemon's guard would refuse it, past `max_daily_turnover_usd` over 24 hours, when a
swap's minimum output is further below the oracle than `max_slippage_bps` (near liquidation,
`emergency_max_slippage_bps`), or when gas is above `max_gas_price_gwei` (lifted near liquidation).
"""

from __future__ import annotations

import dataclasses
import math

from agent.model import (
    AccountHealth,
    Action,
    ChainSnapshot,
    DeskGreeks,
    PerpPosition,
    Plan,
    Position,
    PriceReading,
    RiskReport,
    Snapshot,
    SwapQuote,
    Token,
    TokenBalance,
)
from agent.planner.book import Book
from agent.planner.costs import GAS_UNITS, CostModel
from agent.policy import Policy
from agent.risk import lending
from agent.risk.portfolio import position_risk
from agent.sim.conditions import Conditions, conditions
from agent.sim.keepers import Keeper
from agent.sim.lst import LST, lst_pool, lst_quotes, lst_root
from agent.sim.market import PricePath
from agent.sim.mechanics import accrued, funded, liquidated, lp_fee_base_units, marked
from agent.sim.pool import Pool, liquidity_for_usd
from agent.sim.portfolio import SIM_CHAIN, SIM_OWNER, TOKENS, PortfolioSpec, SimBook, starting_book
from agent.sim.records import ActionRecord, RunResult, empty_run
from agent.sim.venues import listed_series, perp_market

DAY_S = 86_400
QUOTE_NOTIONAL_USD = (10_000.0, 100_000.0)  # what the daemon's reader quotes
TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10_000: 200}


class Simulation:
    """Runs one starting portfolio along one price path and its market conditions, under any keeper."""

    def __init__(self, spec: PortfolioSpec, path: PricePath, market: Conditions | None = None) -> None:
        self.spec = spec
        self.path = path
        self.market = market if market is not None else conditions(path, spec.market)
        self.u = spec.underlying
        self.q = spec.quote
        token0, token1 = sorted((TOKENS[self.u], TOKENS[self.q]), key=lambda t: int(t.address, 16))
        self._tokens = (token0, token1)
        self._ratio = 1.0  # WSTETH's price in the underlying at the current bar (an LST book)
        self._lst_pool: Pool | None = None

    # --- the loop -------------------------------------------------------------------------------------------------

    def run(self, keeper: Keeper | None, label: str | None = None) -> RunResult:
        """Return the portfolio's path under `keeper` (None: nobody manages it)."""
        path, market = self.path, self.market
        n = len(path)
        start = int(path.unix[0])
        pool = self._pool()
        centred = self._recentre(pool, float(path.open[0]))
        self._lst_pool = lst_pool(self.spec.market.lst, float(path.open[0])) if market.lst_ratio is not None \
            else None
        self._at_bar(0)
        book = starting_book(self.spec, float(path.open[0]), start)
        book = marked(book, self.u, self.q, float(path.open[0]), start, float(market.vol_annual[0]), self._pegged())
        policy = keeper.policy if keeper is not None else None
        result = empty_run(label or (keeper.label if keeper is not None else "unmanaged"), policy, path.unix,
                           path.close)
        result.start_value_usd = self._value(book, float(path.open[0]), start)
        result.start_price_usd = float(path.open[0])
        result.start_delta_usd = self._gate_report(book, float(path.open[0]), start).total.delta_usd
        turnover: list[tuple[int, float]] = []
        for i in range(n):
            now = int(path.unix[i]) + 3600  # the bar's close
            hours = 1.0 if i == 0 else (int(path.unix[i]) - int(path.unix[i - 1])) / 3600.0
            low, high, close = float(path.low[i]), float(path.high[i]), float(path.close[i])
            book = self._accrued(book, i, hours, pool)
            self._at_bar(i)
            bar_min = math.inf
            for extreme in (low, high):
                book, hf = liquidated(book, self.u, extreme, now, result.liquidations, self._pegged())
                bar_min = min(bar_min, hf)
            book = marked(book, self.u, self.q, close, now, float(market.vol_annual[i]), self._pegged())
            if now - centred >= self.spec.market.pool.recentre_hours * 3600:
                centred = self._recentre(pool, close, now)
            else:
                pool.move_to(self._root(close))
            report = self._gate_report(book, close, now)
            if keeper is not None and keeper.wants(report, book, close, now):
                before = len(result.actions)
                book = self._keep(book, keeper, pool, i, close, now, turnover, result)
                result.cost_usd[i] = sum(a.cost_usd for a in result.actions[before:])
                report = self._gate_report(book, close, now)
            # The options' time decay (the report lists them last): what holding the protection costs.
            held = report.positions[len(report.positions) - len(book.options):] if book.options else ()
            result.theta_usd -= sum(r.greeks.theta_usd_1d for r in held) * hours / 24.0
            hf = min((a.health_factor for a in report.accounts), default=math.inf)
            result.health_factor[i] = hf
            result.health_factor_bar_min[i] = min(bar_min, hf)
            result.delta_usd[i] = report.total.delta_usd
            result.gamma_usd_1pct[i] = report.total.gamma_usd_1pct
            result.vega_usd_1vol[i] = report.total.vega_usd_1vol
            result.value_usd[i] = report.value_usd + self._wallet_usd(book, close) - book.gas_paid_usd
        return result

    def start_delta_usd(self) -> float:
        """Return the starting portfolio's delta (USD) at the window's first price."""
        start, price = int(self.path.unix[0]), float(self.path.open[0])
        self._at_bar(0)
        book = marked(starting_book(self.spec, price, start), self.u, self.q, price, start,
                      float(self.market.vol_annual[0]), self._pegged())
        return self._gate_report(book, price, start).total.delta_usd

    # --- the market -----------------------------------------------------------------------------------------------

    def _at_bar(self, i: int) -> None:
        """Set the LST's ratio to the underlying at bar `i` and arbitrage its pool there."""
        ratios = self.market.lst_ratio
        if ratios is not None and self._lst_pool is not None:
            self._ratio = float(ratios[i])
            self._lst_pool.move_to(lst_root(self._lst_pool, self._ratio))

    def _pegged(self) -> dict[str, float]:
        return {LST: self._ratio} if self.market.lst_ratio is not None else {}

    def _prices(self, price: float) -> dict[str, float]:
        """Each token's USD price with the underlying at `price`."""
        return {self.u: price, self.q: 1.0, **{s: price * r for s, r in self._pegged().items()}}

    def _pool_for(self, pool: Pool, *tokens: Token) -> Pool:
        """The pool a swap between `tokens` fills in: the LST pool when one of them is the LST."""
        return self._lst_pool if self._lst_pool is not None and any(t.symbol == LST for t in tokens) else pool

    def _pool(self) -> Pool:
        spec = self.spec.market.pool
        return Pool(self._tokens[0], self._tokens[1], spec.fee_pips, TICK_SPACING.get(spec.fee_pips, 10))

    def _root(self, price: float) -> int:
        """The pool's sqrt price (Q96) at which the underlying is worth `price` USD."""
        t0, t1 = self._tokens
        raw = (price if t0.symbol == self.u else 1.0 / price) * 10.0 ** (t1.decimals - t0.decimals)
        return int(math.sqrt(raw) * (1 << 96))

    def _recentre(self, pool: Pool, price: float, now: int = 0) -> int:
        """Lay the other LPs' ranges out around `price`, each holding its USD value there; return `now`."""
        t0, t1 = self._tokens
        root = self._root(price)
        raw = (root / (1 << 96)) ** 2
        p0, p1 = (price, 1.0) if t0.symbol == self.u else (1.0, price)
        ranges = []
        for r in self.spec.market.pool.ranges:
            if r.range == "full":
                lower, upper = pool.full_range()
            else:
                a, b = r.range if t0.symbol == self.u else (1.0 / r.range[1], 1.0 / r.range[0])
                lower, upper = pool.tick_bounds(raw * a, raw * b)
            ranges.append((lower, upper, liquidity_for_usd(root, lower, upper, r.usd, p0, p1, t0, t1)))
        pool.lay_out(root, ranges)
        return now

    def _accrued(self, book: SimBook, i: int, hours: float, pool: Pool) -> SimBook:
        m, path = self.market, self.path
        borrow = {s: float(a[i]) for s, a in m.borrow_apr.items()}
        supply = {s: float(a[i]) for s, a in m.supply_apr.items()}
        volume_usd = float(path.volume[i] * path.close[i]) * self.spec.market.pool_volume_share
        fees = {p.token_id: lp_fee_base_units(p, self.u, self.q, float(path.low[i]), float(path.high[i]), volume_usd,
                                              pool.liquidity) for p in book.lps}
        book = accrued(book, hours, borrow, supply, fees, self.q)
        return funded(book, hours, float(path.close[i]), float(m.funding_per_hour[i]))

    # --- what the keeper sees -------------------------------------------------------------------------------------

    def _positions(self, book: SimBook) -> tuple[Position, ...]:
        head: tuple[Position, ...] = (book.account,) if book.account is not None else ()
        return head + book.lps + book.perps + book.options

    def _gate_report(self, book: SimBook, price: float, now: int) -> RiskReport:
        """The risk report the keepers' triggers read, without the liquidation-distance search: per-position
        value and desk Greeks from `risk.portfolio.position_risk`, and the exact health factor."""
        prices = self._prices(price)
        risks = tuple(position_risk(p, self.u, prices, now) for p in self._positions(book))
        accounts: tuple[AccountHealth, ...] = ()
        if book.account is not None:
            wad = lending.health_factor_wad(book.account)
            accounts = (AccountHealth(SIM_CHAIN, SIM_OWNER, wad, lending.health_factor_float(wad), None, math.inf,
                                      math.inf),)
        total = sum((r.greeks for r in risks), DeskGreeks())
        return RiskReport(self.u, price, risks, total, sum(r.value_usd for r in risks), accounts, math.inf, math.inf)

    def snapshot(self, book: SimBook, price: float, now: int, portfolio: str, i: int, pool: Pool,
                 options: bool) -> Snapshot:
        """Return the simulated positions as the daemon's reader would see them at bar `i`'s close: one chain at
        block time `now`, oracle prices, idle balances, the pool's quotes at the reader's sizes, the bar's gas price,
        the perp venue's market (when the book has a perp) and the listed option series (when `options`)."""
        account = book.account
        if account is not None:
            account = dataclasses.replace(account, reported_health_factor_wad=lending.health_factor_wad(account))
        positions: tuple[Position, ...] = ((account,) if account is not None else ()) + book.lps + book.perps + \
            book.options
        prices = tuple(PriceReading(SIM_CHAIN, s, p, f"sim:{s}", now, 0) for s, p in self._prices(price).items())
        balances = tuple(TokenBalance(SIM_CHAIN, SIM_OWNER, TOKENS[s], book.wallet.get(s, 0))
                         for s in self._prices(price))
        m = self.market
        markets: tuple = ()
        if book.perps:
            markets += (perp_market(self.spec.market.perp, book.perps[0], self.u, self.q, price,
                                    float(m.skew_fraction[i]), float(m.funding_per_hour[i])),)
        if options:
            markets += listed_series(self.spec.market.options, self.u, self.q, price, now, float(m.vol_annual[i]),
                                     book.options)
        base_fee = int(float(m.gas_gwei[i]) * 1e9)
        chain = ChainSnapshot(SIM_CHAIN, 31337, now // 12, "0x" + format(now, "064x"), now, base_fee,
                              positions, prices, balances, self._quotes(pool, price), (), markets)
        return Snapshot(portfolio, SIM_OWNER, self.u, (chain,))

    def _quotes(self, pool: Pool, price: float) -> tuple[SwapQuote, ...]:
        """QuoterV2's answers from the pool's state, at the reader's notional sizes, both ways."""
        out = []
        for notional in QUOTE_NOTIONAL_USD:
            for token_in, token_out, p_in in ((TOKENS[self.u], TOKENS[self.q], price), (TOKENS[self.q],
                                                                                        TOKENS[self.u], 1.0)):
                amount_in = round(notional / p_in * 10**token_in.decimals)
                out.append(SwapQuote(SIM_CHAIN, token_in, token_out, pool.fee_pips, amount_in,
                                     pool.quote(token_in, amount_in), GAS_UNITS["swap"]))
        if self._lst_pool is not None:
            out += lst_quotes(self._lst_pool, self._prices(price), QUOTE_NOTIONAL_USD)
        return tuple(out)

    # --- the keeper acts ------------------------------------------------------------------------------------------

    def _keep(self, book: SimBook, keeper: Keeper, pool: Pool, i: int, price: float, now: int,
              turnover: list[tuple[int, float]], result: RunResult) -> SimBook:
        """One decision at the bar's close: the keeper's plan, the guard's rules, the actions carried out."""
        policy = keeper.policy
        options = "options" in policy.hedging.instruments or bool(book.options)
        snapshot = self.snapshot(book, price, now, policy.portfolio.name, i, pool, options)
        plan = keeper.plan(snapshot, price, now)
        result.plans += 1
        if plan.empty:
            keeper.done(plan, now, price, executed=False)
            return book
        refusal = self._refusal(plan, policy, book, price, now, turnover, float(self.market.gas_gwei[i]))
        if refusal:
            result.refusals.append((now, refusal))
            keeper.done(plan, now, price, executed=False)
            return book
        book = self._execute(book, snapshot, plan.actions, policy, pool, price, now, result, turnover)
        keeper.done(plan, now, price, executed=True)
        return book

    def _execute(self, book: SimBook, snapshot: Snapshot, actions: tuple[Action, ...], policy: Policy, pool: Pool,
                 price: float, now: int, result: RunResult, turnover: list[tuple[int, float]]) -> SimBook:
        """Carry out `actions` in order against the market; stop at the first that reverts."""
        prices = self._prices(price)
        costs = CostModel(snapshot, policy.triggers.max_hedge_age_s, prices)
        after = Book.from_snapshot(snapshot)
        gas_paid = 0.0
        recorded, traded, paid = len(result.actions), len(turnover), result.premium_paid_usd
        pool_state = (pool.sqrt_price_x96, pool.liquidity)
        for action in actions:
            gas = costs.gas_usd(action.kind, action.chain) if action.kind in GAS_UNITS else 0.0
            gas_paid += gas
            try:
                after, fee, slippage = self._carried_out(after, action, costs, pool, prices)
            except ValueError as failure:
                result.actions.append(ActionRecord(now, price, action.kind, _asset(action), action.notional_usd,
                                                   0.0, 0.0, gas, f"reverted ({failure}): {action.reason}",
                                                   action.cost_usd, reverted=True))
                result.refusals.append((now, f"reverted: {action.kind}: {failure}"))
                if policy.portfolio.executor.kind == "safe_module":  # one recipe: all of it reverts, gas is paid
                    after = Book.from_snapshot(snapshot)
                    del result.actions[recorded:-1], turnover[traded:]
                    pool.sqrt_price_x96, pool.liquidity = pool_state
                    result.premium_paid_usd = paid
                break
            # A flash loan's cost is its premium; the other actions' are fees and slippage.
            premium, fee = (fee, 0.0) if action.kind == "flash_loan" else (0.0, fee)
            result.actions.append(ActionRecord(now, price, action.kind, _asset(action), action.notional_usd, fee,
                                               slippage, gas, action.reason, action.cost_usd, premium))
            turnover.append((now, action.notional_usd))
            if action.kind == "option_buy":
                result.premium_paid_usd += action.notional_usd
            elif action.kind == "option_sell":
                result.premium_paid_usd -= action.notional_usd
        perps = tuple(p for p in after.others if isinstance(p, PerpPosition))
        options = tuple(p for p in after.others if not isinstance(p, PerpPosition))
        account = after.account
        if account is not None:
            account = dataclasses.replace(account, reported_health_factor_wad=None)
        return SimBook(account, after.lps, perps, options, dict(after.wallet),  # type: ignore[arg-type]
                       book.gas_paid_usd + gas_paid)

    def _carried_out(self, book: Book, action: Action, costs: CostModel, pool: Pool,
                     prices: dict[str, float]) -> tuple[Book, float, float]:
        """Return the book after `action` as the market fills it, its fee and its slippage (USD); ValueError when
        it reverts."""
        if action.kind == "swap":
            t_in, t_out = TOKENS[action.asset], TOKENS[action.asset_out]
            pool = self._pool_for(pool, t_in, t_out)
            quoted = pool.quote(t_in, action.amount_base_units)
            if quoted < action.min_amount_out_base_units:
                raise ValueError(f"swap pays {quoted} < minimum {action.min_amount_out_base_units} base units of "
                                 f"{t_out.symbol}")
            fill = pool.swap(t_in.address == pool.token0.address, action.amount_base_units)
            predicted = book.apply(action, costs)
            wallet = dict(predicted.wallet)
            wallet[t_out.symbol] += fill.amount_out_base_units - (wallet[t_out.symbol] - book.balance(t_out.symbol))
            value_in = action.amount_base_units / 10**t_in.decimals * prices[t_in.symbol]
            value_out = fill.amount_out_base_units / 10**t_out.decimals * prices[t_out.symbol]
            fee = fill.fee_base_units / 10**t_in.decimals * prices[t_in.symbol]
            return dataclasses.replace(predicted, wallet=tuple(sorted(wallet.items()))), fee, value_in - value_out - fee
        after = book.apply(action, costs)
        if action.kind == "perp":
            market = costs.perp_market(book.chain, book.underlying)
            assert market is not None
            size = action.amount_base_units / 1e18
            fill_price = market.fill_price_usd(size)
            return after, abs(size) * fill_price * market.fee_fraction, size * (fill_price - market.index_price_usd)
        if action.kind in ("option_buy", "option_sell"):
            return after, action.cost_usd, 0.0
        if action.kind == "flash_loan":  # its premium
            return after, max(action.cost_usd - costs.gas_usd("flash_loan", action.chain), 0.0), 0.0
        return after, 0.0, 0.0

    def _refusal(self, plan: Plan, policy: Policy, book: SimBook, price: float, now: int,
                 turnover: list[tuple[int, float]], gas_gwei: float) -> str:
        """What the daemon's guard would refuse in the plan ("" when nothing)."""
        limits = policy.limits
        while turnover and turnover[0][0] <= now - DAY_S:
            turnover.pop(0)
        spent = sum(n for _t, n in turnover)
        total = sum(a.notional_usd for a in plan.actions)
        if spent + total > limits.max_daily_turnover_usd:
            return (f"turnover: {spent:,.0f} USD in 24 h plus {total:,.0f} USD exceeds max_daily_turnover_usd "
                    f"{limits.max_daily_turnover_usd:,.0f}")
        hf = lending.health_factor_float(lending.health_factor_wad(book.account)) if book.account else math.inf
        if hf >= 1 + limits.gas_cap_lift_hf and gas_gwei > limits.max_gas_price_gwei:
            return f"gas: {gas_gwei:,.0f} gwei above max_gas_price_gwei {limits.max_gas_price_gwei:g}"
        limit = policy.swap_slippage_limit_bps(hf)  # the guard's rule: bounded near liquidation too
        prices = self._prices(price)
        for action in plan.actions:
            if action.kind != "swap":
                continue
            t_in, t_out = TOKENS[action.asset], TOKENS[action.asset_out]
            fair = action.amount_base_units / 10**t_in.decimals * prices[t_in.symbol] / prices[t_out.symbol] \
                * 10**t_out.decimals
            slippage_bps = (1 - action.min_amount_out_base_units / fair) * 10_000 if fair > 0 else 10_000.0
            if slippage_bps > limit + 1e-6:  # as the guard: the minimum output is a whole base unit
                return f"slippage: a swap accepts {slippage_bps:,.1f} bps below the oracle price, more than {limit:g}"
        return ""

    # --- values ---------------------------------------------------------------------------------------------------

    def _wallet_usd(self, book: SimBook, price: float) -> float:
        prices = self._prices(price)
        return sum(a / 10**TOKENS[s].decimals * prices[s] for s, a in book.wallet.items())

    def _value(self, book: SimBook, price: float, now: int) -> float:
        return self._gate_report(book, price, now).value_usd + self._wallet_usd(book, price) - book.gas_paid_usd


def _asset(action: Action) -> str:
    return action.asset + (f"→{action.asset_out}" if action.asset_out else "")


def costed(action: Action, costs: CostModel, now: int, price: float) -> ActionRecord:
    """Return the action's record with its costs as the cost model predicts them (what a replay that does not
    measure its fills records): pool fee, price impact, gas and a flash loan's premium, in USD."""
    gas = costs.gas_usd(action.kind, action.chain) if action.kind in GAS_UNITS else 0.0
    fee = action.notional_usd * action.fee_pips / 1e6 if action.kind == "swap" else 0.0
    slippage = max(action.cost_usd - gas - fee, 0.0) if action.kind == "swap" else 0.0
    premium = max(action.cost_usd - gas, 0.0) if action.kind == "flash_loan" else 0.0
    return ActionRecord(now, price, action.kind, _asset(action), action.notional_usd, fee, slippage, gas,
                        action.reason, action.cost_usd, premium)


__all__ = ["Simulation", "costed"]
