"""The lst-loop demo portfolio (WSTETH supplied in the ETH e-mode, WETH borrowed, HF ≈ 1.08) on the local chain: an
ETH crash leaves it alone, an 8% depeg of WSTETH liquidates it unmanaged, and managed — the stress band sees the
depeg scenario, the planner deleverages, the real executor sends it — no block of the same depeg finds it
liquidatable."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cycle import decide
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_lst_depeg, set_weth_price
from agent.localnet.policies import render_policy
from agent.planner import HedgeState
from agent.policy import Policy, parse_policy
from tests.chain.execution_support import live, make_executor, read

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
