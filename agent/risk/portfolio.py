"""The whole book against one underlying: value, desk-unit Greeks per position and in total, and every lending
position's (Aave account, Morpho Blue market position) health factor and distance to liquidation, in a `RiskReport`.

Desk units (DESIGN.md): delta_usd = dV/dS·S; gamma_usd_1pct = d²V/dS²·S·(0.01·S), the change of delta_usd for a
1% move; vega_usd_1vol = ∂V/∂σ / 100; theta_usd_1d = −∂V/∂T / 365; rho_usd_1pct = ∂V/∂r / 100. A perp's theta
is a day of funding, an Aave account's a day of interest at its reserves' current APRs. Time to an option's
expiry comes from `now_ts`, the block's timestamp.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from agent.model import (
    AaveAccount,
    AaveReserve,
    AccountHealth,
    DeskGreeks,
    LendingPosition,
    LpPosition,
    MorphoPosition,
    OptionPosition,
    PerpPosition,
    Position,
    PositionRisk,
    RiskReport,
    Scenario,
)
from agent.risk import crossing, lending, lp, morpho, perps
from agent.risk.factors import SECONDS_PER_YEAR as SECONDS_PER_YEAR
from agent.risk.factors import factor_risks, value_at
from agent.risk.factors import years_to_expiry as years_to_expiry
from agent.risk.greeks import Greeks, black_scholes
from agent.risk.scenarios import stress_scenarios

DAYS_PER_YEAR = 365.0


def value_usd(
    position: Position,
    underlying: str,
    prices_usd: Mapping[str, float],
    now_ts: int,
    *,
    spot_factor: ArrayLike = 1.0,
    vol_factor: ArrayLike = 1.0,
    rate: float = 0.0,
) -> NDArray[np.float64]:
    """Return the position's value in USD with the underlying's price multiplied by `spot_factor` and option vols
    by `vol_factor` (both broadcast; the result has their broadcast shape), every other price fixed
    (`factors.value_at` with one move)."""
    shape = np.broadcast_shapes(np.shape(spot_factor), np.shape(vol_factor))
    vol_moves = {position.underlying: vol_factor} if isinstance(position, OptionPosition) else {}
    value = value_at(position, prices_usd, now_ts, {underlying: spot_factor}, vol_moves, rate)
    return np.broadcast_to(value, shape).copy()


def position_risk(
    position: Position, underlying: str, prices_usd: Mapping[str, float], now_ts: int, rate: float = 0.0
) -> PositionRisk:
    """Return the position's label, value (USD) and desk Greeks against `underlying` (zero Greeks for positions
    on another underlying)."""
    spot = prices_usd[underlying]
    marks = None
    if isinstance(position, OptionPosition) and position.underlying == underlying:
        # One evaluation gives the mark and the Greeks (value_usd would price the option again, identically).
        marks = _option_marks(position, spot, now_ts, rate)
        value = float(marks.price * position.quantity)
    else:
        value = float(value_usd(position, underlying, prices_usd, now_ts, rate=rate))
    greeks = DeskGreeks()
    if isinstance(position, AaveAccount):
        greeks = _aave_greeks(position, underlying)
        label = f"aave_v3:{position.chain}:{position.account}"
    elif isinstance(position, MorphoPosition):
        collateral_usd, debt_usd = morpho.usd_values(position, prices_usd)
        greeks = DeskGreeks(delta_usd=collateral_usd * (position.collateral_token.symbol == underlying)
                            - debt_usd * (position.loan_token.symbol == underlying))
        label = f"morpho_blue:{position.chain}:{position.market_id[:10]}:{position.account}"
    elif isinstance(position, LpPosition):
        if underlying in (position.token0.symbol, position.token1.symbol):
            other = _other_symbol(position, underlying)
            lp_value = lp.valuation(position, underlying, spot, prices_usd[other])
            greeks = DeskGreeks(
                delta_usd=float(lp_value.delta_underlying) * spot,
                gamma_usd_1pct=float(lp_value.gamma_underlying_per_usd) * spot * 0.01 * spot,
            )
        label = f"uniswap_v3:{position.chain}:{position.token_id}"
    elif isinstance(position, PerpPosition):
        if position.underlying == underlying:
            greeks = DeskGreeks(
                delta_usd=perps.delta_underlying(position) * spot,
                theta_usd_1d=float(perps.funding_carry_usd(position, spot, 24.0)),
            )
        label = f"perp:{position.venue}:{position.underlying}"
    else:
        if marks is not None:
            greeks = _option_greeks(position, marks, spot)
        kind = "C" if position.is_call else "P"
        label = f"option:{position.venue}:{position.underlying}-{position.expiry_ts}-{position.strike_usd:g}-{kind}"
    return PositionRisk(label, value, greeks)


def _aave_greeks(account: AaveAccount, underlying: str) -> DeskGreeks:
    """An Aave account's delta and theta against `underlying`."""
    # Priced by Aave at the underlying's price, so it moves one for one with it: a supply is long, a debt short.
    held_usd = sum(
        _net_supply(r) * lending.effective_price_1e8(account, r) / 1e8
        for r in account.reserves
        if lending.price_follows(account, r) == underlying
    )
    # Interest is the lending position's time decay: supply earns, debt costs, per calendar day.
    carry_usd = sum(
        (
            r.collateral_base_units * r.supply_apr
            - (r.variable_debt_base_units + r.stable_debt_base_units) * r.variable_borrow_apr
        )
        / 10**r.token.decimals
        * lending.effective_price_1e8(account, r)
        / 1e8
        for r in account.reserves
    )
    return DeskGreeks(delta_usd=held_usd, theta_usd_1d=carry_usd / DAYS_PER_YEAR)


def account_health(
    account: AaveAccount,
    underlying: str,
    spot_usd: float,
    lp_collateral: Iterable[LpPosition] = (),
    other_usd: float = 1.0,
) -> AccountHealth:
    """Return the account's exact health factor and the moves of the underlying (down, up, in % of spot) that
    drive it below 1, every asset priced in the underlying moving together.

    `lp_collateral` are LP positions whose tokens count as the account's collateral (the same owner's holdings,
    valued with the liquidation threshold of the matching reserve): their composition changes with the price,
    which the search follows. `other_usd` prices the LP's other token.
    """
    held = tuple(lp_collateral)
    moved = (underlying,)

    def health_at(factor: float) -> int:
        shocked = lending.shocked_account(account, moved, factor)
        return lending.health_factor_wad(_with_lp_collateral(shocked, held, underlying, spot_usd * factor, other_usd))

    health_wad = health_at(1.0)
    # Alone, an account's health factor crosses 1 at most once and has a closed form; with an LP's changing
    # composition it need not, and the general search scans for the nearest crossing.
    if held:
        down, up = crossing.liquidation_shocks(health_at)
    else:
        down, up = lending.account_liquidation_shocks(account, moved)
    return _health(account, health_wad, down, up, spot_usd)


def morpho_position_health(position: MorphoPosition, underlying: str, spot_usd: float) -> AccountHealth:
    """Return the Morpho position's exact health factor and the moves of the underlying (down, up, in % of spot)
    that make it liquidatable, every other price fixed."""
    down, up = morpho.account_liquidation_shocks(position, (underlying,))
    return _health(position, morpho.health_factor_wad(position), down, up, spot_usd)


def _health(
    position: LendingPosition, health_wad: int, down: float | None, up: float | None, spot_usd: float
) -> AccountHealth:
    """The health of a lending position from its health factor and its liquidating factors on the underlying."""
    nearer = min((f for f in (down, up) if f is not None), key=lambda f: abs(f - 1.0), default=None)
    return AccountHealth(
        chain=position.chain,
        account=position.account,
        health_factor_wad=health_wad,
        health_factor=lending.health_factor_float(health_wad),
        liquidation_price_usd=None if nearer is None else spot_usd * nearer,
        distance_down_pct=math.inf if down is None else (1.0 - down) * 100.0,
        distance_up_pct=math.inf if up is None else (up - 1.0) * 100.0,
        protocol="morpho_blue" if isinstance(position, MorphoPosition) else "aave_v3",
        market_id=position.market_id if isinstance(position, MorphoPosition) else "",
    )


def risk_report(
    positions: Iterable[Position],
    underlying: str,
    prices_usd: Mapping[str, float],
    now_ts: int,
    *,
    rate: float = 0.0,
    lp_counts_as_collateral: bool = False,
    betas: Mapping[str, float] | None = None,
    scenarios: Sequence[Scenario] = (),
) -> RiskReport:
    """Return the book's value, desk Greeks per position and in total, every lending position's health, the smallest
    move of the underlying (in % of spot, down and up) that liquidates any account, the Greeks per risk factor with
    the beta-weighted delta, and the book in each of `scenarios`.

    `prices_usd` maps every symbol in the book to its USD price; `now_ts` is the block timestamp; `rate` the
    annual continuously compounded rate for options. With `lp_counts_as_collateral`, an LP position held by the
    same chain and owner as an Aave account counts as that account's collateral in the liquidation search.
    `betas` are each factor's beta to the underlying (the policy's values; default: 1 for the underlying, 0 for
    the rest).
    """
    book = tuple(positions)
    spot = prices_usd[underlying]
    risks = tuple(position_risk(p, underlying, prices_usd, now_ts, rate) for p in book)
    lps = [p for p in book if isinstance(p, LpPosition)]
    accounts = []
    for account in (p for p in book if isinstance(p, AaveAccount)):
        owned = [
            p
            for p in lps
            if lp_counts_as_collateral and p.chain == account.chain and p.owner.lower() == account.account.lower()
        ]
        other = prices_usd[_other_symbol(owned[0], underlying)] if owned else 1.0
        accounts.append(account_health(account, underlying, spot, owned, other))
    accounts += [morpho_position_health(p, underlying, spot) for p in book if isinstance(p, MorphoPosition)]
    total = sum((r.greeks for r in risks), DeskGreeks())
    factors = factor_risks(book, prices_usd, now_ts, {underlying: 1.0} if betas is None else betas, rate)
    return RiskReport(
        underlying=underlying,
        spot_usd=spot,
        positions=risks,
        total=total,
        value_usd=sum(r.value_usd for r in risks),
        accounts=tuple(accounts),
        liquidation_distance_down_pct=min((a.distance_down_pct for a in accounts), default=math.inf),
        liquidation_distance_up_pct=min((a.distance_up_pct for a in accounts), default=math.inf),
        factors=factors,
        beta_delta_usd=sum(f.beta_delta_usd for f in factors),
        scenarios=stress_scenarios(book, prices_usd, now_ts, scenarios, rate),
    )


def _option_marks(position: OptionPosition, spot: float, now_ts: int, rate: float) -> Greeks:
    """Return the option's BSM price and raw Greeks at `spot` (USD) and its own vol."""
    return black_scholes(
        position.is_call,
        spot,
        position.strike_usd,
        years_to_expiry(position.expiry_ts, now_ts),
        position.vol_annual,
        rate,
    )


def _option_greeks(position: OptionPosition, g: Greeks, spot: float) -> DeskGreeks:
    """Return the desk Greeks (USD) of the position from its raw Greeks per option."""
    qty = position.quantity
    return DeskGreeks(
        delta_usd=float(g.delta) * spot * qty,
        gamma_usd_1pct=float(g.gamma) * spot * 0.01 * spot * qty,
        vega_usd_1vol=float(g.vega) / 100.0 * qty,
        theta_usd_1d=float(g.theta) / DAYS_PER_YEAR * qty,
        rho_usd_1pct=float(g.rho) / 100.0 * qty,
    )


def _net_supply(reserve: AaveReserve) -> float:
    """Supplied minus owed, in whole tokens."""
    owed = reserve.variable_debt_base_units + reserve.stable_debt_base_units
    return (reserve.collateral_base_units - owed) / 10**reserve.token.decimals


def _other_symbol(position: LpPosition, underlying: str) -> str:
    return position.token1.symbol if lp.underlying_index(position, underlying) == 0 else position.token0.symbol


def _with_lp_collateral(
    account: AaveAccount, held: tuple[LpPosition, ...], underlying: str, spot_usd: float, other_usd: float
) -> AaveAccount:
    """The account with each LP's current holdings added to the collateral of the reserve of the same token."""
    if not held:
        return account
    extra: dict[str, int] = {}
    for position in held:
        root = np.sqrt(lp.pool_price(position, underlying, spot_usd, other_usd))
        x0, x1 = lp.holdings(position, root)
        for token, amount in ((position.token0, x0), (position.token1, x1)):
            key = token.address.lower()
            extra[key] = extra.get(key, 0) + int(amount)
    reserves = tuple(
        dataclasses.replace(r, collateral_base_units=r.collateral_base_units + extra.get(r.token.address.lower(), 0))
        for r in account.reserves
    )
    return dataclasses.replace(account, reserves=reserves)
