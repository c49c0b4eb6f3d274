"""An LP removal in a Safe's recipe: `decreaseLiquidity` with minimum amounts (the prediction at the snapshot's pool
price less the slippage tolerance, never zero) and `collect` to the Safe, two calls the module checks one by one,
in one keeper transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from eth_abi import decode

from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.model import Action, LpPosition
from agent.policy import Policy
from agent.risk.lp import position_amounts
from tests.chain.execution_support import live, make_executor, plan, read


def test_lp_removal_carries_minimum_amounts_and_a_separate_collect(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("delta-neutral-lp"))
    snapshot = read(policy)
    (position,) = (p for p in snapshot.positions if isinstance(p, LpPosition))
    half = position.liquidity // 2
    expected = position_amounts(dataclasses.replace(position, liquidity=half))
    removal = Action("remove_liquidity", "localnet", "uniswap_v3", "WETH/USDC", half, 50_000.0, "delta_usd test",
                     fee_pips=position.fee_pips, position_id=position.token_id)
    safe = policy.portfolio.account
    tokens = {s: chain.at("MintableERC20", localnet.world.tokens[s]) for s in ("WETH", "USDC")}
    before = {s: t.functions.balanceOf(safe).call() for s, t in tokens.items()}

    report = make_executor(localnet, policy, tmp_path).execute_plan(plan(snapshot, removal), snapshot, wait_s=15)

    (intent,) = report.intents
    assert (intent.kind, intent.state) == ("recipe", "confirmed"), intent.error
    calls = intent.recipe_calls()
    assert [c["kind"] for c in calls] == ["remove_liquidity", "remove_liquidity"]
    manager = localnet.world.contracts["NonfungiblePositionManager"]
    assert {c["to"] for c in calls} == {manager}
    decrease, collect = (bytes.fromhex(c["data"][2:]) for c in calls)
    token_id, liquidity, min0, min1, _deadline = decode(["(uint256,uint128,uint256,uint256,uint256)"],
                                                        decrease[4:])[0]
    amounts = expected
    assert (token_id, liquidity) == (position.token_id, half)
    for minimum, amount in ((min0, amounts[0]), (min1, amounts[1])):  # 30 bps under the prediction, not zero
        assert 0 < minimum <= amount and minimum >= amount * (1 - 30 / 10_000) - 1
    _id, recipient, _max0, _max1 = decode(["(uint256,address,uint128,uint128)"], collect[4:])[0]
    assert recipient.lower() == safe.lower()
    after = {s: t.functions.balanceOf(safe).call() for s, t in tokens.items()}
    gained = [after[s] - before[s] for s in ("WETH", "USDC")]
    token0 = position.token0.symbol
    received0, received1 = (gained[0], gained[1]) if token0 == "WETH" else (gained[1], gained[0])
    assert received0 >= min0 and received1 >= min1
