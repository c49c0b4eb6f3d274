"""A perp near liquidation kept alive on the local chain: with margin taken out of the demo short until its
liquidation price is within 25% of WETH's, the planner deposits idle USDC as margin, the real executor approves and
deposits it, and the venue's own liquidation price reads back 50% above the feed price."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cycle import decide
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.policies import render_policy
from agent.model import PerpPosition, Snapshot
from agent.planner.margin import MIN_DISTANCE, TARGET_DISTANCE, liquidation_distance
from agent.policy import parse_policy
from tests.chain.execution_support import live, make_executor, read

USDC = 10**6


def perp_of(snapshot: Snapshot) -> PerpPosition:
    (perp,) = [p for p in snapshot.positions if isinstance(p, PerpPosition)]
    return perp


def test_a_perp_near_liquidation_gets_margin_deposited_by_the_executor(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    name = "delta-neutral-lp"
    policy = live(parse_policy(render_policy(name, localnet.demo_accounts[name], localnet), f"{name}.yaml"))
    owner = policy.portfolio.account
    perp = chain.at("PerpMarket", localnet.world.contracts["PerpMarket"])
    # Given: the 5 WETH short keeps 3,000 of its 10,000 USDC margin (the rest goes back to the wallet, idle):
    # its liquidation price (10,000 + 3,000) / 5.25 ≈ 2,476 is within 25% of WETH at $2,000
    chain.send(perp.functions.withdrawMargin(7_000 * USDC), owner)
    before = read(policy)
    spot = before.price_usd("WETH")
    assert spot is not None
    assert liquidation_distance(perp_of(before), spot) < MIN_DISTANCE

    chosen = decide(before, policy, log_decision=False).plan

    deposits = [a for a in chosen.actions if a.kind == "perp_deposit"]
    assert len(deposits) == 1 and deposits[0].asset == "USDC", chosen.reason
    assert "liquidation price" in deposits[0].reason and chosen.limited_by == "", chosen.reason
    report = make_executor(localnet, policy, tmp_path).execute_plan(chosen, before, wait_s=60)
    assert report.refusals == () and set(report.states) == {"confirmed"}, report.to_json()

    after = read(policy)
    margin_added = perp_of(after).margin_usd - perp_of(before).margin_usd
    assert margin_added == pytest.approx(deposits[0].amount_base_units / USDC, abs=1.0)
    on_chain = perp.functions.liquidationPrice(owner).call() / 1e18
    assert on_chain == pytest.approx(spot * (1 + TARGET_DISTANCE), rel=2e-3)
    assert liquidation_distance(perp_of(after), spot) >= TARGET_DISTANCE - 2e-3
