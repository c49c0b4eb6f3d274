"""Joint stress scenarios: the whole book revalued under simultaneous moves of several factors and option vols,
every lending position's (Aave account, Morpho Blue position) exact health factor at the moved oracle prices, and
what a liquidation would cost.

The default set (`default_scenarios`), which a policy gets without writing any:
- per factor that is neither a stablecoin nor an LST, its spot moved by each of `SPOT_GRID` (the LSTs pegged to it
  moving with it), crossed with each of `VOL_GRID` on the vols of options on it when the book holds any;
- each stablecoin depegged by each of `STABLE_DEPEGS`, alone;
- each LST depegged from its peg by each of `LST_DEPEGS`, alone (the peg asset unmoved);
- each decoupled pair (ETH/BTC): one falls `DECOUPLING`, the other rises half as much, both ways.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from agent.model import (
    AaveAccount,
    AaveReserve,
    AccountStress,
    MorphoPosition,
    OptionPosition,
    Position,
    Scenario,
    ScenarioResult,
)
from agent.risk import lending, morpho
from agent.risk.factors import book_value_at

SPOT_GRID = (-0.40, -0.20, -0.10, 0.10, 0.20, 0.40)
VOL_GRID = (0.0, 0.5)
STABLE_DEPEGS = (-0.05, -0.10)
LST_DEPEGS = (-0.03, -0.08)
DECOUPLING = 0.20
_MAX_WALK = 100_000


def default_scenarios(
    factors: Iterable[str],
    *,
    stablecoins: Iterable[str] = (),
    lsts: Mapping[str, str] | None = None,
    decoupled: Iterable[tuple[str, str]] = (),
    option_underlyings: Iterable[str] = (),
) -> tuple[Scenario, ...]:
    """Return the default scenarios (module docstring) for a book with these factors; `lsts` maps an LST to the
    asset it is pegged to."""
    present = set(factors)
    stable = [s for s in stablecoins if s in present]
    pegged = {lst: peg for lst, peg in (lsts or {}).items() if lst in present}
    with_options = set(option_underlyings)
    out: list[Scenario] = []
    for factor in sorted(present - set(stable) - set(pegged)):
        followers = [factor, *sorted(lst for lst, peg in pegged.items() if peg == factor)]
        for spot in SPOT_GRID:
            for vol in VOL_GRID if factor in with_options else (0.0,):
                name = f"{factor} {spot:+.0%}" + (f", vol {vol:+.0%}" if vol else "")
                out.append(Scenario(name, tuple((s, spot) for s in followers), ((factor, vol),) if vol else ()))
    for coin in stable:
        out += [Scenario(f"{coin} depeg {move:.0%}", ((coin, move),)) for move in STABLE_DEPEGS]
    for lst in sorted(pegged):
        out += [Scenario(f"{lst} depeg {move:.0%} vs {pegged[lst]}", ((lst, move),)) for move in LST_DEPEGS]
    for a, b in decoupled:
        if a in present and b in present:
            for down, up in ((a, b), (b, a)):
                name = f"{a}/{b} decoupling: {down} {-DECOUPLING:+.0%}, {up} {DECOUPLING / 2:+.0%}"
                out.append(Scenario(name, ((down, -DECOUPLING), (up, DECOUPLING / 2))))
    return tuple(out)


def option_underlyings(positions: Iterable[Position]) -> tuple[str, ...]:
    """Return the underlyings of the book's options, sorted."""
    return tuple(sorted({p.underlying for p in positions if isinstance(p, OptionPosition)}))


def account_stress(account: AaveAccount, shocks: Mapping[str, float]) -> AccountStress:
    """Return the account's exact health factor with each factor's Aave price moved by `shocks` (relative), and,
    below 1, the cost of one liquidation of its largest debt against its largest collateral (USD)."""
    moved = lending.moved_account(account, {s: 1.0 + m for s, m in shocks.items()})
    health_wad = lending.health_factor_wad(moved)
    stress = AccountStress(account.chain, account.account, lending.health_factor_float(health_wad))
    if health_wad >= lending.LIQUIDATION_THRESHOLD_WAD:
        return stress
    debt = _largest(moved, collateral=False)
    collateral = _largest(moved, collateral=True)
    if debt is None or collateral is None:
        return stress
    call = lending.liquidation(moved, debt.token.symbol, collateral.token.symbol)
    repaid_usd = (call.debt_repaid_base_units * lending.effective_price_1e8(moved, debt)
                  / 10**debt.token.decimals / 1e8)
    return AccountStress(stress.chain, stress.account, stress.health_factor, call.cost_1e8 / 1e8, repaid_usd)


def morpho_stress(
    position: MorphoPosition, shocks: Mapping[str, float], prices_usd: Mapping[str, float]
) -> AccountStress:
    """Return the Morpho position's exact health factor with its tokens' USD prices moved by `shocks` (relative; the
    oracle price moves by the collateral's move over the loan token's), and, below 1, what one liquidation would
    cost (USD): Morpho has no close factor, so the whole debt may be repaid, seizing collateral worth the
    liquidation incentive factor times the debt repaid (capped by the collateral)."""
    moved = position
    for symbol, move in shocks.items():
        moved = morpho.shocked_account(moved, (symbol,), 1.0 + move)
    health_wad = morpho.health_factor_wad(moved)
    stress = AccountStress(position.chain, position.account, lending.health_factor_float(health_wad),
                           protocol="morpho_blue", market_id=position.market_id)
    if health_wad >= morpho.WAD:
        return stress
    incentive = morpho.liquidation_incentive_factor_wad(position.lltv_wad) / morpho.WAD
    loan_usd = prices_usd[position.loan_token.symbol] * (1.0 + shocks.get(position.loan_token.symbol, 0.0))
    repaid = min(morpho.debt_loan_units(moved), morpho.collateral_value_loan_units(moved) / incentive)
    return dataclasses.replace(stress, liquidation_cost_usd=repaid * (incentive - 1.0) * loan_usd,
                               liquidated_debt_usd=repaid * loan_usd)


def stress_scenarios(
    positions: Iterable[Position],
    prices_usd: Mapping[str, float],
    now_ts: int,
    scenarios: Sequence[Scenario],
    rate: float = 0.0,
) -> tuple[ScenarioResult, ...]:
    """Return each scenario's P&L against today's value (USD, full revaluation) and every lending position's stress
    (Aave accounts, then Morpho positions)."""
    book = tuple(positions)
    if not scenarios:
        return ()
    accounts = [p for p in book if isinstance(p, AaveAccount)]
    positions_morpho = [p for p in book if isinstance(p, MorphoPosition)]
    base = float(book_value_at(book, prices_usd, now_ts, rate=rate))
    out = []
    for scenario in scenarios:
        moves = {s: 1.0 + m for s, m in scenario.shocks}
        vols = {u: 1.0 + v for u, v in scenario.vol_shocks}
        value = float(book_value_at(book, prices_usd, now_ts, moves, vols, rate))
        shocks = dict(scenario.shocks)
        stressed = tuple(account_stress(a, shocks) for a in accounts) + tuple(
            morpho_stress(p, shocks, prices_usd) for p in positions_morpho)
        out.append(ScenarioResult(scenario.name, scenario.shocks, scenario.vol_shocks, value - base, stressed))
    return tuple(out)


def joint_liquidation_prices_1e8(account: AaveAccount, shocks: Mapping[str, float]) -> dict[str, int] | None:
    """Return the oracle prices (base currency, 1e8) on the scenario's ray — every factor in `shocks` moved by
    t·shock together — at the edge of liquidation: the account is healthy there (HF ≥ 1) and liquidatable with
    every moved price one unit further in its shock's direction. None if it is liquidatable now or no t ∈ (0, t_max]
    liquidates it (t_max: a falling price reaches zero, or 100 times the shock when all rise).

    Exact: the integer health factor at integer prices, found by bisection on t and a unit-step walk at the end.
    """
    moved = {s: m for s, m in shocks.items() if m != 0}
    start = {r.token.symbol: r.price_1e8 for r in account.reserves if r.token.symbol in moved}
    if account.emode is not None and account.emode.price_source_symbol in moved:
        start.setdefault(account.emode.price_source_symbol, account.emode.price_1e8)
    if not start:
        return None

    def prices_at(t: float) -> dict[str, int]:
        return {s: max(1, round(p * (1.0 + t * moved[s]))) for s, p in start.items()}

    def healthy(prices: Mapping[str, int]) -> bool:
        return lending.health_factor_wad(lending.with_prices(account, prices)) >= lending.LIQUIDATION_THRESHOLD_WAD

    falling = [-m for m in moved.values() if m < 0]
    t_high = 1.0 / max(falling) if falling else 100.0
    if not healthy(prices_at(0.0)) or healthy(prices_at(t_high)):
        return None
    t_low = 0.0
    for _ in range(200):
        mid = 0.5 * (t_low + t_high)
        if prices_at(mid) in (prices_at(t_low), prices_at(t_high)):
            break
        t_low, t_high = (mid, t_high) if healthy(prices_at(mid)) else (t_low, mid)
    edge = prices_at(t_low)
    step = {s: int(np.sign(moved[s])) for s in edge}
    for _ in range(_MAX_WALK):
        further = {s: p + step[s] for s, p in edge.items()}
        if min(further.values()) < 1 or not healthy(further):
            return edge
        edge = further
    return None


def _largest(account: AaveAccount, *, collateral: bool) -> AaveReserve | None:
    """The reserve with the largest collateral (counted as collateral) or debt value at Aave's prices."""

    def value(r: AaveReserve) -> float:
        units = r.collateral_base_units if collateral else r.variable_debt_base_units + r.stable_debt_base_units
        return units / 10**r.token.decimals * lending.effective_price_1e8(account, r)

    pool = [r for r in account.reserves if (r.usage_as_collateral and r.liquidation_threshold_bps) or not collateral]
    best = max(pool, key=value, default=None)
    return best if best is not None and value(best) > 0 else None
