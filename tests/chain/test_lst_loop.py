"""The lst-loop demo portfolio (WSTETH supplied in the ETH e-mode, WETH borrowed, HF ≈ 1.08) on the local chain: an
ETH crash leaves it alone, an 8% depeg of WSTETH liquidates it unmanaged, and managed — the stress band sees the
depeg scenario, the planner deleverages, the real executor sends it — no block of the same depeg finds it
liquidatable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.cycle import decide
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_lst_depeg, set_weth_price
from agent.localnet.policies import render_policy
from agent.planner import HedgeState
from agent.policy import Policy, parse_policy
from tests.chain.execution_support import live, make_executor, read
from tests.chain.test_planner_localnet import once_json

WAD = 10**18
NAME = "lst-loop"
DEPEG_STEPS = (0.02, 0.04, 0.06, 0.08)


def _policy(localnet: Localnet) -> Policy:
    return live(parse_policy(render_policy(NAME, localnet.demo_accounts[NAME], localnet), f"{NAME}.yaml"))


def _health_factor_wad(chain: LocalChain, localnet: Localnet, block: int | str = "latest") -> int:
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    return int(pool.functions.getUserAccountData(localnet.demo_accounts[NAME]).call(block_identifier=block)[5])


def test_an_eth_crash_leaves_the_loop_alone(localnet: Localnet, chain: LocalChain) -> None:
    before = _health_factor_wad(chain, localnet)
    set_weth_price(chain, localnet, 1_200.0)

    assert 1.07 * WAD < before < 1.09 * WAD
    assert _health_factor_wad(chain, localnet) == pytest.approx(before, rel=1e-6)


def test_unmanaged_an_8pct_depeg_liquidates_the_loop(localnet: Localnet, chain: LocalChain) -> None:
    for depeg in DEPEG_STEPS:
        set_lst_depeg(chain, localnet, depeg)

    assert _health_factor_wad(chain, localnet) < WAD
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    liquidator = localnet.liquidator.address
    tokens = localnet.world.tokens
    chain.send(pool.functions.liquidationCall(tokens["WSTETH"], tokens["WETH"], localnet.demo_accounts[NAME],
                                              10 * WAD, False), liquidator)


def test_managed_the_loop_survives_the_same_depeg(localnet: Localnet, chain: LocalChain, tmp_path: Path) -> None:
    policy = _policy(localnet)
    executor = make_executor(localnet, policy, tmp_path)
    first_block = chain.w3.eth.block_number
    state: HedgeState | None = None
    acted = []
    for depeg in (0.0, *DEPEG_STEPS):
        if depeg:
            set_lst_depeg(chain, localnet, depeg)
        snapshot = read(policy)
        result = decide(snapshot, policy, state, log_decision=False)
        if result.plan.actions:
            report = executor.execute_plan(result.plan, snapshot, wait_s=60)
            assert report.refusals == () and set(report.states) == {"confirmed"}, report.to_json()
            acted.append((depeg, result.plan.reason))
            state = result.state
        assert not [p for p in snapshot.problems if p.source == "aave_v3:health_factor"]

    # The stress band acted before the depeg reached the account: at the first cycle, on the depeg scenario
    assert acted and acted[0][0] == 0.0 and "stress HF" in acted[0][1], acted
    last_block = chain.w3.eth.block_number
    lowest = min(_health_factor_wad(chain, localnet, block) for block in range(first_block, last_block + 1))
    print(f"lst-loop: {len(acted)} plans over blocks {first_block}..{last_block}, lowest HF {lowest / WAD:.4f}")
    assert lowest >= WAD


def test_status_and_once_show_the_loop_per_factor_and_its_worst_scenario(localnet: Localnet, tmp_path: Path) -> None:
    policy_file = tmp_path / f"{NAME}.yaml"
    policy_file.write_text(render_policy(NAME, localnet.demo_accounts[NAME], localnet))

    status = CliRunner().invoke(app, ["status", "--policy", str(policy_file), "--json"])
    text = CliRunner().invoke(app, ["status", "--policy", str(policy_file)], terminal_width=200)
    once = once_json(localnet, NAME, tmp_path)

    assert status.exit_code == 0 and text.exit_code == 0, status.output + text.output
    risk = json.loads(status.stdout)["risk"]
    deltas = {f["symbol"]: f["delta_usd"] for f in risk["factors"]}
    # Long 100 WSTETH ($230k), short 101.16 WETH: a small beta-weighted delta, not a $202k short
    assert deltas["WSTETH"] == pytest.approx(230_000, rel=1e-6) and deltas["WETH"] < -200_000
    assert risk["beta_delta_usd"] == pytest.approx(230_000 + deltas["WETH"], rel=1e-6)
    worst = min(risk["scenarios"], key=lambda s: min(a["health_factor"] for a in s["accounts"]))
    assert worst["name"] == "WSTETH depeg -8% vs WETH"
    assert "Risk factors" in text.stdout and "WSTETH depeg -8% vs WETH" in text.stdout
    assert {f["symbol"] for f in once["report"]["factors"]} == {"WETH", "WSTETH"}
    assert "stress HF" in once["plan"]["reason"]
