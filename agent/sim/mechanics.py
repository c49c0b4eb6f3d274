"""What the market does to a book within one bar, before the keeper acts: interest at the bar's Aave rates, LP fees
from the pool's volume, perp funding; liquidations at the bar's low and high (Aave: close factor and bonus as
`risk.lending.liquidation` computes them, repeated while the health factor stays below 1; perps: equity at or below
maintenance); and the book marked at the close (oracle, LP pool price, option vols and marks, expired options
settled in the quote token)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from agent.model import AaveAccount, LpPosition, OptionPosition
from agent.risk import lending
from agent.sim.portfolio import TOKENS, SimBook, price_1e8, sqrt_price_x96_for
from agent.sim.records import LiquidationRecord
from agent.sim.venues import marked_option

HOURS_PER_YEAR = 8_760
MAX_LIQUIDATIONS_PER_BAR = 20


def accrued(book: SimBook, hours: float, borrow_apr: dict[str, float], supply_apr: dict[str, float],
            lp_fees: dict[int, int], quote: str) -> SimBook:
    """Return the book after `hours` of interest at the bar's APRs (which its reserves then show) and LP fees
    (`lp_fees`: quote-token base units per LP token id)."""
    account = book.account
    if account is not None:
        reserves = tuple(dataclasses.replace(
            r,
            variable_debt_base_units=_grown(r.variable_debt_base_units, borrow_apr.get(r.token.symbol, 0.0) * hours
                                            / HOURS_PER_YEAR),
            collateral_base_units=_grown(r.collateral_base_units, supply_apr.get(r.token.symbol, 0.0) * hours
                                         / HOURS_PER_YEAR),
            variable_borrow_apr=borrow_apr.get(r.token.symbol, 0.0), supply_apr=supply_apr.get(r.token.symbol, 0.0),
        ) for r in account.reserves)
        account = dataclasses.replace(account, reserves=reserves)
    lps = tuple(_with_fee(p, lp_fees.get(p.token_id, 0), quote) for p in book.lps)
    return dataclasses.replace(book, account=account, lps=lps)


def funded(book: SimBook, hours: float, price: float, funding_per_hour: float) -> SimBook:
    """Return the book after its perps paid (or received) `hours` of funding at `funding_per_hour` of notional."""
    if not book.perps:
        return book
    perps = tuple(dataclasses.replace(p, funding_rate_per_hour=funding_per_hour,
                                      margin_usd=p.margin_usd - p.size_underlying * price * funding_per_hour * hours)
                  for p in book.perps)
    return dataclasses.replace(book, perps=perps)


def _with_fee(position: LpPosition, owed: int, quote: str) -> LpPosition:
    if owed <= 0:
        return position
    if position.token0.symbol == quote:
        return dataclasses.replace(position, tokens_owed0=position.tokens_owed0 + owed)
    return dataclasses.replace(position, tokens_owed1=position.tokens_owed1 + owed)


def lp_fee_base_units(position: LpPosition, underlying: str, quote: str, low: float, high: float,
                      volume_usd: float, pool_liquidity: int) -> int:
    """Return the position's share of the bar's pool fees in quote base units: fee × volume × its share of the
    active liquidity × the share of the bar's [low, high] (log price) inside its range."""
    if position.liquidity == 0 or volume_usd <= 0:
        return 0
    prices = sorted(position_price_bounds(position, underlying))
    lo, hi = math.log(low), math.log(high)
    a, b = math.log(prices[0]), math.log(prices[1])
    flat = hi - lo < 1e-12  # a flat bar is in or out
    inside = float(a <= lo <= b) if flat else max(0.0, min(hi, b) - max(lo, a)) / (hi - lo)
    if inside == 0.0:
        return 0
    share = position.liquidity / (position.liquidity + pool_liquidity)
    return round(position.fee_pips / 1e6 * volume_usd * share * inside * 10**TOKENS[quote].decimals)


def liquidated(book: SimBook, underlying: str, price: float, now: int,
               out: list[LiquidationRecord], pegged: Mapping[str, float] | None = None) -> tuple[SimBook, float]:
    """Return the book after every liquidation the price `price` allows (appended to `out`), and the health factor
    before them; `pegged` symbols are priced at `price` × their ratio. The returned account carries the oracle
    prices only when it was liquidated (the engine marks the book at the close next)."""
    perps = []
    for p in book.perps:
        equity = p.margin_usd + p.size_underlying * (price - p.entry_price_usd)
        if p.size_underlying and equity <= p.maintenance_margin_fraction * abs(p.size_underlying) * price:
            out.append(LiquidationRecord(now, price, "perp", 0.0, 0.0, max(equity, 0.0)))
            continue
        perps.append(p)
    if len(perps) < len(book.perps):
        book = dataclasses.replace(book, perps=tuple(perps))
    if book.account is None:
        return book, math.inf
    account = priced_with(book.account, underlying, price, pegged)
    hf_wad = lending.health_factor_wad(account)
    before = lending.health_factor_float(hf_wad)
    if hf_wad >= lending.LIQUIDATION_THRESHOLD_WAD:
        # Nothing to liquidate (most bars): the book as it came; `marked` sets the close's oracle price next.
        return book, before
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
        out.append(LiquidationRecord(
            now, price, "aave_v3", taken.debt_repaid_base_units * debt.price_1e8 / 10**debt.token.decimals / 1e8,
            taken.collateral_seized_base_units * collateral.price_1e8 / 10**collateral.token.decimals / 1e8,
            taken.cost_1e8 / 1e8))
        account = changed(account, debt.token.symbol, debt=-taken.debt_repaid_base_units)
        account = changed(account, collateral.token.symbol, collateral=-taken.collateral_seized_base_units)
        hf_wad = lending.health_factor_wad(account)
    return dataclasses.replace(book, account=account), before


def marked(book: SimBook, underlying: str, quote: str, price: float, now: int, vol: float,
           pegged: Mapping[str, float] | None = None) -> SimBook:
    """Return the book at price `price` and time `now`: oracle prices (`pegged` symbols at `price` × their ratio),
    LP pool prices, option vols and marks, expired options settled into the wallet."""
    account = priced_with(book.account, underlying, price, pegged) if book.account is not None else None
    lps = []
    for p in book.lps:
        root, tick = sqrt_price_x96_for(p, underlying, price)
        lps.append(dataclasses.replace(p, sqrt_price_x96=root, tick=tick))
    options: list[OptionPosition] = []
    wallet = dict(book.wallet)
    for o in book.options:
        if now >= o.expiry_ts:
            payoff = max(price - o.strike_usd, 0.0) if o.is_call else max(o.strike_usd - price, 0.0)
            wallet[quote] = wallet.get(quote, 0) + round(payoff * o.quantity * 10**TOKENS[quote].decimals)
            continue
        options.append(marked_option(o, vol))
    return dataclasses.replace(book, account=account, lps=tuple(lps), options=tuple(options), wallet=wallet)


def _grown(amount: int, rate: float) -> int:
    return amount + int(amount * rate) if amount and rate else amount


def priced(account: AaveAccount, symbol: str, price_usd: float) -> AaveAccount:
    """Return the account with `symbol`'s oracle price set to `price_usd`."""
    p = price_1e8(price_usd)
    return dataclasses.replace(account, reserves=tuple(
        dataclasses.replace(r, price_1e8=p) if r.token.symbol == symbol else r for r in account.reserves))


def priced_with(account: AaveAccount, underlying: str, price_usd: float,
                pegged: Mapping[str, float] | None) -> AaveAccount:
    """Return the account with the underlying's oracle price at `price_usd` and each pegged symbol's at
    `price_usd` × its ratio."""
    account = priced(account, underlying, price_usd)
    for symbol, ratio in (pegged or {}).items():
        account = priced(account, symbol, price_usd * ratio)
    return account


def changed(account: AaveAccount, symbol: str, collateral: int = 0, debt: int = 0) -> AaveAccount:
    """Return the account with `symbol`'s collateral and debt changed by the given base units."""
    return dataclasses.replace(account, reserves=tuple(
        dataclasses.replace(r, collateral_base_units=r.collateral_base_units + collateral,
                            variable_debt_base_units=r.variable_debt_base_units + debt)
        if r.token.symbol == symbol else r for r in account.reserves))


def position_price_bounds(position: LpPosition, underlying: str) -> tuple[float, float]:
    """Return the underlying's USD prices (quote at $1) at the position's two ticks."""
    token_u = position.token0 if position.token0.symbol == underlying else position.token1
    other = position.token1 if token_u is position.token0 else position.token0
    scale = 10.0 ** (other.decimals - token_u.decimals)
    bounds = []
    for tick in (position.tick_lower, position.tick_upper):
        raw = 1.0001**tick
        bounds.append(raw / scale if token_u is position.token0 else 1.0 / (raw * scale))
    return bounds[0], bounds[1]
