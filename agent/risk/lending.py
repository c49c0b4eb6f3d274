"""Aave v3 accounts: the health factor in Aave's own integer math, liquidation prices, close factor and cost.

`account_data` reproduces GenericLogic.calculateUserAccountData of Aave v3.0 to the wei: each reserve is valued
as amount·price / 10^decimals (truncated), the average liquidation threshold is Σ value·LT / Σ value (truncated to
whole bps), and HF = percentMul(total collateral, avg LT) wadDiv total debt, both rounding half up. Prices are in
the base currency with 8 decimals (`_1e8`). Scenario health factors (`scenario_health_factor`) are float64.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from agent.model import AaveAccount, AaveReserve
from agent.risk.crossing import LIQUIDATION_THRESHOLD_WAD, bisect

WAD = 10**18
PERCENTAGE_FACTOR = 10**4
NO_DEBT_HEALTH_FACTOR = 2**256 - 1
CLOSE_FACTOR_HF_THRESHOLD_WAD = 95 * 10**16
DEFAULT_CLOSE_FACTOR_BPS = 5_000
MAX_CLOSE_FACTOR_BPS = 10_000



@dataclass(frozen=True, slots=True)
class AccountData:
    """What Pool.getUserAccountData returns: amounts in the base currency (1e8), LTV and threshold in bps."""

    total_collateral_1e8: int
    total_debt_1e8: int
    available_borrows_1e8: int
    liquidation_threshold_bps: int
    ltv_bps: int
    health_factor_wad: int


@dataclass(frozen=True, slots=True)
class Liquidation:
    """One liquidation call at the current state: debt repaid and collateral seized in their base units, and what
    the borrower loses to the liquidator (seized value − repaid value, the bonus) in the base currency (1e8)."""

    debt_repaid_base_units: int
    collateral_seized_base_units: int
    cost_1e8: int


def percent_mul(value: int, percentage_bps: int) -> int:
    """Return value·percentage / 1e4 rounded half up (PercentageMath.percentMul)."""
    return (value * percentage_bps + PERCENTAGE_FACTOR // 2) // PERCENTAGE_FACTOR


def percent_div(value: int, percentage_bps: int) -> int:
    """Return value·1e4 / percentage rounded half up (PercentageMath.percentDiv)."""
    return (value * PERCENTAGE_FACTOR + percentage_bps // 2) // percentage_bps


def wad_div(a: int, b: int) -> int:
    """Return a·1e18 / b rounded half up (WadRayMath.wadDiv)."""
    return (a * WAD + b // 2) // b


def effective_price_1e8(account: AaveAccount, reserve: AaveReserve) -> int:
    """Return the price Aave uses for `reserve`: the e-mode category's price source for assets of the user's
    category when it has one, else the asset's oracle price (base currency, 1e8)."""
    if account.emode is not None and account.emode.price_1e8 != 0 and _in_emode(account, reserve):
        return account.emode.price_1e8
    return reserve.price_1e8


def liquidation_threshold_bps(account: AaveAccount, reserve: AaveReserve) -> int:
    """Return the liquidation threshold that applies to `reserve` for this user (its e-mode category's if the user
    is in that category), in bps."""
    if _in_emode(account, reserve) and account.emode is not None:
        return account.emode.liquidation_threshold_bps
    return reserve.liquidation_threshold_bps


def account_data(account: AaveAccount) -> AccountData:
    """Return the account's totals and health factor exactly as Pool.getUserAccountData computes them."""
    collateral = debt = weighted_ltv = weighted_lt = 0
    for reserve in account.reserves:
        price = effective_price_1e8(account, reserve)
        unit = 10**reserve.token.decimals
        lt = liquidation_threshold_bps(account, reserve)
        if reserve.usage_as_collateral and reserve.liquidation_threshold_bps != 0:
            value = reserve.collateral_base_units * price // unit
            collateral += value
            ltv = reserve.ltv_bps
            if ltv != 0 and _in_emode(account, reserve) and account.emode is not None:
                ltv = account.emode.ltv_bps
            weighted_ltv += value * ltv
            weighted_lt += value * lt
        owed = reserve.variable_debt_base_units + reserve.stable_debt_base_units
        if owed:
            debt += price * owed // unit
    avg_ltv = weighted_ltv // collateral if collateral else 0
    avg_lt = weighted_lt // collateral if collateral else 0
    health = NO_DEBT_HEALTH_FACTOR if debt == 0 else wad_div(percent_mul(collateral, avg_lt), debt)
    borrowable = max(percent_mul(collateral, avg_ltv) - debt, 0)
    return AccountData(collateral, debt, borrowable, avg_lt, avg_ltv, health)


def health_factor_wad(account: AaveAccount) -> int:
    """Return the account's health factor in wad (1e18 = 1.0), 2**256 − 1 when it has no debt."""
    return account_data(account).health_factor_wad


def health_factor_float(health_wad: int) -> float:
    """Return a wad health factor as a float, inf for the no-debt sentinel."""
    return math.inf if health_wad == NO_DEBT_HEALTH_FACTOR else health_wad / WAD


def close_factor_bps(health_wad: int) -> int:
    """Return the share of a debt one liquidation may repay: 50%, or 100% once HF ≤ 0.95 (bps)."""
    return DEFAULT_CLOSE_FACTOR_BPS if health_wad > CLOSE_FACTOR_HF_THRESHOLD_WAD else MAX_CLOSE_FACTOR_BPS


def liquidation(account: AaveAccount, debt_symbol: str, collateral_symbol: str) -> Liquidation:
    """Return the largest liquidation of `debt_symbol` against `collateral_symbol` allowed at the current state,
    as LiquidationLogic computes it (close factor, bonus, capped by the collateral balance).

    The health factor is not checked: this says what a liquidation would cost if the account were liquidatable.
    """
    debt_reserve = _reserve(account, debt_symbol)
    coll_reserve = _reserve(account, collateral_symbol)
    owed = debt_reserve.variable_debt_base_units + debt_reserve.stable_debt_base_units
    debt_to_cover = percent_mul(owed, close_factor_bps(health_factor_wad(account)))

    bonus_bps = coll_reserve.liquidation_bonus_bps
    coll_price = coll_reserve.price_1e8
    debt_price = debt_reserve.price_1e8
    emode = account.emode
    if emode is not None:
        # In e-mode the category's price source prices the debt, and prices the collateral only if it is in the
        # category (LiquidationLogic._getConfigurationData).
        if _in_emode(account, coll_reserve):
            bonus_bps = emode.liquidation_bonus_bps
            coll_price = emode.price_1e8 or coll_price
        debt_price = emode.price_1e8 or debt_price

    coll_unit = 10**coll_reserve.token.decimals
    debt_unit = 10**debt_reserve.token.decimals
    base_collateral = debt_price * debt_to_cover * coll_unit // (coll_price * debt_unit)
    seized = percent_mul(base_collateral, bonus_bps)
    repaid = debt_to_cover
    if seized > coll_reserve.collateral_base_units:
        seized = coll_reserve.collateral_base_units
        repaid = percent_div(coll_price * seized * debt_unit // (debt_price * coll_unit), bonus_bps)
    cost = seized * coll_price // coll_unit - repaid * debt_price // debt_unit
    return Liquidation(repaid, seized, cost)


def shocked_account(account: AaveAccount, symbols: Iterable[str], factor: float) -> AaveAccount:
    """Return the account with the oracle price of every asset in `symbols` (and an e-mode price source that
    follows one of them) multiplied by `factor` and rounded to the oracle's integer."""
    moved = frozenset(symbols)
    reserves = tuple(
        dataclasses.replace(r, price_1e8=_scale(r.price_1e8, factor)) if r.token.symbol in moved else r
        for r in account.reserves
    )
    emode = account.emode
    if emode is not None and emode.price_source_symbol in moved:
        emode = dataclasses.replace(emode, price_1e8=_scale(emode.price_1e8, factor))
    return dataclasses.replace(account, reserves=reserves, emode=emode)


def shocked_health_factor(account: AaveAccount, symbols: Iterable[str]) -> Callable[[float], int]:
    """Return f ↦ `health_factor_wad(shocked_account(account, symbols, f))` (wad), the same integers computed
    without building the shocked account: the crossing searches call it ~30 times per account per assessment."""
    moved = frozenset(symbols)
    emode = account.emode
    emode_price = 0 if emode is None else emode.price_1e8
    emode_moves = emode is not None and emode.price_source_symbol in moved
    # Per reserve: in the user's e-mode category, own oracle price, whether it moves, unit, collateral, LT, debt.
    terms = []
    for r in account.reserves:
        collateral = r.collateral_base_units if r.usage_as_collateral and r.liquidation_threshold_bps != 0 else 0
        terms.append((emode is not None and _in_emode(account, r), r.price_1e8, r.token.symbol in moved,
                      10**r.token.decimals, collateral, liquidation_threshold_bps(account, r),
                      r.variable_debt_base_units + r.stable_debt_base_units))

    def health_at(factor: float) -> int:
        category_price = _scale(emode_price, factor) if emode_moves else emode_price
        collateral_total = debt_total = weighted_lt = 0
        for in_emode, own_price, moves, unit, collateral, lt, owed in terms:
            if in_emode and category_price != 0:
                price = category_price
            else:
                price = _scale(own_price, factor) if moves else own_price
            value = collateral * price // unit
            collateral_total += value
            weighted_lt += value * lt
            if owed:
                debt_total += price * owed // unit
        if debt_total == 0:
            return NO_DEBT_HEALTH_FACTOR
        avg_lt = weighted_lt // collateral_total if collateral_total else 0
        return wad_div(percent_mul(collateral_total, avg_lt), debt_total)

    return health_at


def liquidation_price_estimate_1e8(account: AaveAccount, symbol: str) -> float | None:
    """Return the closed-form price of `symbol` (base currency, 1e8) at which Σ collateral·LT equals the debt, all
    other prices fixed; None if no positive price does.

    This ignores the chain's truncations (of each reserve's value and of the weighted threshold to whole bps),
    which move the real crossing by up to ~1e-4; `liquidation_price_1e8` is the exact one.
    """
    crossing = _closed_form_crossing(account, frozenset((symbol,)))
    return None if crossing is None else crossing[0] * _reserve(account, symbol).price_1e8


def liquidation_price_1e8(account: AaveAccount, symbol: str) -> int | None:
    """Return the oracle price of `symbol` (base currency, 1e8) at which the account becomes liquidatable, all
    other prices fixed, or None if no positive price does (or every price does).

    For an asset that is net collateral it is the highest price with HF < 1; for net debt, the lowest. It is
    exact: the crossing found with the integer health factor, then walked to the adjacent integer prices.
    """
    moved = frozenset((symbol,))
    crossing = _exact_crossing(account, moved)
    if crossing is None:
        return None
    factor, healthy_side = crossing

    def liquidatable(price: int) -> bool:
        return price < 1 or health_factor_wad(with_prices(account, {symbol: price})) < LIQUIDATION_THRESHOLD_WAD

    price = max(1, round(_reserve(account, symbol).price_1e8 * factor))
    # The factor is within ~1e-12 of the boundary, so these walks take a step or two.
    while not liquidatable(price):
        price -= healthy_side
    while liquidatable(price + healthy_side):
        price += healthy_side
    return price if price >= 1 else None


def account_liquidation_shocks(account: AaveAccount, symbols: Iterable[str]) -> tuple[float | None, float | None]:
    """Return the factors on the prices of `symbols` (down, up) at which the account's exact HF crosses 1, all
    other prices fixed; (1.0, 1.0) if it is liquidatable now, None on a side where no move liquidates it.

    The health factor of an account alone is linear-fractional in the factor, so it crosses 1 at most once: the
    closed form finds the side and the neighbourhood, the integer health factor the exact crossing.
    """
    moved = frozenset(symbols)
    if health_factor_wad(account) < LIQUIDATION_THRESHOLD_WAD:
        return 1.0, 1.0
    crossing = _exact_crossing(account, moved)
    if crossing is None:
        return None, None
    factor, healthy_side = crossing
    return (factor, None) if healthy_side > 0 else (None, factor)


def scenario_health_factor(
    account: AaveAccount, symbols: Iterable[str], factors: ArrayLike
) -> NDArray[np.float64]:
    """Return the health factor (float64, inf with no debt) with the prices of `symbols` multiplied by each of
    `factors` (any shape), the average liquidation threshold truncated to whole bps as on chain."""
    moved = frozenset(symbols)
    f = np.asarray(factors, dtype=np.float64)
    collateral = np.zeros_like(f)
    weighted = np.zeros_like(f)
    debt = np.zeros_like(f)
    for reserve in account.reserves:
        price = effective_price_1e8(account, reserve)
        scale = f if price_follows(account, reserve) in moved else 1.0
        per_unit = price / 10**reserve.token.decimals
        if reserve.usage_as_collateral and reserve.liquidation_threshold_bps != 0:
            value = reserve.collateral_base_units * per_unit * scale
            collateral = collateral + value
            weighted = weighted + value * liquidation_threshold_bps(account, reserve)
        debt = debt + (reserve.variable_debt_base_units + reserve.stable_debt_base_units) * per_unit * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        avg_lt = np.floor(np.where(collateral > 0, weighted / collateral, 0.0))
        return np.where(debt > 0, collateral * avg_lt / PERCENTAGE_FACTOR / debt, np.inf)


def _factor_parts(account: AaveAccount, moved: frozenset[str]) -> tuple[float, float, float, float]:
    """Split Σ collateral·LT and Σ debt (base currency, 1e8) into the parts that stay and the parts that scale
    with a factor on the prices of `moved`: (fixed collateral, moving collateral, fixed debt, moving debt)."""
    fixed_coll = moving_coll = fixed_debt = moving_debt = 0.0
    for reserve in account.reserves:
        per_unit = effective_price_1e8(account, reserve) / 10**reserve.token.decimals
        coll = 0.0
        if reserve.usage_as_collateral and reserve.liquidation_threshold_bps != 0:
            lt = liquidation_threshold_bps(account, reserve) / PERCENTAGE_FACTOR
            coll = reserve.collateral_base_units * per_unit * lt
        owed = (reserve.variable_debt_base_units + reserve.stable_debt_base_units) * per_unit
        if price_follows(account, reserve) in moved:
            moving_coll, moving_debt = moving_coll + coll, moving_debt + owed
        else:
            fixed_coll, fixed_debt = fixed_coll + coll, fixed_debt + owed
    return fixed_coll, moving_coll, fixed_debt, moving_debt


def _closed_form_crossing(account: AaveAccount, moved: frozenset[str]) -> tuple[float, int] | None:
    """The factor f at which (A + a·f) = (D + d·f), i.e. HF = 1 without truncations, and the side of it where the
    account is healthy (+1: above, a rally helps; −1: below); None if no positive factor crosses."""
    fixed_coll, moving_coll, fixed_debt, moving_debt = _factor_parts(account, moved)
    if moving_coll == moving_debt:
        return None
    factor = (fixed_debt - fixed_coll) / (moving_coll - moving_debt)
    return (factor, 1 if moving_coll > moving_debt else -1) if factor > 0 else None


def _exact_crossing(account: AaveAccount, moved: frozenset[str]) -> tuple[float, int] | None:
    """The factor nearest the closed form at which the integer HF crosses 1, to 1e-12 relative, and its side."""
    estimate = _closed_form_crossing(account, moved)
    if estimate is None:
        return None
    guess, healthy_side = estimate

    health_at = shocked_health_factor(account, moved)
    # Truncations move the crossing by ~1e-4 of the factor: bracket it with steps from 1e-3 up.
    step = 1e-3
    if health_at(guess) < LIQUIDATION_THRESHOLD_WAD:
        doomed = guess
        healthy = guess * (1 + healthy_side * step)
        while health_at(healthy) < LIQUIDATION_THRESHOLD_WAD:
            step *= 2
            if step > 1e6:
                return None
            doomed, healthy = healthy, guess * max(1 + healthy_side * step, 0.5**40)
    else:
        healthy = guess
        doomed = guess * (1 - healthy_side * step)
        while health_at(doomed) >= LIQUIDATION_THRESHOLD_WAD:
            step *= 2
            if step > 1e6:
                return None
            healthy, doomed = doomed, guess * max(1 - healthy_side * step, 0.5**40)
    return bisect(health_at, healthy, doomed), healthy_side


def price_follows(account: AaveAccount, reserve: AaveReserve) -> str:
    """Return the symbol whose price moves `reserve`'s price for this user: the e-mode category's price source
    when it overrides the oracle, else the reserve's own symbol."""
    emode = account.emode
    if emode is not None and emode.price_1e8 != 0 and _in_emode(account, reserve):
        return emode.price_source_symbol
    return reserve.token.symbol


def _in_emode(account: AaveAccount, reserve: AaveReserve) -> bool:
    return account.emode is not None and account.emode.category_id != 0 and (
        reserve.emode_category == account.emode.category_id
    )


def _reserve(account: AaveAccount, symbol: str) -> AaveReserve:
    for reserve in account.reserves:
        if reserve.token.symbol == symbol:
            return reserve
    raise KeyError(f"{account.account} has no {symbol} reserve")


def with_prices(account: AaveAccount, prices_1e8: Mapping[str, int]) -> AaveAccount:
    """Return the account with the oracle price of each symbol in `prices_1e8` (and an e-mode price source that
    follows one of them) set to the given base-currency price (1e8)."""
    reserves = tuple(
        dataclasses.replace(r, price_1e8=prices_1e8[r.token.symbol]) if r.token.symbol in prices_1e8 else r
        for r in account.reserves
    )
    emode = account.emode
    if emode is not None and emode.price_source_symbol in prices_1e8:
        emode = dataclasses.replace(emode, price_1e8=prices_1e8[emode.price_source_symbol])
    return dataclasses.replace(account, reserves=reserves, emode=emode)


def moved_account(account: AaveAccount, moves: Mapping[str, float]) -> AaveAccount:
    """Return the account with each symbol's oracle price multiplied by `moves[symbol]` (rounded to the oracle's
    integer), an e-mode price source moving with the symbol it follows."""
    for symbol, factor in moves.items():
        account = shocked_account(account, (symbol,), factor)
    return account


def _scale(price_1e8: int, factor: float) -> int:
    return max(round(price_1e8 * factor), 0)
