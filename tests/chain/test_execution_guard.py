"""The guard refuses, with a reason an operator can act on, what the policy does not allow; nothing refused is
sent (the account's nonce on chain is unchanged) and every refusal is journaled."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from web3 import Web3

from agent.execution.executor import Executor
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.model import Action, Snapshot
from agent.policy import Policy
from tests.chain.execution_support import borrow_usdc, keeper_account, live, make_executor, plan, read

EVIL = "0x000000000000000000000000000000000000dEaD"


def _swap(min_out: int) -> Action:
    return Action("swap", "localnet", "uniswap_v3", "USDC", 1_000 * 10**6, 1_000.0, "delta_usd below min",
                  asset_out="WETH", min_amount_out_base_units=min_out, fee_pips=500)


def _off_allowlist(executor: Executor, snapshot: Snapshot) -> Action:
    # An adapter (or a tampered configuration) that would route the swap through a contract the policy never named.
    context = executor.chains["localnet"]
    context.venues = dataclasses.replace(context.venues, swap_router=Web3.to_checksum_address(EVIL))
    return _swap(int(1_000 / 2_000 * 10**18 * 0.999))


def _over_notional(executor: Executor, snapshot: Snapshot) -> Action:
    return dataclasses.replace(borrow_usdc(1_000), notional_usd=300_000.0)


def _kill_switch(executor: Executor, snapshot: Snapshot) -> Action:
    executor.guard.kill_switch.touch()
    return borrow_usdc(1_000)


def _slippage(executor: Executor, snapshot: Snapshot) -> Action:
    return _swap(0)


@pytest.mark.parametrize(("make_action", "rule", "words"), [
    (_off_allowlist, "allowlist", f"{Web3.to_checksum_address(EVIL)} on localnet is not a contract of the policy"),
    (_over_notional, "notional", "borrow of 300,000 USD exceeds max_notional_per_tx_usd 250,000"),
    (_kill_switch, "kill_switch", "exists: nothing is sent"),
    (_slippage, "slippage", "10,000.0 bps below the oracle price, more than max_slippage_bps 30"),
], ids=["allowlist", "notional", "kill_switch", "slippage"])
def test_guard_refuses_with_a_clear_reason_and_sends_nothing(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path,
    make_action: Callable[[Executor, Snapshot], Action], rule: str, words: str,
) -> None:
    policy = live(demo_policy("delta-neutral-lp"))
    w3 = Web3(Web3.HTTPProvider(localnet.rpc_url))
    account = keeper_account(localnet, "delta-neutral-lp").address
    nonce = w3.eth.get_transaction_count(account)
    registry = CollectorRegistry()
    executor = make_executor(localnet, policy, tmp_path, registry=registry)
    snapshot = read(policy)

    report = executor.execute_plan(plan(snapshot, make_action(executor, snapshot)), snapshot, wait_s=1)

    assert {r.rule for r in report.refusals} == {rule}  # an approval to the same contract is refused too
    assert any(words in str(r) for r in report.refusals)
    assert report.intents and all(i.state == "failed" and words in (i.error or "") for i in report.intents)
    assert {e["kind"] for e in executor.journal.events()} == {"refused"}
    assert registry.get_sample_value("ballast_guard_refusals_total", {"portfolio": "delta-neutral-lp",
                                                                      "rule": rule}) == len(report.refusals)
    if rule == "kill_switch":
        assert registry.get_sample_value("ballast_kill_switch_engaged") == 1
    assert w3.eth.get_transaction_count(account) == nonce


def test_plan_from_a_snapshot_with_a_stale_price_is_refused(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    now = chain.w3.eth.get_block("latest")["timestamp"]
    chain.send(feed.functions.setAnswerAt(2_000 * 10**8, now - 7_200), localnet.accounts[0].address)
    policy = live(demo_policy("leveraged-long"))
    snapshot = read(policy)

    report = make_executor(localnet, policy, tmp_path).execute_plan(plan(snapshot, borrow_usdc(1_000)), snapshot)

    (refusal,) = report.refusals
    assert refusal.rule == "stale_prices" and "chainlink:WETH: updated" in refusal.reason
    assert report.states == ("failed",)


def test_daily_turnover_counts_what_was_sent_before(
    localnet: Localnet, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    base = live(demo_policy("leveraged-long"))
    policy = base.model_copy(update={"limits": base.limits.model_copy(update={
        "max_notional_per_tx_usd": 1_500.0, "max_daily_turnover_usd": 2_500.0})})
    executor = make_executor(localnet, policy, tmp_path)
    first = read(policy)
    assert executor.execute_plan(plan(first, borrow_usdc(1_200)), first, wait_s=5).states == ("confirmed",)
    second = read(policy)

    report = executor.execute_plan(plan(second, borrow_usdc(1_400)), second)

    assert [r.rule for r in report.refusals] == ["turnover"]
    assert "1,200 USD traded in 24 h plus this plan's 1,400 USD exceeds" in report.refusals[0].reason


def test_near_liquidation_a_swap_may_concede_up_to_the_emergency_slippage_and_no_further(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    set_weth_price(chain, localnet, 2_000.0 * 1.04 / 1.70)  # health factor ~1.04: within gas_cap_lift_hf of 1
    snapshot = read(policy)
    assert snapshot.lowest_health_factor is not None and snapshot.lowest_health_factor < 1.1
    guard = make_executor(localnet, policy, tmp_path).guard
    price = snapshot.price_usd("WETH")
    assert price is not None
    fair_weth = 1_000 / price * 10**18

    def refusals(conceded_bps: int) -> list[str]:
        swap = _swap(math.ceil(fair_weth * (1 - conceded_bps / 10_000)))
        return [str(r) for r in guard.check_plan(plan(snapshot, swap), snapshot)]

    assert policy.limits.emergency_max_slippage_bps == 300  # the stated default
    assert refusals(250) == []  # above max_slippage_bps 30: an expensive swap beats a liquidation
    (refusal,) = refusals(900)
    assert "900.0 bps below the oracle price, more than emergency_max_slippage_bps 300" in refusal
