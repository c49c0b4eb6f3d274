"""The backtest: the demo portfolios through the 2020-03 and 2022-06 crashes and the 2021 rally (the extracts in
config/market/), managed by their demo policies and unmanaged; the report's figures; a tighter delta band costs
more and tracks closer; liquidations at the bar's low; portfolio files and price files with their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.errors import PolicyError, UserInputError
from agent.policy import Policy, load_policy
from agent.sim.backtest import run_backtest, with_delta_band
from agent.sim.engine import Simulation
from agent.sim.market import PricePath, load_prices, parse_date
from agent.sim.portfolio import load_portfolio, parse_portfolio
from agent.sim.report import summary

ROOT = Path(__file__).resolve().parents[2]
MARKET = ROOT / "config" / "market"
CRASH_2020 = MARKET / "eth_usd_1h.2020-03-crash.csv"
CRASH_2022 = MARKET / "eth_usd_1h.2022-06-crash.csv"
RALLY_2021 = MARKET / "eth_usd_1h.2021-01-rally.csv"


def demo(name: str) -> tuple[Policy, Path]:
    return load_policy(ROOT / "config" / "backtest" / f"policy.{name}.yaml"), ROOT / "config" / f"portfolio.{name}.yaml"


def aave_liquidations(figures: dict) -> int:
    return int(figures["liquidations_by_venue"].get("aave_v3", 0))


@pytest.mark.parametrize("prices", [CRASH_2020, CRASH_2022], ids=["2020-03-12", "2022-06-13"])
def test_leveraged_long_survives_a_crash_managed_and_is_liquidated_unmanaged(prices: Path) -> None:
    policy, portfolio = demo("leveraged-long")
    result = run_backtest(load_portfolio(portfolio), load_prices(prices), policy).to_json()
    managed, unmanaged = result["managed"], result["unmanaged"]
    assert unmanaged["liquidations"] >= 1 and unmanaged["min_health_factor"] < 1
    assert managed["liquidations"] == 0 and managed["min_health_factor"] > 1
    assert managed["actions"] >= 1 and managed["plans"] >= 1
    assert unmanaged["actions"] == 0 and unmanaged["hedge_cost_usd"] == 0


def test_delta_neutral_lp_survives_the_2021_rally_managed_with_delta_mostly_in_band() -> None:
    policy, portfolio = demo("delta-neutral-lp")
    path = load_prices(RALLY_2021, parse_date("2021-01-01", "from"), parse_date("2021-02-21", "to"))
    assert path.close[-1] / path.open[0] > 2.5  # ETH +170%
    result = run_backtest(load_portfolio(portfolio), path, policy).to_json()
    managed, unmanaged = result["managed"], result["unmanaged"]
    assert aave_liquidations(unmanaged) >= 1 and unmanaged["min_health_factor"] < 1
    # Unmanaged, the perp short is liquidated near +90% too; managed, it gets margin each time its liquidation
    # price comes within 25% of spot, and nothing is liquidated.
    assert unmanaged["liquidations_by_venue"].get("perp", 0) == 1
    assert managed["liquidations"] == 0 and managed["liquidations_by_venue"] == {}
    assert managed["actions_by_kind"].get("perp_deposit", 0) >= 1
    assert managed["min_health_factor"] > 1.5
    assert managed["time_in_band"]["delta_usd"] > 0.9
    assert unmanaged["time_in_band"]["delta_usd"] < 0.5
    assert managed["hedge_cost_usd"] > 0 and managed["actions"] > 0
    assert managed["hedge_cost_usd"] == pytest.approx(sum(managed["hedge_cost"].values()), abs=0.05)


def test_a_tighter_delta_band_costs_more_and_tracks_the_target_closer() -> None:
    # Given: breaches alone trigger (no price-move or max-age re-hedges), on a fixed path
    policy, portfolio = demo("delta-neutral-lp")
    policy = policy.model_copy(update={"triggers": policy.triggers.model_copy(
        update={"price_move_pct": 100.0, "max_hedge_age_s": 10**9})})
    sim = Simulation(load_portfolio(portfolio), load_prices(CRASH_2022))
    costs, errors = [], []
    # When: the band tightens from ±12,000 to ±1,500 USD
    for width in (12_000, 6_000, 3_000, 1_500):
        variant = with_delta_band(policy, width)
        figures = summary(sim.run(variant, f"±{width}"), variant)
        costs.append(figures["hedge_cost_usd"])
        errors.append(figures["tracking_error_usd"])
    # Then: each step costs more and tracks closer
    assert costs == sorted(costs) and len(set(costs)) == len(costs), costs
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors), errors


def flat_path_with_a_wick(low: float) -> PricePath:
    n = 6
    unix = np.arange(n, dtype=np.int64) * 3600 + 1_600_000_000
    close = np.full(n, 2000.0)
    lows = close.copy()
    lows[3] = low
    return PricePath("synthetic", unix, close.copy(), close.copy(), lows, close.copy(), np.full(n, 1000.0))


def test_a_wick_through_the_liquidation_price_liquidates_at_the_low_although_every_close_is_safe() -> None:
    spec = parse_portfolio("""
version: 1
name: long
aave: {supply: {WETH: {usd: 200000}}, borrow: {USDC: {usd: 97000}}}
""")
    # HF 1.70 crosses 1 at −41%: a wick to −45% liquidates, one to −35% does not
    doomed = Simulation(spec, flat_path_with_a_wick(1100.0)).run(None, "wick")
    assert len(doomed.liquidations) == 1 and doomed.liquidations[0].price_usd == 1100.0
    assert doomed.liquidations[0].loss_usd > 0  # the bonus
    assert np.min(doomed.health_factor_bar_min) < 1 <= float(np.min(doomed.health_factor))
    safe = Simulation(spec, flat_path_with_a_wick(1300.0)).run(None, "wick")
    assert safe.liquidations == []


def test_options_are_marked_with_the_vol_path_and_settle_at_expiry_and_perps_pay_funding() -> None:
    spec = parse_portfolio("""
version: 1
name: hedged
wallet: {USDC: {usd: 1000}}
perps: [{side: long, size: {tokens: 10}, margin_usd: 5000, funding_rate_per_hour: 0.0001}]
options: [{kind: put, side: long, strike: 1.1, expiry_days: 0.1, quantity: {tokens: 2}}]
""")
    run = Simulation(spec, flat_path_with_a_wick(1900.0)).run(None, "x")
    # the put (strike 2,200) settles 2 × 200 USD into the wallet; the perp paid 10 × 2,000 × 0.0001 per hour
    assert run.value_usd[-1] == pytest.approx(1000 + 400 + 5000 - 6 * 10 * 2000 * 0.0001, abs=1.0)


def test_the_cli_prints_one_json_object_and_writes_the_report(tmp_path: Path) -> None:
    _policy, portfolio = demo("leveraged-long")
    report = tmp_path / "report"
    result = CliRunner().invoke(app, [
        "backtest", "--policy", str(ROOT / "config" / "backtest" / "policy.leveraged-long.yaml"), "--portfolio",
        str(portfolio), "--prices", str(CRASH_2020), "--from", "2020-03-11", "--to", "2020-03-13", "--json",
        "--alt-policy", str(ROOT / "config" / "backtest" / "policy.delta-neutral-lp.yaml"), "--report", str(report)])
    assert result.exit_code == 0, result.output
    output = json.loads(result.output)
    assert output["window"] == {"from": "2020-03-11T00:00:00Z", "to": "2020-03-13T23:00:00Z", "bars": 72,
                                "first_close_usd": output["window"]["first_close_usd"],
                                "last_close_usd": output["window"]["last_close_usd"]}
    for run in (output["managed"], output["unmanaged"], output["alternatives"]["policy.delta-neutral-lp"]):
        assert {"liquidations", "min_health_factor", "hedge_cost_usd", "actions", "time_in_band", "turnover_usd",
                "pnl_usd", "tracking_error_usd"} <= set(run)
    assert {p.name for p in report.iterdir()} == {"index.html", "price.png", "health_factor.png", "delta.png",
                                                  "cost.png"}
    assert "health_factor.png" in (report / "index.html").read_text()


def test_the_cli_shows_a_table(tmp_path: Path) -> None:
    _policy, portfolio = demo("leveraged-long")
    result = CliRunner().invoke(app, [
        "backtest", "--policy", str(ROOT / "config" / "backtest" / "policy.leveraged-long.yaml"), "--portfolio",
        str(portfolio), "--prices", str(CRASH_2022), "--to", "2022-06-10"])
    assert result.exit_code == 0, result.output
    assert "managed" in result.output and "unmanaged" in result.output and "liquidations" in result.output


def test_a_bad_portfolio_file_is_refused_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "portfolio.yaml"
    bad.write_text("version: 1\nname: x\naave:\n  supply:\n    WETH: {usd: 1, tokens: 2}\n  lend: {}\n")
    with pytest.raises(PolicyError) as caught:
        load_portfolio(bad)
    assert caught.value.lines() == [
        f"{bad}:5: aave.supply.WETH: expected exactly one of tokens or usd",
        f"{bad}:6: aave.lend: unknown field; expected one of supply, borrow",
    ]
    result = CliRunner().invoke(app, ["backtest", "--policy", str(ROOT / "config" / "backtest" /
                                                                  "policy.leveraged-long.yaml"),
                                      "--portfolio", str(bad), "--prices", str(CRASH_2020)])
    assert result.exit_code == 2 and f"{bad}:5:" in result.output


def test_a_price_file_without_bars_in_the_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="fewer than two hourly bars"):
        load_prices(CRASH_2020, parse_date("2019-01-01", "from"), parse_date("2019-01-02", "to"))
    broken = tmp_path / "prices.csv"
    broken.write_text("time,unix,open,high,low,close,volume\nx,1,2,3,1,2,oops\n")
    with pytest.raises(UserInputError, match=f"{broken}:2: expected numbers"):
        load_prices(broken)
    with pytest.raises(UserInputError, match="expected a date"):
        parse_date("yesterday", "--from")


def test_leveraged_long_in_a_safe_survives_2020_03_with_flash_loans_and_pays_their_premium() -> None:
    from agent.policy.portfolio import SafeModuleExecutor

    policy, portfolio = demo("leveraged-long")
    safe = policy.model_copy(update={"portfolio": policy.portfolio.model_copy(update={
        "executor": SafeModuleExecutor(kind="safe_module", module="0x" + "11" * 20)})})
    spec = load_portfolio(portfolio)
    # Gas as on 2020-03-12, when mainnet gas peaked near 200 gwei: the rounds' extra calls cost more than a premium.
    spec = spec.model_copy(update={"market": spec.market.model_copy(update={"gas_price_gwei": 200.0})})
    result = run_backtest(spec, load_prices(CRASH_2020), safe)
    managed = result.runs["managed"]

    loans = [a for a in managed.actions if a.kind == "flash_loan"]
    assert not managed.liquidations and loans, [a.kind for a in managed.actions]
    for loan in loans:  # the premium (5 bps of the loan) is the loan's fee; its gas is counted once
        assert loan.fee_usd == pytest.approx(loan.notional_usd * 5e-4, rel=1e-3, abs=0.01) and loan.gas_usd > 0
    assert all(a.gas_usd == 0 and a.fee_usd == 0 for a in managed.actions if a.kind == "flash_repay")
