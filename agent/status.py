"""`ballast status`: a snapshot shown as tables for a person, or as one JSON object for a program."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

from rich.console import Group
from rich.table import Table

from agent.model import AaveAccount, LpPosition, MorphoPosition, RiskReport, Snapshot
from agent.risk.morpho import borrowed_base_units

BASE_1E8 = 10**8
NO_DEBT_HEALTH_FACTOR = 2**256 - 1
WORST_SCENARIOS_SHOWN = 10


def lp_price_range(lp: LpPosition, underlying: str) -> tuple[float, float]:
    """Return the position's range as prices of `underlying` in the other token, low to high."""
    scale = 10 ** (lp.token0.decimals - lp.token1.decimals)
    prices = [1.0001**tick * scale for tick in (lp.tick_lower, lp.tick_upper)]  # token1 per token0
    if lp.token1.symbol == underlying:
        prices = [1 / p for p in prices]
    low, high = sorted(prices)
    return low, high


def health_factor_text(health_factor_wad: int | None) -> str:
    if health_factor_wad is None:
        return "?"
    return "∞" if health_factor_wad == NO_DEBT_HEALTH_FACTOR else f"{health_factor_wad / 1e18:.4f}"


def _usd(value_1e8: int) -> str:
    return f"{value_1e8 / BASE_1E8:,.2f}"


def snapshot_tables(snapshot: Snapshot) -> Group:
    """Return the snapshot as tables: chains, lending accounts, LP positions, prices, idle balances, problems."""
    morpho = _morpho_table(snapshot) if any(isinstance(p, MorphoPosition) for p in snapshot.positions) else None
    problems = _problems_table(snapshot) if snapshot.problems else None
    parts = (_chains_table(snapshot), _aave_table(snapshot), morpho, _lp_table(snapshot), _prices_table(snapshot),
             _balances_table(snapshot), problems)
    return Group(*(part for part in parts if part is not None))


def _table(title: str, columns: Sequence[str], right: Collection[str] = ()) -> Table:
    """Return an empty table with `columns`, those in `right` (the numbers) right-justified."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def _chains_table(snapshot: Snapshot) -> Table:
    chains = _table(f"{snapshot.portfolio} · {snapshot.account}", ("chain", "chain id", "block", "block time"))
    for c in snapshot.chains:
        chains.add_row(c.chain, str(c.chain_id), str(c.block_number), str(c.timestamp))
    return chains


def _aave_table(snapshot: Snapshot) -> Table:
    numbers = ("health factor", "collateral", "debt", "price USD", "LT bps")
    lending = _table("Aave v3", ("chain", "health factor", "asset", "collateral", "debt", "price USD", "LT bps"),
                     numbers)
    for account in (p for p in snapshot.positions if isinstance(p, AaveAccount)):
        for i, r in enumerate(account.reserves):
            scale = 10**r.token.decimals
            debt = r.variable_debt_base_units + r.stable_debt_base_units
            lending.add_row(
                account.chain if i == 0 else "", health_factor_text(account.reported_health_factor_wad) if i == 0
                else "", r.token.symbol, f"{r.collateral_base_units / scale:,.4f}", f"{debt / scale:,.4f}",
                _usd(r.price_1e8), str(r.liquidation_threshold_bps),
            )
    return lending


def _lp_table(snapshot: Snapshot) -> Table:
    lps = _table("Uniswap v3 positions",
                 ("chain", "id", "pair", "fee", f"range ({snapshot.underlying})", "in range", "liquidity"))
    for lp in (p for p in snapshot.positions if isinstance(p, LpPosition)):
        low, high = lp_price_range(lp, snapshot.underlying)
        in_range = "yes" if lp.tick_lower <= lp.tick < lp.tick_upper else "no"
        lps.add_row(lp.chain, str(lp.token_id), f"{lp.token0.symbol}/{lp.token1.symbol}", f"{lp.fee_pips / 1e4:g}%",
                    f"{low:,.2f}–{high:,.2f}", in_range, str(lp.liquidity))
    return lps


def _prices_table(snapshot: Snapshot) -> Table:
    prices = _table("Prices", ("chain", "asset", "USD", "source", "age s", "fresh"))
    for c in snapshot.chains:
        for p in c.prices:
            prices.add_row(c.chain, p.symbol, f"{p.price_usd:,.4f}", p.source, str(p.age_s), "no" if p.stale else "yes")
    return prices


def _balances_table(snapshot: Snapshot) -> Table:
    balances = _table("Idle balances", ("chain", "asset", "amount"))
    for c in snapshot.chains:
        for b in c.balances:
            if b.amount_base_units:
                balances.add_row(c.chain, b.token.symbol, f"{b.amount_base_units / 10**b.token.decimals:,.6f}")
    return balances


def _morpho_table(snapshot: Snapshot) -> Table:
    markets = _table("Morpho Blue", ("chain", "market", "health factor", "collateral", "debt", "LLTV"))
    for m in (p for p in snapshot.positions if isinstance(p, MorphoPosition)):
        debt = borrowed_base_units(m)
        markets.add_row(
            m.chain, f"{m.collateral_token.symbol}/{m.loan_token.symbol} {m.market_id[:10]}…",
            health_factor_text(m.reported_health_factor_wad),
            f"{m.collateral_base_units / 10**m.collateral_token.decimals:,.4f} {m.collateral_token.symbol}",
            f"{debt / 10**m.loan_token.decimals:,.4f} {m.loan_token.symbol}", f"{m.lltv_wad / 1e16:g}%")
    return markets


def _problems_table(snapshot: Snapshot) -> Table:
    problems = _table("Data problems", ("chain", "source", "kind", "detail"))
    for problem in snapshot.problems:
        problems.add_row(problem.chain, problem.source, problem.kind, problem.detail)
    return problems


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """Return the snapshot as JSON-ready data (integers stay exact; positions carry their `kind`)."""
    data = dataclasses.asdict(snapshot)
    for chain, chain_data in zip(snapshot.chains, data["chains"], strict=True):
        for position, position_data in zip(chain.positions, chain_data["positions"], strict=True):
            position_data["kind"] = type(position).__name__
    return data


def risk_tables(report: RiskReport) -> Group:
    """Return the report's risk factors (delta, gamma, beta), each chain's lending positions, and the worst stress
    scenarios (lowest health factor first) as tables: one view across every chain of the portfolio."""
    factor_columns = ("factor", "price USD", "beta", "delta USD", "beta·delta USD", "gamma USD/1%")
    factors = _table(f"Risk factors · beta-weighted delta {report.weighted_delta_usd:,.0f} USD "
                     f"(to {report.underlying}) · value {report.value_usd:,.0f} USD", factor_columns,
                     factor_columns[1:])
    for f in report.factors:
        factors.add_row(f.symbol, f"{f.price_usd:,.4f}", f"{f.beta:g}", f"{f.delta_usd:,.0f}",
                        f"{f.beta_delta_usd:,.0f}", f"{f.gamma_usd_1pct:,.0f}")
    account_columns = ("chain", "protocol", "health factor", "down to HF 1", "up to HF 1")
    accounts = _table("Lending positions", account_columns, account_columns[2:])
    for a in report.accounts:
        where = f"{a.protocol} {a.market_id[:10]}…" if a.market_id else a.protocol
        accounts.add_row(a.chain, where, _health(a.health_factor), f"{a.distance_down_pct:.1f}%",
                         f"{a.distance_up_pct:.1f}%")
    worst = sorted(report.scenarios, key=lambda s: s.min_health_factor)[:WORST_SCENARIOS_SHOWN]
    scenario_columns = ("scenario", "lowest HF", "P&L USD", "liquidation cost USD")
    scenarios = _table(f"Stress scenarios (worst {len(worst)} of {len(report.scenarios)})", scenario_columns,
                       scenario_columns[1:])
    for s in worst:
        scenarios.add_row(s.name, _health(s.min_health_factor), f"{s.pnl_usd:,.0f}", f"{s.liquidation_cost_usd:,.0f}")
    return Group(factors, accounts, scenarios)


def _health(value: float) -> str:
    return "∞" if value == float("inf") else f"{value:.4f}"
