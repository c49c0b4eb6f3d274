"""The simulated market, one hourly bar at a time, around the unchanged risk engine and planner.

Each bar: interest accrues on the Aave account (its reserves' APRs), the LP earns fees from the pool's volume while
the bar's [low, high] lies in its range, perps pay funding; then the bar's low and high are checked for
liquidations (Aave: close factor and bonus as `risk.lending.liquidation` computes them, repeated while the health
factor stays below 1; perps: equity at or below maintenance); then, at the close, a managed portfolio runs the
daemon's own cycle (`agent.cycle.decide`: risk report and plan) on a `Snapshot` of the simulated positions, and the
plan's actions are applied with `planner.book.Book.apply` at the cost model's prices (swap fee and price impact
from quotes of the simulated pool, gas at the market's gas price). The keeper acts once per bar, at its close:
a bar's wick can liquidate a managed account before it can react, as it would a keeper on an hourly schedule.

A cheap gate saves the full cycle on quiet bars: the planner's own trigger test (`planner.bands.decide`) on the
same health factor and desk Greeks, without the liquidation-distance search that only the full report needs, or
a perp within the planner's margin distance (`planner.margin.perp_at_risk`). Perps trade and take margin at a
simulated venue (quote-token margin, 5 bps fee, no price impact) that the snapshot lists as a market.
The plan is refused, as the daemon's guard would refuse it, past `max_daily_turnover_usd` over 24 hours or when a
swap's minimum output is further below the oracle than `max_slippage_bps` (lifted near liquidation).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from agent.cycle import decide as decide_cycle
from agent.model import (
    AaveAccount,
    AccountHealth,
    Action,
    ChainSnapshot,
    DeskGreeks,
    LpPosition,
    OptionPosition,
    PerpMarket,
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
from agent.planner import HedgeState
from agent.planner.bands import decide as decide_triggers
from agent.planner.book import Book
from agent.planner.costs import GAS_UNITS, CostModel
from agent.planner.margin import perp_at_risk
from agent.policy import Policy
from agent.risk import lending
from agent.risk.portfolio import position_risk
from agent.sim.market import PricePath, realised_vol
from agent.sim.portfolio import (
    SIM_CHAIN,
    SIM_OWNER,
    TOKENS,
    PortfolioSpec,
    SimBook,
    price_1e8,
    sqrt_price_x96_for,
    starting_book,
)

HOURS_PER_YEAR = 8_760
DAY_S = 86_400
QUOTE_NOTIONAL_USD = (10_000.0, 100_000.0)  # what the daemon's reader quotes
MAX_LIQUIDATIONS_PER_BAR = 20
PERP_FEE_FRACTION = 0.0005  # the simulated perp venue: a 5 bps fee, a skew scale deep enough for no price impact
PERP_SKEW_SCALE = 1e9


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action the keeper carried out: when (bar close, unix s), at which price, what, and its costs in USD."""

    unix: int
    price_usd: float
    kind: str
    asset: str
    notional_usd: float
    fee_usd: float
    slippage_usd: float
    gas_usd: float
    reason: str


@dataclass(frozen=True, slots=True)
class LiquidationRecord:
    """One liquidation: when, at which price (the bar's low or high), and what it took: debt repaid, collateral
    seized and the bonus the owner lost to the liquidator, in USD; `venue` is "aave_v3" or "perp"."""

    unix: int
    price_usd: float
    venue: str
    debt_repaid_usd: float
    collateral_seized_usd: float
    loss_usd: float


@dataclass
class RunResult:
    """A portfolio's path through the window under one policy (None: unmanaged). Arrays hold one value per bar,
    at its close after the keeper acted; `health_factor_bar_min` is the lowest health factor within the bar (at
    its low or high, before any liquidation)."""

    label: str
    policy: Policy | None
    unix: NDArray[np.int64]
    close: NDArray[np.float64]
    health_factor: NDArray[np.float64]
    health_factor_bar_min: NDArray[np.float64]
    delta_usd: NDArray[np.float64]
    gamma_usd_1pct: NDArray[np.float64]
    vega_usd_1vol: NDArray[np.float64]
    value_usd: NDArray[np.float64]
    cost_usd: NDArray[np.float64]
    actions: list[ActionRecord] = field(default_factory=list)
    liquidations: list[LiquidationRecord] = field(default_factory=list)
    refusals: list[tuple[int, str]] = field(default_factory=list)
    plans: int = 0
    start_value_usd: float = 0.0
    start_price_usd: float = 0.0
    start_delta_usd: float = 0.0


class Simulation:
    """Runs one starting portfolio along one price path, under any number of policies."""

    def __init__(self, spec: PortfolioSpec, path: PricePath, vol_annual: NDArray[np.float64] | None = None,
                 gate: bool = True) -> None:
        self.spec = spec
        self.gate = gate  # False: the full cycle on every bar (what the gate saves; the benchmark's peer)
        self.path = path
        self.vol = realised_vol(path) if vol_annual is None else vol_annual
        self.u = spec.underlying
        self.q = spec.quote
        self.base_fee_wei = int(spec.market.gas_price_gwei * 1e9)

    # --- the loop -------------------------------------------------------------------------------------------------

    def run(self, policy: Policy | None, label: str) -> RunResult:
        """Return the portfolio's path under `policy` (None: nobody manages it)."""
        path = self.path
        n = len(path)
        start = int(path.unix[0])
        book = starting_book(self.spec, float(path.open[0]), start)
        book = self._marked(book, float(path.open[0]), start, float(self.vol[0]))
        result = RunResult(label, policy, path.unix.copy(), path.close.copy(), np.empty(n), np.empty(n),
                           np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.zeros(n))
        result.start_value_usd = self._value(book, float(path.open[0]), start)
        result.start_price_usd = float(path.open[0])
        result.start_delta_usd = self._gate_report(book, float(path.open[0]), start).total.delta_usd
        state = HedgeState()
        turnover: list[tuple[int, float]] = []
        for i in range(n):
            now = int(path.unix[i]) + 3600  # the bar's close
            hours = 1.0 if i == 0 else (int(path.unix[i]) - int(path.unix[i - 1])) / 3600.0
            low, high, close = float(path.low[i]), float(path.high[i]), float(path.close[i])
            book = self._accrued(book, hours, low, high, close, float(path.volume[i]))
            bar_min = math.inf
            for extreme in (low, high):
                book, hf = self._liquidated(book, extreme, now, result)
                bar_min = min(bar_min, hf)
            book = self._marked(book, close, now, float(self.vol[i]))
            report = self._gate_report(book, close, now)
            if policy is not None:
                before = len(result.actions)
                book, state, report = self._keep(book, policy, state, report, close, now, turnover, result)
                result.cost_usd[i] = sum(a.fee_usd + a.slippage_usd + a.gas_usd for a in result.actions[before:])
            hf = min((a.health_factor for a in report.accounts), default=math.inf)
            result.health_factor[i] = hf
            result.health_factor_bar_min[i] = min(bar_min, hf)
            result.delta_usd[i] = report.total.delta_usd
            result.gamma_usd_1pct[i] = report.total.gamma_usd_1pct
            result.vega_usd_1vol[i] = report.total.vega_usd_1vol
            result.value_usd[i] = report.value_usd + self._wallet_usd(book, close) - book.gas_paid_usd
        return result

    # --- the market -----------------------------------------------------------------------------------------------

    def _accrued(self, book: SimBook, hours: float, low: float, high: float, close: float, volume: float) -> SimBook:
        """The book after `hours` of interest, LP fees and funding."""
        account = book.account
        if account is not None:
            reserves = tuple(dataclasses.replace(
                r,
                variable_debt_base_units=_grown(r.variable_debt_base_units, r.variable_borrow_apr * hours
                                                / HOURS_PER_YEAR),
                collateral_base_units=_grown(r.collateral_base_units, r.supply_apr * hours / HOURS_PER_YEAR),
            ) for r in account.reserves)
            account = dataclasses.replace(account, reserves=reserves)
        market = self.spec.market
        volume_usd = volume * close * market.pool_volume_share
        lps = tuple(self._with_fees(p, low, high, close, volume_usd) for p in book.lps)
        perps = tuple(dataclasses.replace(p, margin_usd=p.margin_usd - p.size_underlying * close
                                          * p.funding_rate_per_hour * hours) for p in book.perps)
        return dataclasses.replace(book, account=account, lps=lps, perps=perps)

    def _with_fees(self, position: LpPosition, low: float, high: float, close: float, volume_usd: float) -> LpPosition:
        """The position with its share of the bar's pool fees added to tokens owed (in the quote token): fee ×
        volume × its share of the pool's liquidity × the share of the bar's [low, high] (in log price) inside its
        range."""
        if position.liquidity == 0 or volume_usd <= 0:
            return position
        prices = sorted(_position_price_bounds(position, self.u))
        lo, hi = math.log(low), math.log(high)
        a, b = math.log(prices[0]), math.log(prices[1])
        flat = hi - lo < 1e-12  # a flat bar is in or out
        inside = float(a <= lo <= b) if flat else max(0.0, min(hi, b) - max(lo, a)) / (hi - lo)
        if inside == 0.0:
            return position
        depth = self.spec.market.pool_depth_usd
        u_token, q_token = TOKENS[self.u], TOKENS[self.q]
        pool_liquidity = math.sqrt(depth / close * 10**u_token.decimals * depth * 10**q_token.decimals)
        share = position.liquidity / (position.liquidity + pool_liquidity)
        fee_usd = position.fee_pips / 1e6 * volume_usd * share * inside
        owed = round(fee_usd * 10**q_token.decimals)
        if position.token0.symbol == self.q:
            return dataclasses.replace(position, tokens_owed0=position.tokens_owed0 + owed)
        return dataclasses.replace(position, tokens_owed1=position.tokens_owed1 + owed)

    def _liquidated(self, book: SimBook, price: float, now: int, result: RunResult) -> tuple[SimBook, float]:
        """The book after every liquidation the price `price` allows, and the health factor before them."""
        perps = []
        for p in book.perps:
            equity = p.margin_usd + p.size_underlying * (price - p.entry_price_usd)
            if p.size_underlying and equity <= p.maintenance_margin_fraction * abs(p.size_underlying) * price:
                result.liquidations.append(LiquidationRecord(now, price, "perp", 0.0, 0.0, max(equity, 0.0)))
                continue
            perps.append(p)
        book = dataclasses.replace(book, perps=tuple(perps))
        if book.account is None:
            return book, math.inf
        account = _priced(book.account, self.u, price)
        hf_wad = lending.health_factor_wad(account)
        before = lending.health_factor_float(hf_wad)
        for _ in range(MAX_LIQUIDATIONS_PER_BAR):
            if hf_wad >= lending.LIQUIDATION_THRESHOLD_WAD:
                break
            debt = max((r for r in account.reserves if r.variable_debt_base_units),
                       key=lambda r: r.variable_debt_base_units * r.price_1e8 / 10**r.token.decimals, default=None)
            collateral = max((r for r in account.reserves if r.usage_as_collateral and r.collateral_base_units),
                             key=lambda r: r.collateral_base_units * r.price_1e8 / 10**r.token.decimals, default=None)
            if debt is None or collateral is None:
                break
            taken = lending.liquidation(account, debt.token.symbol, collateral.token.symbol)
            if taken.debt_repaid_base_units == 0:
                break
            result.liquidations.append(LiquidationRecord(
                now, price, "aave_v3", taken.debt_repaid_base_units * debt.price_1e8 / 10**debt.token.decimals / 1e8,
                taken.collateral_seized_base_units * collateral.price_1e8 / 10**collateral.token.decimals / 1e8,
                taken.cost_1e8 / 1e8))
            account = _changed(account, debt.token.symbol, debt=-taken.debt_repaid_base_units)
            account = _changed(account, collateral.token.symbol, collateral=-taken.collateral_seized_base_units)
            hf_wad = lending.health_factor_wad(account)
        return dataclasses.replace(book, account=account), before

    def _marked(self, book: SimBook, price: float, now: int, vol: float) -> SimBook:
        """The book at price `price` and time `now`: oracle prices, pool prices, option vols, expired options
        settled into the wallet."""
        account = _priced(book.account, self.u, price) if book.account is not None else None
        lps = []
        for p in book.lps:
            root, tick = sqrt_price_x96_for(p, self.u, price)
            lps.append(dataclasses.replace(p, sqrt_price_x96=root, tick=tick))
        options: list[OptionPosition] = []
        wallet = dict(book.wallet)
        for o in book.options:
            if now >= o.expiry_ts:
                payoff = max(price - o.strike_usd, 0.0) if o.is_call else max(o.strike_usd - price, 0.0)
                wallet[self.q] = wallet.get(self.q, 0) + round(payoff * o.quantity * 10**TOKENS[self.q].decimals)
                continue
            options.append(dataclasses.replace(o, vol_annual=vol))
        return dataclasses.replace(book, account=account, lps=tuple(lps), options=tuple(options), wallet=wallet)

    # --- the keeper -----------------------------------------------------------------------------------------------

    def _positions(self, book: SimBook) -> tuple[Position, ...]:
        head: tuple[Position, ...] = (book.account,) if book.account is not None else ()
        return head + book.lps + book.perps + book.options

    def _gate_report(self, book: SimBook, price: float, now: int) -> RiskReport:
        """The risk report the planner's triggers read, without the liquidation-distance search: per-position
        value and desk Greeks from `risk.portfolio.position_risk`, and the exact health factor."""
        prices = {self.u: price, self.q: 1.0}
        risks = tuple(position_risk(p, self.u, prices, now) for p in self._positions(book))
        accounts: tuple[AccountHealth, ...] = ()
        if book.account is not None:
            wad = lending.health_factor_wad(book.account)
            accounts = (AccountHealth(SIM_CHAIN, SIM_OWNER, wad, lending.health_factor_float(wad), None, math.inf,
                                      math.inf),)
        total = sum((r.greeks for r in risks), DeskGreeks())
        return RiskReport(self.u, price, risks, total, sum(r.value_usd for r in risks), accounts, math.inf, math.inf)

    def snapshot(self, book: SimBook, price: float, now: int, portfolio: str) -> Snapshot:
        """Return the simulated positions as the daemon's reader would see them: one chain at block time `now`,
        oracle prices, idle balances, and QuoterV2-like quotes of the simulated pool at the reader's sizes."""
        account = book.account
        if account is not None:
            account = dataclasses.replace(account, reported_health_factor_wad=lending.health_factor_wad(account))
        positions: tuple[Position, ...] = ((account,) if account is not None else ()) + book.lps + book.perps + \
            book.options
        prices = (PriceReading(SIM_CHAIN, self.u, price, f"sim:{self.u}", now, 0),
                  PriceReading(SIM_CHAIN, self.q, 1.0, f"sim:{self.q}", now, 0))
        balances = tuple(TokenBalance(SIM_CHAIN, SIM_OWNER, TOKENS[s], book.wallet.get(s, 0)) for s in (self.u, self.q))
        chain = ChainSnapshot(SIM_CHAIN, 31337, now // 12, "0x" + format(now, "064x"), now, self.base_fee_wei,
                              positions, prices, balances, self._quotes(price), (), self._perp_markets(book, price))
        return Snapshot(portfolio, SIM_OWNER, self.u, (chain,))

    def _perp_markets(self, book: SimBook, price: float) -> tuple[PerpMarket, ...]:
        """The simulated perp venue's market on the underlying (margin in the quote token), when the book has a perp:
        what the planner adds margin to."""
        if not book.perps:
            return ()
        p = book.perps[0]
        return (PerpMarket(SIM_CHAIN, p.venue, "0x" + "00" * 19 + "01", self.u, self.q, price, 0.0, PERP_SKEW_SCALE,
                           PERP_FEE_FRACTION, p.funding_rate_per_hour, 2 * p.maintenance_margin_fraction,
                           p.maintenance_margin_fraction),)

    def _quotes(self, price: float) -> tuple[SwapQuote, ...]:
        """Quotes of a constant-product pool `pool_depth_usd` deep on each side (a full-range Uniswap v3 pool)."""
        market = self.spec.market
        depth, fee = market.pool_depth_usd, market.pool_fee_pips
        out = []
        for notional in QUOTE_NOTIONAL_USD:
            for token_in, token_out, p_in, p_out in ((TOKENS[self.u], TOKENS[self.q], price, 1.0),
                                                     (TOKENS[self.q], TOKENS[self.u], 1.0, price)):
                net = notional * (1 - fee / 1e6)
                received = net * depth / (depth + net)
                amount_in = round(notional / p_in * 10**token_in.decimals)
                out.append(SwapQuote(SIM_CHAIN, token_in, token_out, fee, amount_in,
                                     round(received / p_out * 10**token_out.decimals), GAS_UNITS["swap"]))
        return tuple(out)

    def _keep(
        self, book: SimBook, policy: Policy, state: HedgeState, report: RiskReport, price: float, now: int,
        turnover: list[tuple[int, float]], result: RunResult,
    ) -> tuple[SimBook, HedgeState, RiskReport]:
        """One daemon cycle at the bar's close: the planner's triggers, then (only when one fires) the full cycle,
        the guard's turnover and slippage rules, and the plan's actions applied to the book."""
        if self.gate and not decide_triggers(report, policy, state, now).triggers and not any(
                perp_at_risk(p, price) for p in book.perps):
            return book, state.after(_NO_PLAN, now, price), report
        snapshot = self.snapshot(book, price, now, policy.portfolio.name)
        cycle = decide_cycle(snapshot, policy, state, log_decision=False)
        plan = cycle.plan
        result.plans += 1
        if plan.empty:
            return book, cycle.state, report
        refusal = self._refusal(plan.actions, policy, report, price, now, turnover)
        if refusal:
            result.refusals.append((now, refusal))
            return book, state, report
        costs = CostModel(snapshot, policy.triggers.max_hedge_age_s, {self.u: price, self.q: 1.0})
        after = Book.from_snapshot(snapshot)
        gas_total = 0.0
        for action in plan.actions:
            after = after.apply(action, costs)
            record = _costed(action, costs, now, price)
            gas_total += record.gas_usd
            result.actions.append(record)
            turnover.append((now, action.notional_usd))
        perps = tuple(p for p in after.others if isinstance(p, PerpPosition))
        book = SimBook(after.account, after.lps, perps, book.options, dict(after.wallet),
                       book.gas_paid_usd + gas_total)
        if book.account is not None:
            book = dataclasses.replace(book, account=dataclasses.replace(book.account, reported_health_factor_wad=None))
        return book, cycle.state, self._gate_report(book, price, now)

    def _refusal(self, actions: tuple[Action, ...], policy: Policy, report: RiskReport, price: float, now: int,
                 turnover: list[tuple[int, float]]) -> str:
        """What the daemon's guard would refuse in the plan ("" when nothing)."""
        limits = policy.limits
        while turnover and turnover[0][0] <= now - DAY_S:
            turnover.pop(0)
        spent = sum(n for _t, n in turnover)
        total = sum(a.notional_usd for a in actions)
        if spent + total > limits.max_daily_turnover_usd:
            return (f"turnover: {spent:,.0f} USD in 24 h plus {total:,.0f} USD exceeds max_daily_turnover_usd "
                    f"{limits.max_daily_turnover_usd:,.0f}")
        hf = min((a.health_factor for a in report.accounts), default=math.inf)
        if hf < 1 + limits.gas_cap_lift_hf:
            return ""
        prices = {self.u: price, self.q: 1.0}
        for action in actions:
            if action.kind != "swap":
                continue
            t_in, t_out = TOKENS[action.asset], TOKENS[action.asset_out]
            fair = action.amount_base_units / 10**t_in.decimals * prices[t_in.symbol] / prices[t_out.symbol] \
                * 10**t_out.decimals
            slippage_bps = (1 - action.min_amount_out_base_units / fair) * 10_000 if fair > 0 else 10_000.0
            limit = policy.hedging.max_slippage_bps
            if slippage_bps > limit + 1e-6:  # as the guard: the minimum output is a whole base unit
                return f"slippage: a swap accepts {slippage_bps:,.1f} bps below the oracle price, more than {limit:g}"
        return ""

    # --- values ---------------------------------------------------------------------------------------------------

    def _wallet_usd(self, book: SimBook, price: float) -> float:
        prices = {self.u: price, self.q: 1.0}
        return sum(a / 10**TOKENS[s].decimals * prices[s] for s, a in book.wallet.items())

    def _value(self, book: SimBook, price: float, now: int) -> float:
        return self._gate_report(book, price, now).value_usd + self._wallet_usd(book, price) - book.gas_paid_usd


_NO_PLAN = Plan("", (), (), "")


def _costed(action: Action, costs: CostModel, now: int, price: float) -> ActionRecord:
    """Split an action's cost into pool fee (a flash loan's premium), price impact (slippage) and gas, in USD."""
    gas = costs.gas_usd(action.kind, action.chain) if action.kind in GAS_UNITS else 0.0
    fee = action.notional_usd * action.fee_pips / 1e6 if action.kind == "swap" else (
        max(action.cost_usd - gas, 0.0) if action.kind == "flash_loan" else 0.0)
    slippage = max(action.cost_usd - gas - fee, 0.0) if action.kind == "swap" else 0.0
    return ActionRecord(now, price, action.kind, action.asset + (f"→{action.asset_out}" if action.asset_out else ""),
                        action.notional_usd, fee, slippage, gas, action.reason)


def _grown(amount: int, rate: float) -> int:
    return amount + int(amount * rate) if amount and rate else amount


def _priced(account: AaveAccount, symbol: str, price_usd: float) -> AaveAccount:
    """The account with `symbol`'s oracle price set to `price_usd`."""
    p = price_1e8(price_usd)
    return dataclasses.replace(account, reserves=tuple(
        dataclasses.replace(r, price_1e8=p) if r.token.symbol == symbol else r for r in account.reserves))


def _changed(account: AaveAccount, symbol: str, collateral: int = 0, debt: int = 0) -> AaveAccount:
    return dataclasses.replace(account, reserves=tuple(
        dataclasses.replace(r, collateral_base_units=r.collateral_base_units + collateral,
                            variable_debt_base_units=r.variable_debt_base_units + debt)
        if r.token.symbol == symbol else r for r in account.reserves))


def _position_price_bounds(position: LpPosition, underlying: str) -> tuple[float, float]:
    """The underlying's USD prices (quote at $1) at the position's two ticks."""
    token_u: Token = position.token0 if position.token0.symbol == underlying else position.token1
    other: Token = position.token1 if token_u is position.token0 else position.token0
    scale = 10.0 ** (other.decimals - token_u.decimals)
    bounds = []
    for tick in (position.tick_lower, position.tick_upper):
        raw = 1.0001**tick
        bounds.append(raw / scale if token_u is position.token0 else 1.0 / (raw * scale))
    return bounds[0], bounds[1]


