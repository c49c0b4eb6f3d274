"""Gamma and delta hedged with the derivatives venues on the local chain: a gamma band breached by the short-gamma LP
makes the planner buy options and re-hedge their delta, and the real executor carries the plan out."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent.cycle import assess, decide
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.policies import render_policy
from agent.localnet.world import MAX_UINT256
from agent.model import PerpPosition
from agent.policy import Policy, parse_policy
from tests.chain.execution_support import live, make_executor, read

GAMMA_BAND = "  gamma_usd_1pct: {min: -2000, max: 2000}\n"


def with_bands(localnet: Localnet, name: str, extra: str, instruments: str | None = None) -> Policy:
    text = render_policy(name, localnet.demo_accounts[name], localnet)
    text = text.replace("bands:\n", "bands:\n" + extra)
    if instruments is not None:
        text = text.replace("instruments: [perp, aave_borrow, spot_swap, options]", f"instruments: [{instruments}]")
    return live(parse_policy(text, f"{name}.yaml"))


def test_gamma_band_breach_is_restored_with_options_executed_on_the_local_chain(
    localnet: Localnet, tmp_path: Path
) -> None:
    policy = with_bands(localnet, "delta-neutral-lp", GAMMA_BAND)
    before = read(policy)
    gamma = assess(before).total.gamma_usd_1pct
    assert gamma < -2_000  # the LP is short gamma: outside the band

    chosen = decide(before, policy, log_decision=False).plan

    kinds = [a.kind for a in chosen.actions]
    assert "option_buy" in kinds and chosen.limited_by == "", chosen.reason
    assert chosen.predicted is not None and -2_000 <= chosen.predicted.total.gamma_usd_1pct <= 2_000
    assert -5_000 <= chosen.predicted.total.delta_usd <= 5_000
    executor = make_executor(localnet, policy, tmp_path)
    report = executor.execute_plan(chosen, before, wait_s=60)
    assert report.refusals == () and set(report.states) == {"confirmed"}, report.to_json()

    after = read(policy)
    (check,) = executor.read_back(after)
    assert check.ok, check  # the read-back meets the plan's prediction
    risk = assess(after)
    assert -2_000 <= risk.total.gamma_usd_1pct <= 2_000
    assert -5_000 <= risk.total.delta_usd <= 5_000
    assert abs(risk.total.gamma_usd_1pct - chosen.predicted.total.gamma_usd_1pct) < 50
    assert any(r.label.startswith("option:") for r in risk.positions)


def test_without_a_delta_band_the_options_delta_is_offset_with_the_perp(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    # A vega band and no delta band: the leveraged long buys options for vega and offsets their delta on the perp.
    policy = with_bands(localnet, "leveraged-long", "  vega_usd_1vol: {min: 500, target: 1000, max: 5000}\n")
    owner = policy.portfolio.account
    perp = chain.at("PerpMarket", localnet.world.contracts["PerpMarket"])
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    # the looped long holds no idle USDC: give its Safe some to margin the perp and pay for options
    chain.send(usdc.functions.mint(owner, 95_000 * 10**6), localnet.accounts[0].address)
    chain.send(usdc.functions.approve(perp.address, MAX_UINT256), owner)
    chain.send(perp.functions.depositMargin(20_000 * 10**6), owner)
    before = read(policy)
    delta_before = assess(before).total.delta_usd

    chosen = decide(before, policy, log_decision=False).plan

    assert [a.kind for a in chosen.actions if a.kind != "option_buy"] == ["perp"], chosen.reason
    assert chosen.predicted is not None and 500 <= chosen.predicted.total.vega_usd_1vol <= 5_000
    assert abs(chosen.predicted.total.delta_usd - delta_before) < policy.hedging.min_trade_usd
    report = make_executor(localnet, policy, tmp_path).execute_plan(chosen, before, wait_s=60)
    assert set(report.states) == {"confirmed"}, report.to_json()
    after = read(policy)
    assert 500 <= assess(after).total.vega_usd_1vol <= 5_000
    assert any(isinstance(p, PerpPosition) and p.size_underlying != 0 for p in after.positions)


def test_guard_refuses_venue_trades_that_concede_more_than_the_slippage_cap(
    localnet: Localnet, tmp_path: Path
) -> None:
    policy = with_bands(localnet, "delta-neutral-lp", GAMMA_BAND)
    before = read(policy)
    chosen = decide(before, policy, log_decision=False).plan
    loose = tuple(
        dataclasses.replace(a, max_amount_in_base_units=a.max_amount_in_base_units * 11 // 10) if a.kind ==
        "option_buy" else dataclasses.replace(a, acceptable_price_1e18=a.acceptable_price_1e18 * 11 // 10)
        for a in chosen.actions)

    report = make_executor(localnet, policy, tmp_path).execute_plan(
        dataclasses.replace(chosen, actions=loose), before, wait_s=5)

    assert {r.rule for r in report.refusals} == {"slippage"}
    assert len(report.refusals) == len(loose) and set(report.states) == {"failed"}
