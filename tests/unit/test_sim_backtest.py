"""The backtest: the demo portfolios through the 2020-03 and 2022-06 crashes and the 2021 rally (the extracts in
config/market/), under the policy, the baselines and unmanaged; the report's figures; a tighter delta band costs
more and tracks closer; liquidations at the bar's low; option trades kept in the book; the CLI's JSON, sweep and
report; portfolio files and price files with their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.errors import PolicyError, UserInputError
from agent.policy import Policy, load_policy
from agent.sim.backtest import FIXED, run_backtest, with_setting
from agent.sim.engine import Simulation
from agent.sim.keepers import HealthFactorKeeper, PeriodicKeeper, PolicyKeeper
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
    return int(figures["liquidations_by_venue"]["aave_v3"])


@pytest.mark.parametrize("prices", [CRASH_2020, CRASH_2022], ids=["2020-03-12", "2022-06-13"])
def test_the_looped_long_survives_a_crash_by_withdraw_swap_repay_and_is_liquidated_unmanaged(prices: Path) -> None:
    policy, portfolio = demo("leveraged-long")
    spec = load_portfolio(portfolio)
    assert not any(spec.wallet.values())  # no idle funds: the deleverage must sell collateral
    result = run_backtest(spec, load_prices(prices), policy).to_json()
    managed, unmanaged = result["policy"], result["unmanaged"]
    assert unmanaged["liquidations"] >= 1 and unmanaged["min_health_factor"] < 1
    assert managed["liquidations"] == 0 and managed["min_health_factor"] > 1
    assert {"withdraw", "swap", "repay"} <= set(managed["actions_by_kind"])
    assert unmanaged["actions"] == 0 and unmanaged["hedge_cost_usd"] == 0
    assert result["hf_only"]["liquidations"] == 0  # the health-factor automation saves it too


def test_delta_neutral_lp_survives_the_2021_rally_under_the_policy_with_delta_mostly_in_band() -> None:
    policy, portfolio = demo("delta-neutral-lp")
    path = load_prices(RALLY_2021, parse_date("2021-01-01", "from"), parse_date("2021-02-21", "to"))
    assert path.close[-1] / path.open[0] > 2.5  # ETH +170%
    result = run_backtest(load_portfolio(portfolio), path, policy).to_json()
    managed, unmanaged = result["policy"], result["unmanaged"]
    assert aave_liquidations(unmanaged) >= 1 and unmanaged["min_health_factor"] < 1
    assert unmanaged["liquidations_by_venue"]["perp"] == 1  # the short dies near +90% too
    assert managed["liquidations"] == 0 and set(managed["liquidations_by_venue"].values()) == {0}
    assert managed["min_health_factor"] > 1.4
    assert managed["time_in_band"]["delta_usd"] > 0.9
    assert unmanaged["time_in_band"]["delta_usd"] < 0.5
    assert managed["hedge_cost_usd"] > 0 and managed["actions"] > 0
    assert managed["hedge_cost_usd"] == pytest.approx(sum(managed["hedge_cost"].values()), abs=0.05)
    # the policy trades the perp it holds (its instruments list it): the hedge is not all spot
    assert managed["actions_by_kind"].get("perp", 0) >= 1


def test_a_tighter_delta_band_costs_more_and_tracks_the_target_closer() -> None:
    # Given: breaches alone trigger (no price-move or max-age re-hedges), on a fixed path
    policy, portfolio = demo("delta-neutral-lp")
    policy = policy.model_copy(update={"triggers": policy.triggers.model_copy(
        update={"price_move_pct": 100.0, "max_hedge_age_s": 10**9})})
    sim = Simulation(load_portfolio(portfolio), load_prices(CRASH_2022))
    costs, errors = [], []
    # When: the band tightens from ±12,000 to ±3,000 USD (the sweep's setter; tighter still, the LP's hourly
    # gamma between bars sets a floor the band cannot lower)
    for width in (12_000, 6_000, 3_000):
        variant = with_setting(policy, "bands.delta_usd", width)
        figures = summary(sim.run(PolicyKeeper(variant, f"±{width}")), variant)
        costs.append(figures["hedge_cost_usd"])
        errors.append(figures["tracking_error_usd"])
    # Then: each step costs more and tracks closer
    assert costs == sorted(costs) and len(set(costs)) == len(costs), costs
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors), errors


def bars(closes: list[float], lows: list[float] | None = None) -> PricePath:
    n = len(closes)
    unix = np.arange(n, dtype=np.int64) * 3600 + 1_600_000_000
    close = np.array(closes, dtype=np.float64)
    low = np.array(lows, dtype=np.float64) if lows is not None else close.copy()
    return PricePath("synthetic", unix, close.copy(), np.maximum(close, low), low, close.copy(), np.full(n, 1000.0))


def test_the_tracking_error_splits_into_the_delta_held_and_what_a_gamma_book_earns_within_the_bar() -> None:
    # A looped long is linear in its tokens: all of its error is the delta it held, nothing is left within the bar
    # but interest. The LP's gamma leaves an in-bar part that no hedge at the close removes.
    window = (parse_date("2021-01-01", "from"), parse_date("2021-01-10", "to"))
    policy, portfolio = demo("leveraged-long")
    linear = summary(Simulation(load_portfolio(portfolio), load_prices(RALLY_2021, *window)).run(None, "unmanaged"),
                     policy)
    parts = linear["tracking_error_parts_usd"]
    assert parts["in_bar"] < 0.01 * parts["delta"]
    assert parts["delta"] == pytest.approx(linear["tracking_error_usd"], rel=0.01)
    policy, portfolio = demo("delta-neutral-lp")
    path = load_prices(CRASH_2022, parse_date("2022-06-11", "from"), parse_date("2022-06-14", "to"))
    hedged = summary(Simulation(load_portfolio(portfolio), path).run(PolicyKeeper(policy)), policy)
    parts = hedged["tracking_error_parts_usd"]
    assert parts["in_bar"] > 0.3 * hedged["tracking_error_usd"]


def test_the_lst_loop_is_priced_at_its_modelled_ratio_and_its_stress_band_keeps_it_alive_through_a_depeg() -> None:
    # 2022-06-11..14: the crash's stress bars deepen WSTETH's modelled discount to WETH; at health factor 1.08 in
    # e-mode the unmanaged loop is liquidated, the policy's stress band deleverages it ahead of the depeg.
    policy, portfolio = demo("lst-loop")
    spec = load_portfolio(portfolio)
    path = load_prices(CRASH_2022, parse_date("2022-06-11", "from"), parse_date("2022-06-14", "to"))
    sim = Simulation(spec, path)
    ratio = sim.market.lst_ratio
    assert ratio is not None and ratio[0] == pytest.approx(1.15, rel=1e-4) and ratio.min() < 1.15 * 0.95
    unmanaged = summary(sim.run(None, "unmanaged"), policy)
    managed = summary(sim.run(PolicyKeeper(policy)), policy)
    assert aave_liquidations(unmanaged) >= 1 and unmanaged["min_health_factor"] < 1.0
    assert managed["liquidations"] == 0 and managed["min_health_factor"] > 1.0
    assert {"withdraw", "swap", "repay"} <= set(managed["actions_by_kind"])


def test_a_wick_through_the_liquidation_price_liquidates_at_the_low_although_every_close_is_safe() -> None:
    spec = parse_portfolio("""
version: 1
name: long
aave: {supply: {WETH: {usd: 200000}}, borrow: {USDC: {usd: 97000}}}
""")
    # HF 1.70 crosses 1 at −41%: a wick to −45% liquidates, one to −35% does not
    doomed = Simulation(spec, bars([2000.0] * 6, [2000, 2000, 2000, 1100, 2000, 2000])).run(None, "wick")
    assert len(doomed.liquidations) == 1 and doomed.liquidations[0].price_usd == 1100.0
    assert doomed.liquidations[0].loss_usd > 0  # the bonus
    assert np.min(doomed.health_factor_bar_min) < 1 <= float(np.min(doomed.health_factor))
    safe = Simulation(spec, bars([2000.0] * 6, [2000, 2000, 2000, 1300, 2000, 2000])).run(None, "wick")
    assert safe.liquidations == []


def test_options_settle_at_expiry_and_perps_pay_the_funding_their_skew_sets() -> None:
    spec = parse_portfolio("""
version: 1
name: hedged
wallet: {USDC: {usd: 1000}}
perps: [{side: long, size: {tokens: 10}, margin_usd: 5000}]
options: [{kind: put, side: long, strike: 1.1, expiry_days: 0.1, quantity: {tokens: 2}}]
""")
    path = bars([2000.0, 2000.0, 2100.0, 2200.0, 2200.0, 2200.0])
    sim = Simulation(spec, path)
    funding = sim.market.funding_per_hour
    assert funding[0] == 0 and (funding[2:] > 0).all()  # a rally: longs crowd in and pay
    run = sim.run(None, "x")
    paid = sum(10 * float(c) * float(f) for c, f in zip(path.close, funding, strict=True))
    # the put (strike 2,200, expiring 2.4 h in) settles 2 × 100 USD into the wallet at the 2,100 close after its
    # expiry; the perp gains 10 × 200 less its funding
    assert run.value_usd[-1] == pytest.approx(1000 + 200 + 5000 + 10 * 200 - paid, abs=1.0)


def test_option_trades_stay_in_the_simulated_book_and_their_premium_and_theta_are_reported() -> None:
    # Given: the protected long, whose policy keeps its gamma in a band with puts bought from idle USDC
    policy, portfolio = demo("protected-long")
    band = policy.bands.gamma_usd_1pct
    assert band is not None
    path = load_prices(CRASH_2022, parse_date("2022-06-06", "from"), parse_date("2022-06-20", "to"))
    run = Simulation(load_portfolio(portfolio), path).run(PolicyKeeper(policy))
    figures = summary(run, policy)
    buys = [i for i, a in enumerate(run.actions) if a.kind == "option_buy"]
    assert buys, figures["actions_by_kind"]
    # Then: after each purchase the book holds the options (its gamma is back in the band at that bar's close),
    # rather than dropping them and buying again the next bar
    for index in buys:
        bar = int(np.searchsorted(run.unix + 3600, run.actions[index].unix))
        assert run.gamma_usd_1pct[bar] >= band.min, (bar, run.gamma_usd_1pct[bar])
    assert figures["time_in_band"]["gamma_usd_1pct"] > 0.9
    assert figures["options"]["premium_paid_usd"] > 0 and figures["options"]["theta_usd"] > 0
    assert figures["hedge_cost"]["option_theta_usd"] == figures["options"]["theta_usd"]
    assert figures["hedge_cost"]["fees_usd"] > 0  # the venue's fee on each purchase
    assert figures["liquidations"] == 0


def test_a_shallow_pool_makes_the_realised_cost_exceed_the_prediction_and_the_error_is_reported() -> None:
    # Given: a 2M USD long deleveraged through a pool whose depth sits in a ±0.2% range (400k USD) over a thin
    # full range (5M USD), re-centred every hour, with a policy tolerant enough to let the swaps fill
    policy, _ = demo("leveraged-long")
    policy = policy.model_copy(update={"hedging": policy.hedging.model_copy(update={"max_slippage_bps": 500})})
    text = """
version: 1
name: big-long
aave: {supply: {WETH: {usd: 2000000}}, borrow: {USDC: {usd: 970000}}}
market: {pool: {recentre_hours: 1, ranges: %s}}
"""
    path = bars([2000.0, 2000.0, 1900.0, 1700.0, 1700.0, 1700.0])
    shallow = summary(Simulation(parse_portfolio(text % "[{range: full, usd: 5000000}, {range: [0.998, 1.002], "
                                                         "usd: 400000}]"), path).run(PolicyKeeper(policy)), policy)
    deep = summary(Simulation(parse_portfolio(text % "[{range: full, usd: 200000000}]"), path).run(
        PolicyKeeper(policy)), policy)
    # Then: the first swap leaves the narrow range the quotes saw, and costs more than the planner predicted
    first = next(a for a in shallow["cost_prediction"]["per_action"] if a["kind"] == "swap")
    assert first["realised_usd"] > 1.5 * first["predicted_usd"]
    swaps = shallow["cost_prediction"]["by_kind"]["swap"]
    assert swaps["realised_usd"] > swaps["predicted_usd"]
    assert shallow["cost_prediction"]["error_usd"] > 0 and shallow["cost_prediction"]["error_pct"] > 10
    # a swap whose fill fell below its minimum reverted on chain: recorded, its gas paid, the plan stopped
    assert shallow["reverted_actions"] >= 1
    # and in the deep pool the prediction holds within 1%
    assert abs(deep["cost_prediction"]["error_pct"]) < 1
    assert shallow["liquidations"] == deep["liquidations"] == 0
    # Through a Safe the plan is one recipe: the swap that falls short reverts all of it (nothing before it in that
    # bar is recorded as done)
    from agent.policy.portfolio import SafeModuleExecutor

    safe = policy.model_copy(update={"portfolio": policy.portfolio.model_copy(update={
        "executor": SafeModuleExecutor(kind="safe_module", module="0x" + "11" * 20)})})
    run = Simulation(parse_portfolio(text % "[{range: full, usd: 5000000}, {range: [0.998, 1.002], usd: 400000}]"),
                     path).run(PolicyKeeper(safe))
    reverted = [a for a in run.actions if a.reverted]
    assert reverted
    for failed in reverted:
        assert [a for a in run.actions if a.unix == failed.unix] == [failed]


def test_the_baselines_do_what_their_names_say() -> None:
    policy, portfolio = demo("delta-neutral-lp")
    spec = load_portfolio(portfolio)
    path = load_prices(RALLY_2021, parse_date("2021-01-01", "from"), parse_date("2021-01-20", "to"))
    sim = Simulation(spec, path)
    hf_only = sim.run(HealthFactorKeeper(policy))
    kinds = {a.kind for a in hf_only.actions}
    # only the health factor's moves: no perp trade, and delta left to drift (the policy keeps it in its band)
    assert hf_only.actions and kinds <= {"repay", "withdraw", "swap", "remove_liquidity", "borrow", "supply"}
    managed = sim.run(PolicyKeeper(policy))
    assert summary(hf_only, policy)["time_in_band"]["delta_usd"] < summary(managed, policy)["time_in_band"][
        "delta_usd"] - 0.2
    # the periodic hedger looks once a day (again the next bar when the guard refused it), hedges delta only,
    # and so loses the perp short the policy keeps alive with margin
    periodic = sim.run(PeriodicKeeper(policy, 0.0, every_hours=24.0, move_pct=1000.0))
    days = (int(path.unix[-1]) - int(path.unix[0])) // 86_400
    assert days <= periodic.plans <= days + len(periodic.refusals)
    assert periodic.actions and all(a.reason.startswith("periodic") for a in periodic.actions)
    assert [x.venue for x in periodic.liquidations] == ["perp"] and managed.liquidations == []


def test_the_market_moves_rates_gas_and_funding_and_says_where_each_comes_from(tmp_path: Path) -> None:
    _policy, portfolio = demo("leveraged-long")
    spec = load_portfolio(portfolio)
    path = load_prices(CRASH_2020, parse_date("2020-03-10", "from"), parse_date("2020-03-14", "to"))
    market = Simulation(spec, path).market
    crash = int(np.argmax(path.high / path.low))
    calm = 0
    assert market.utilisation["USDC"][crash] > market.utilisation["USDC"][calm]
    assert market.borrow_apr["USDC"][crash] > 2 * market.borrow_apr["USDC"][calm]  # past the kink
    assert market.gas_gwei[crash] > 3 * market.gas_gwei[calm]
    assert all(v.startswith("model") for k, v in market.sources.items() if k not in ("prices",))
    gas = tmp_path / "gas.csv"
    gas.write_text("unix,gwei\n0,42\n")
    vol = tmp_path / "dvol.csv"
    vol.write_text("date,dvol\n2020-03-09,80\n2020-03-12,150\n")
    result = CliRunner().invoke(app, [
        "backtest", "--policy", str(ROOT / "config" / "backtest" / "policy.leveraged-long.yaml"), "--portfolio",
        str(portfolio), "--prices", str(CRASH_2020), "--from", "2020-03-10", "--to", "2020-03-11", "--json",
        "--gas", str(gas), "--implied-vol", str(vol)])
    assert result.exit_code == 0, result.output
    sources = json.loads(result.output)["market"]
    assert sources["gas"] == f"data: {gas}" and sources["implied_vol"].startswith("data (proxy): BTC DVOL")
    assert sources["aave_rates"].startswith("model") and sources["funding"].startswith("model")


def test_the_cli_prints_every_fixed_run_in_json_and_writes_the_report_with_the_sweep_frontier(tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = CliRunner().invoke(app, [
        "backtest", "--policy", str(ROOT / "config" / "backtest" / "policy.delta-neutral-lp.yaml"), "--portfolio",
        str(ROOT / "config" / "portfolio.delta-neutral-lp.yaml"), "--prices", str(CRASH_2022),
        "--from", "2022-06-11", "--to", "2022-06-14", "--json", "--sweep", "bands.delta_usd=3000,12000",
        "--alt-policy", str(ROOT / "config" / "backtest" / "policy.leveraged-long.yaml"), "--report", str(report)])
    assert result.exit_code == 0, result.output
    output = json.loads(result.output)
    assert output["window"] == {"from": "2022-06-11T00:00:00Z", "to": "2022-06-14T23:00:00Z", "bars": 96,
                                "first_close_usd": output["window"]["first_close_usd"],
                                "last_close_usd": output["window"]["last_close_usd"]}
    assert set(output["sweep"]) == {"bands.delta_usd=3000", "bands.delta_usd=12000"}
    assert set(output["alternatives"]) == {"policy.leveraged-long"}
    comparison = output["comparison"]
    assert comparison["cost_vs_periodic"] == pytest.approx(
        output["policy"]["hedge_cost_usd"] / output["periodic"]["hedge_cost_usd"], abs=1e-3)
    assert comparison["delta_tracking_error_vs_periodic"] == pytest.approx(
        output["policy"]["tracking_error_parts_usd"]["delta"] / output["periodic"]["tracking_error_parts_usd"]["delta"],
        abs=1e-3)
    assert comparison["liquidations"] == {"policy": output["policy"]["liquidations"],
                                          "hf_only": output["hf_only"]["liquidations"]}
    for run in (*(output[name] for name in FIXED), *output["sweep"].values()):
        assert {"liquidations", "liquidations_by_venue", "min_health_factor", "pnl_usd", "max_drawdown_usd",
                "hedge_cost_usd", "hedge_cost", "turnover_usd", "tracking_error_usd", "time_in_band", "actions",
                "sharpe_daily", "cost_prediction"} <= set(run)
        assert set(run["liquidations_by_venue"]) == {"aave_v3", "perp", "options"}
        assert {"fees_usd", "slippage_usd", "gas_usd", "flash_premium_usd", "option_theta_usd"} == set(
            run["hedge_cost"])
    assert {p.name for p in report.iterdir()} == {"index.html", "price.png", "health_factor.png", "delta.png",
                                                  "cost.png", "value.png", "prediction.png", "frontier.png"}
    page = (report / "index.html").read_text()
    assert "frontier.png" in page and "cost_prediction.realised_usd" in page and "aave_rates" in page


def test_a_bad_sweep_is_refused_with_one_line() -> None:
    for sweep, problem in (("bands.delta_usd", "expected FIELD=V1,V2"), ("triggers.nope=1", "not a number"),
                           ("bands.delta_usd=-5", "positive half-width")):
        result = CliRunner().invoke(app, [
            "backtest", "--policy", str(ROOT / "config" / "backtest" / "policy.leveraged-long.yaml"), "--portfolio",
            str(ROOT / "config" / "portfolio.leveraged-long.yaml"), "--prices", str(CRASH_2020), "--to",
            "2020-03-06", "--sweep", sweep])
        assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output, sweep


def test_the_cli_shows_a_table() -> None:
    _policy, portfolio = demo("leveraged-long")
    result = CliRunner().invoke(app, [
        "backtest", "--policy", str(ROOT / "config" / "backtest" / "policy.leveraged-long.yaml"), "--portfolio",
        str(portfolio), "--prices", str(CRASH_2022), "--to", "2022-06-10"])
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in FIXED) and "prediction error" in result.output


def test_a_bad_portfolio_file_is_refused_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "portfolio.yaml"
    bad.write_text("version: 1\nname: x\naave:\n  supply:\n    WETH: {usd: 1, tokens: 2}\n  lend: {}\n")
    with pytest.raises(PolicyError) as caught:
        load_portfolio(bad)
    assert caught.value.lines() == [
        f"{bad}:5: aave.supply.WETH: expected exactly one of tokens or usd",
        f"{bad}:6: aave.lend: unknown field; expected one of supply, borrow, emode",
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
    gas = spec.market.gas.model_copy(update={"base_gwei": 200.0})
    spec = spec.model_copy(update={"market": spec.market.model_copy(update={"gas": gas})})
    result = run_backtest(spec, load_prices(CRASH_2020), safe)
    managed = result.runs["policy"]

    loans = [a for a in managed.actions if a.kind == "flash_loan"]
    assert not managed.liquidations and loans, [a.kind for a in managed.actions]
    for loan in loans:  # the premium (5 bps of the loan) is the loan's cost; its gas is counted once
        assert loan.premium_usd == pytest.approx(loan.notional_usd * 5e-4, rel=1e-3, abs=0.01) and loan.gas_usd > 0
        assert loan.fee_usd == 0
    assert all(a.gas_usd == 0 and a.cost_usd == 0 for a in managed.actions if a.kind == "flash_repay")
    figures = result.figures()["policy"]
    assert figures["hedge_cost"]["flash_premium_usd"] == pytest.approx(sum(a.premium_usd for a in loans), abs=0.01)
    assert figures["hedge_cost"]["flash_premium_usd"] > 0
