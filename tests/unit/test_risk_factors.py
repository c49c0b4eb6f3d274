"""Every asset a risk factor: per-factor delta and gamma, the beta-weighted delta, joint stress scenarios with
liquidation costs, the joint liquidation boundary, and the policy forms of factor bands and scenarios."""

from __future__ import annotations

import dataclasses
import math

import pytest

from agent.errors import PolicyError
from agent.model import AaveAccount, AaveReserve, EModeCategory, OptionPosition, OptionSeries, Scenario, Token
from agent.planner.bands import band_readings
from agent.policy import load_policy
from agent.risk import lending
from agent.risk.portfolio import risk_report
from agent.risk.scenarios import account_stress, default_scenarios, joint_liquidation_prices_1e8
from agent.risk.volatility import factor_vols, survival_health_factor
from tests.unit.policy_support import local_policy, local_policy_text

WETH = Token("WETH", "0x" + "11" * 20, 18)
WBTC = Token("WBTC", "0x" + "22" * 20, 8)
USDC = Token("USDC", "0x" + "33" * 20, 6)
WSTETH = Token("WSTETH", "0x" + "44" * 20, 18)
PRICES = {"WETH": 2000.0, "WBTC": 60000.0, "USDC": 1.0, "WSTETH": 2000.0}
NOW = 1_700_000_000
EMODE = EModeCategory(1, 9300, 9500, 10100)


def _two_collateral() -> AaveAccount:
    """10 WETH and 1 WBTC against 50,000 USDC: HF = (20,000·0.825 + 60,000·0.75) / 50,000 ≈ 1.23."""
    return AaveAccount("l", "0x1", (
        AaveReserve(WETH, 10 * 10**18, 0, 2000 * 10**8, 8000, 8250, 10500, True),
        AaveReserve(WBTC, 1 * 10**8, 0, 60000 * 10**8, 7000, 7500, 10650, True),
        AaveReserve(USDC, 0, 50_000 * 10**6, 10**8, 7500, 7800, 10450, False),
    ))


def _lst_loop(hf_target: float = 1.07) -> AaveAccount:
    """100 WSTETH in e-mode against WETH debt at `hf_target` (LT 95%), both priced at 2,000."""
    debt = int(100 * 0.95 / hf_target * 10**18)
    return AaveAccount("l", "0x1", (
        AaveReserve(WSTETH, 100 * 10**18, 0, 2000 * 10**8, 6900, 7900, 10700, True, emode_category=1),
        AaveReserve(WETH, 0, debt, 2000 * 10**8, 8000, 8250, 10500, False, emode_category=1),
    ), EMODE)


def test_each_asset_is_a_factor_with_its_own_delta():
    report = risk_report([_two_collateral()], "WETH", PRICES, NOW, betas={"WETH": 1.0, "WBTC": 0.5})

    deltas = {f.symbol: f.delta_usd for f in report.factors}
    assert deltas == pytest.approx({"WETH": 20_000.0, "WBTC": 60_000.0, "USDC": -50_000.0})
    assert all(abs(f.gamma_usd_1pct) < 1e-6 for f in report.factors)
    # The old view: only the underlying moves.
    assert report.total.delta_usd == pytest.approx(20_000.0)
    assert report.beta_delta_usd == pytest.approx(20_000.0 + 0.5 * 60_000.0)


def test_lst_loop_is_nearly_delta_neutral_once_its_lst_has_beta_one():
    loop = _lst_loop()
    plain = risk_report([loop], "WETH", PRICES, NOW)
    weighted = risk_report([loop], "WETH", PRICES, NOW, betas={"WETH": 1.0, "WSTETH": 1.0})

    equity = 100 * 2000 - loop.reserves[1].variable_debt_base_units / 1e18 * 2000
    assert plain.total.delta_usd == pytest.approx(-(200_000 - equity))  # the misleading single-factor view
    assert weighted.beta_delta_usd == pytest.approx(equity)


def test_underlying_factor_matches_the_closed_form_greeks_of_options():
    put = OptionPosition("local", "WETH", False, 1800.0, NOW + 30 * 86_400, 20.0, 0.7)
    report = risk_report([put], "WETH", PRICES, NOW)
    weth = report.factor("WETH")

    assert weth is not None
    assert weth.delta_usd == pytest.approx(report.total.delta_usd, rel=1e-5)
    assert weth.gamma_usd_1pct == pytest.approx(report.total.gamma_usd_1pct, rel=1e-4)


def test_default_scenarios_depeg_stables_and_lsts_and_move_lsts_with_their_peg():
    scenarios = {s.name: s for s in default_scenarios(["WETH", "WSTETH", "USDC", "WBTC"], stablecoins=["USDC"],
                                                       lsts={"WSTETH": "WETH"}, decoupled=[("WETH", "WBTC")])}

    assert dict(scenarios["WETH -40%"].shocks) == {"WETH": -0.40, "WSTETH": -0.40}
    assert dict(scenarios["USDC depeg -10%"].shocks) == {"USDC": -0.10}
    assert dict(scenarios["WSTETH depeg -8% vs WETH"].shocks) == {"WSTETH": -0.08}
    assert dict(scenarios["WETH/WBTC decoupling: WETH -20%, WBTC +10%"].shocks) == {"WETH": -0.2, "WBTC": 0.1}
    assert "WSTETH +10%" not in scenarios and "USDC +10%" not in scenarios


def test_lst_loop_dies_in_a_depeg_not_in_a_crash():
    loop = _lst_loop()
    crash = account_stress(loop, {"WETH": -0.40, "WSTETH": -0.40})
    depeg = account_stress(loop, {"WSTETH": -0.08})

    assert crash.health_factor == pytest.approx(lending.health_factor_float(lending.health_factor_wad(loop)),
                                                rel=1e-6)
    assert crash.liquidation_cost_usd == 0
    assert depeg.health_factor < 0.995
    # One liquidation repays 50% of the WETH debt (HF above 0.95) and pays the e-mode bonus of 1% on it.
    owed = loop.reserves[1].variable_debt_base_units / 1e18 * 2000
    assert depeg.liquidated_debt_usd == pytest.approx(owed / 2, rel=1e-6)
    assert depeg.liquidation_cost_usd == pytest.approx(owed / 2 * 0.01, rel=1e-3)


def test_scenarios_in_the_report_carry_pnl_and_health():
    scenario = Scenario("ETH -40%, stETH depeg 8%", (("WETH", -0.40), ("WSTETH", -0.45)))
    report = risk_report([_lst_loop()], "WETH", PRICES, NOW, scenarios=[scenario])

    (result,) = report.scenarios
    debt_eth = _lst_loop().reserves[1].variable_debt_base_units / 1e18
    assert result.pnl_usd == pytest.approx(-100 * 2000 * 0.45 + debt_eth * 2000 * 0.40)
    assert report.worst_scenario is result and result.min_health_factor < 1


@pytest.mark.parametrize("shocks", [{"WETH": -0.40, "WBTC": -0.30}, {"WETH": -0.1, "WBTC": -0.5}, {"WBTC": -1.0}])
def test_joint_liquidation_boundary_is_healthy_and_one_unit_past_it_is_not(shocks: dict[str, float]):
    account = _two_collateral()
    edge = joint_liquidation_prices_1e8(account, shocks)

    assert edge is not None
    past = {s: p - 1 for s, p in edge.items()}
    assert lending.health_factor_wad(lending.with_prices(account, edge)) >= 10**18
    assert lending.health_factor_wad(lending.with_prices(account, past)) < 10**18


def test_policy_takes_factor_bands_flat_bands_scenarios_and_a_stress_band():
    policy = local_policy("p", """\
bands:
  delta_usd: {WETH: {min: -5000, max: 5000}, total: {min: -8000, max: 8000}}
  stress_health_factor: {min: 1.0}
risk:
  betas: {WBTC: 0.8}
  scenarios:
    - {name: "ETH -40%, stETH depeg 8%", shocks: {WETH: -0.40, WSTETH: -0.45}, vols: {WETH: 0.5}}
""")

    assert set(policy.bands.delta_bands()) == {"WETH", "total"}
    assert policy.bands.stress_health_factor is not None and policy.bands.stress_health_factor.target_value == 1.05
    assert policy.risk.betas_for("WETH", ("WETH", "WBTC", "WSTETH", "USDC")) == {
        "WETH": 1.0, "WBTC": 0.8, "WSTETH": 1.0, "USDC": 0.0}
    assert policy.risk.scenarios[0].scenario().vol_shocks == (("WETH", 0.5),)


def test_factor_bands_and_scenarios_report_problems_on_their_own_lines(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(local_policy_text("p", """\
bands:
  delta_usd:
    WETH: {min: 5000, max: -5000}
  stress_health_factor: {min: 1.0, target: 0.9}
risk:
  scenarios:
    - {name: a, shocks: {WETH: -1.5}}
"""))
    with pytest.raises(PolicyError) as raised:
        load_policy(path, env={})

    assert [line.removeprefix(str(path)) for line in raised.value.lines()] == [
        ":15: bands.delta_usd.WETH.max: expected a value above min (5000) (got -5000)",
        ":16: bands.stress_health_factor.target: expected a value above min (1) (got 0.9)",
        ":19: risk.scenarios[0].shocks.WETH: expected a relative move above -1 (-0.4 is a 40% fall; -1 would take"
        " the price to zero) (got -1.5)",
    ]


def test_survival_health_factor_follows_the_formula_for_a_long_and_for_an_lst_loop():
    long = AaveAccount("l", "0x1", (
        AaveReserve(WETH, 10 * 10**18, 0, 2000 * 10**8, 8000, 8250, 10500, True),
        AaveReserve(USDC, 0, 10_000 * 10**6, 10**8, 7500, 7800, 10450, False),
    ))
    hour, day = 3600.0, 86_400.0

    # WETH collateral against USDC debt: σ_HF is WETH's own vol
    assert survival_health_factor(long, {"WETH": 0.8}, 3.0, hour, {}) == pytest.approx(
        math.exp(3 * 0.8 * math.sqrt(hour / (365 * 86_400))))
    # The loop is flat in ETH: only the spread's vol counts, not ETH's
    loop = _lst_loop()
    assert survival_health_factor(loop, {"WETH": 0.8, "WSTETH": 0.3}, 3.0, day, {"WSTETH": "WETH"}) == pytest.approx(
        math.exp(3 * 0.3 * math.sqrt(day / (365 * 86_400))))
    assert survival_health_factor(loop, {"WETH": 0.8}, 3.0, day, {"WSTETH": "WETH"}) == pytest.approx(1.0)


def test_implied_vol_of_the_nearest_to_the_money_series_replaces_the_realised_one():
    def series(strike: float, vol: float, underlying: str = "WETH") -> OptionSeries:
        return OptionSeries("l", "local", "0x5", underlying, "USDC", 1, False, strike, NOW + 86_400, vol, 0.0,
                            2000.0, 10.0, 0.0)

    vols = factor_vols([series(1600, 0.9), series(2050, 0.65), series(2000, 0.5, "WSTETH")],
                       {"WETH": 0.8, "WSTETH": 0.1}, NOW, {"WSTETH": "WETH"})

    assert vols == {"WETH": 0.65, "WSTETH": 0.1}


def test_a_volatility_floor_raises_the_health_factor_band_and_its_target():
    policy = local_policy("p", "bands:\n  health_factor: {min: 1.1, target: 1.3, max: 3.0, volatility: {k_sigma: 3}}\n")
    report = risk_report([_lst_loop(1.2)], "WETH", PRICES, NOW)

    (plain,) = band_readings(report, policy)
    (raised,) = band_readings(report, policy, {"l": 1.25})

    assert (plain.min, plain.target, plain.inside) == (1.1, 1.3, True)
    assert raised.min == pytest.approx(1.25) and raised.target == pytest.approx(1.45) and not raised.inside


def test_a_cycle_with_a_favourable_fill_is_recorded_with_its_risk_metrics():
    from agent.cycle import decide
    from agent.execution.report import ExecutionReport
    from agent.model import Action, ChainSnapshot, PriceReading, Snapshot
    from agent.record import record
    from agent.telemetry import REGISTRY

    policy = local_policy("fill", "bands:\n  stress_health_factor: {min: 1.0}\n")
    prices = tuple(PriceReading("localnet", s, p, f"chainlink:{s}", NOW, 0) for s, p in PRICES.items())
    snapshot = Snapshot("fill", "0x1", "WETH", (ChainSnapshot("localnet", 31337, 1, "0x", NOW, 0, (_lst_loop(),),
                                                                prices, (), (), ()),))
    result = decide(snapshot, policy, log_decision=False)
    bought = Action("perp", "localnet", "perps", "WETH", 10**18, 2000.0, "test", cost_usd=-1.5)
    plan = dataclasses.replace(result.plan, actions=(bought,))

    record(dataclasses.replace(result, plan=plan), policy, ExecutionReport("fill", "p", "live"), 0.1, NOW)

    assert REGISTRY.get_sample_value("ballast_action_cost_usd_total", {"portfolio": "fill", "kind": "perp"}) == 0
    worst = REGISTRY.get_sample_value("ballast_stress_health_factor", {"portfolio": "fill"})
    assert worst is not None and worst < 1
    depeg = REGISTRY.get_sample_value("ballast_scenario_health_factor",
                                      {"portfolio": "fill", "scenario": "WSTETH depeg -8% vs WETH"})
    assert depeg == worst


def test_hedge_optimiser_counts_the_health_factor_at_e_mode_thresholds_and_aave_prices():
    from agent.planner.book import Book
    from agent.planner.hedge_candidates import surplus_usd

    loop = _lst_loop(1.08)
    book = Book("l", "0x1", "WETH", loop, (), (), (), (WETH, WSTETH))
    data = lending.account_data(loop)

    # Σ collateral·LT − HF_min·debt as Aave counts it: e-mode 95%, not WSTETH's own 79% (which would be −$27k)
    assert surplus_usd(book, 1.05) == pytest.approx((data.total_collateral_1e8 * 0.95 - 1.05 * data.total_debt_1e8)
                                                    / 1e8, abs=0.01)
    assert surplus_usd(book, 1.05) > 0
