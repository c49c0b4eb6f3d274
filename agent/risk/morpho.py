"""Morpho Blue market positions: health in Morpho's own integer math, the exact liquidation price, the liquidation
incentive factor, and the same scenario functions `risk/lending.py` gives an Aave account (`health_factor_wad`,
`shocked_account`, `account_liquidation_shocks`, `scenario_health_factor`), so that the risk report treats both
protocols' positions alike.

Morpho (Morpho.sol `_isHealthy`) holds a position healthy while
    borrowed = toAssetsUp(borrowShares) ≤ maxBorrow = wMulDown(mulDivDown(collateral, price, 1e36), lltv),
with `price` the oracle's value of one collateral base unit in loan base units scaled by 1e36 and the totals accrued
to the block. The health factor here is maxBorrow / borrowed in wad, rounded down, so that it is below 1e18 exactly
when Morpho would allow a liquidation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from agent.model import MorphoPosition

WAD = 10**18
ORACLE_PRICE_SCALE = 10**36
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1
NO_DEBT_HEALTH_FACTOR = 2**256 - 1
# Morpho's ConstantsLib: the liquidation cursor β and the cap on the incentive factor.
LIQUIDATION_CURSOR_WAD = 3 * 10**17
MAX_LIQUIDATION_INCENTIVE_FACTOR_WAD = 115 * 10**16


def _mul_div_up(x: int, y: int, d: int) -> int:
    return (x * y + d - 1) // d


def to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    """Return `shares` of a market's borrow side in assets, rounded up (SharesMathLib.toAssetsUp)."""
    return _mul_div_up(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def to_shares_up(assets: int, total_assets: int, total_shares: int) -> int:
    """Return `assets` in borrow shares, rounded up (SharesMathLib.toSharesUp)."""
    return _mul_div_up(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_shares_down(assets: int, total_assets: int, total_shares: int) -> int:
    """Return `assets` in borrow shares, rounded down (SharesMathLib.toSharesDown: what a repay of assets burns)."""
    return assets * (total_shares + VIRTUAL_SHARES) // (total_assets + VIRTUAL_ASSETS)


def after_repay(position: MorphoPosition, *, assets: int = 0, shares: int = 0) -> tuple[MorphoPosition, int]:
    """Return the position after Morpho's `repay` of `assets` (shares burnt rounded down) or of `shares` (assets
    paid rounded up), and the loan-token base units paid. ValueError when it repays more than is owed."""
    total_assets, total_shares = position.total_borrow_assets, position.total_borrow_shares
    if shares:
        assets = to_assets_up(shares, total_assets, total_shares)
    else:
        shares = to_shares_down(assets, total_assets, total_shares)
    if shares > position.borrow_shares:
        raise ValueError(f"plan repays more than the Morpho position {position.market_id[:10]} owes")
    return dataclasses.replace(
        position, borrow_shares=position.borrow_shares - shares, total_borrow_shares=total_shares - shares,
        total_borrow_assets=max(total_assets - assets, 0),
    ), assets


def with_borrowed(position: MorphoPosition, assets: int) -> MorphoPosition:
    """Return the position after Morpho's `borrow` of `assets` (shares minted rounded up)."""
    shares = to_shares_up(assets, position.total_borrow_assets, position.total_borrow_shares)
    return dataclasses.replace(
        position, borrow_shares=position.borrow_shares + shares,
        total_borrow_shares=position.total_borrow_shares + shares,
        total_borrow_assets=position.total_borrow_assets + assets,
    )


def with_collateral(position: MorphoPosition, change_base_units: int) -> MorphoPosition:
    """Return the position with collateral supplied (+) or withdrawn (−). ValueError below zero."""
    collateral = position.collateral_base_units + change_base_units
    if collateral < 0:
        raise ValueError(f"plan withdraws more collateral than the Morpho position {position.market_id[:10]} has")
    return dataclasses.replace(position, collateral_base_units=collateral)


def repay_needed(position: MorphoPosition, target_wad: int) -> int:
    """Return the fewest loan-token base units whose repayment brings the health factor to `target_wad` (all the
    debt when even that falls short; 0 when already there)."""
    if health_factor_wad(position) >= target_wad:
        return 0
    owed = borrowed_base_units(position)
    lo, hi = 0, owed
    while hi - lo > 1:
        mid = (lo + hi) // 2
        repaid, _ = after_repay(position, assets=mid)
        if health_factor_wad(repaid) >= target_wad:
            hi = mid
        else:
            lo = mid
    return hi


def borrowed_base_units(position: MorphoPosition) -> int:
    """Return the position's debt in loan-token base units, its shares rounded up as Morpho rounds them."""
    return to_assets_up(position.borrow_shares, position.total_borrow_assets, position.total_borrow_shares)


def max_borrow_base_units(position: MorphoPosition, price_1e36: int | None = None) -> int:
    """Return the most the position may owe and stay healthy (loan base units), at the oracle price or `price_1e36`."""
    price = position.oracle_price_1e36 if price_1e36 is None else price_1e36
    return position.collateral_base_units * price // ORACLE_PRICE_SCALE * position.lltv_wad // WAD


def health_factor_wad(position: MorphoPosition) -> int:
    """Return maxBorrow / borrowed in wad, rounded down (below 1e18 exactly when Morpho allows a liquidation);
    2**256 − 1 with no debt."""
    borrowed = borrowed_base_units(position)
    if position.borrow_shares == 0 or borrowed == 0:
        return NO_DEBT_HEALTH_FACTOR
    return max_borrow_base_units(position) * WAD // borrowed


def lowest_healthy_price_1e36(position: MorphoPosition) -> int | None:
    """Return the lowest oracle price (1e36 scale) at which the position is healthy; every lower price allows a
    liquidation. None with no debt. Exact: the smallest collateral value V with ⌊V·lltv/1e18⌋ ≥ borrowed is
    ⌈borrowed·1e18/lltv⌉, and the smallest price P with ⌊collateral·P/1e36⌋ ≥ V is ⌈V·1e36/collateral⌉."""
    borrowed = borrowed_base_units(position)
    if position.borrow_shares == 0 or borrowed == 0:
        return None
    if position.collateral_base_units == 0 or position.lltv_wad == 0:
        return None  # no price makes it healthy
    value = _mul_div_up(borrowed, WAD, position.lltv_wad)
    return _mul_div_up(value, ORACLE_PRICE_SCALE, position.collateral_base_units)


def liquidation_price_1e36(position: MorphoPosition) -> int | None:
    """Return the highest oracle price (1e36 scale) at which the position can be liquidated, None with no debt."""
    healthy = lowest_healthy_price_1e36(position)
    return None if healthy is None else healthy - 1


def liquidation_incentive_factor_wad(lltv_wad: int) -> int:
    """Return Morpho's liquidation incentive factor for a market's LLTV, in wad:
    min(1.15, 1 / (1 − β·(1 − LLTV))) with β = 0.3, i.e. 1 / (β·LLTV + 1 − β), each step rounded down."""
    cursor_part = LIQUIDATION_CURSOR_WAD * (WAD - lltv_wad) // WAD
    return min(MAX_LIQUIDATION_INCENTIVE_FACTOR_WAD, WAD * WAD // (WAD - cursor_part))


def shocked_account(position: MorphoPosition, symbols: Iterable[str], factor: float) -> MorphoPosition:
    """Return the position with the USD price of every token in `symbols` multiplied by `factor`: the oracle
    price (collateral in loan token) moves by the collateral's factor over the loan token's, rounded down."""
    ratio = _price_ratio(position, frozenset(symbols), factor)
    return dataclasses.replace(position, oracle_price_1e36=max(math.floor(position.oracle_price_1e36 * ratio), 0))


def account_liquidation_shocks(
    position: MorphoPosition, symbols: Iterable[str]
) -> tuple[float | None, float | None]:
    """Return the factors on the USD prices of `symbols` (down, up) at which the position becomes liquidatable,
    all other prices fixed; (1.0, 1.0) if it is liquidatable now, None on a side where no move liquidates it.

    The oracle price is collateral over loan token, so a fall of the collateral or a rise of the loan token
    liquidates; moving both together changes nothing."""
    moved = frozenset(symbols)
    if health_factor_wad(position) < WAD:
        return 1.0, 1.0
    boundary = liquidation_price_1e36(position)
    collateral_moves = position.collateral_token.symbol in moved
    if boundary is None or collateral_moves == (position.loan_token.symbol in moved):
        return None, None
    ratio = boundary / position.oracle_price_1e36
    return (ratio, None) if collateral_moves else (None, 1.0 / ratio)


def scenario_health_factor(
    position: MorphoPosition, symbols: Iterable[str], factors: ArrayLike
) -> NDArray[np.float64]:
    """Return the health factor (float64, inf with no debt) with the prices of `symbols` multiplied by each of
    `factors` (any shape)."""
    moved = frozenset(symbols)
    f = np.asarray(factors, dtype=np.float64)
    borrowed = borrowed_base_units(position)
    if position.borrow_shares == 0 or borrowed == 0:
        return np.full(f.shape, np.inf)
    up = f if position.collateral_token.symbol in moved else 1.0
    down = f if position.loan_token.symbol in moved else 1.0
    max_borrow = position.collateral_base_units * position.oracle_price_1e36 / ORACLE_PRICE_SCALE
    return np.asarray(max_borrow * position.lltv_wad / WAD * up / down / borrowed + np.zeros_like(f))


def collateral_value_loan_units(position: MorphoPosition) -> float:
    """Return the collateral's value at the oracle price, in whole loan tokens."""
    value = position.collateral_base_units * position.oracle_price_1e36 / ORACLE_PRICE_SCALE
    return value / 10**position.loan_token.decimals


def debt_loan_units(position: MorphoPosition) -> float:
    """Return the debt in whole loan tokens."""
    return borrowed_base_units(position) / 10**position.loan_token.decimals


def usd_values(position: MorphoPosition, prices_usd: Mapping[str, float]) -> tuple[float, float]:
    """Return the position's collateral (at its oracle's price) and debt, both in USD at the loan token's price."""
    loan_usd = prices_usd[position.loan_token.symbol]
    return collateral_value_loan_units(position) * loan_usd, debt_loan_units(position) * loan_usd


def _price_ratio(position: MorphoPosition, moved: frozenset[str], factor: float) -> float:
    up = factor if position.collateral_token.symbol in moved else 1.0
    down = factor if position.loan_token.symbol in moved else 1.0
    return up / down
