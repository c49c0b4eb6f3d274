"""The planner on the local chain: move the WETH price until a demo portfolio breaches its bands, plan one cycle
(`ballast once`), carry the plan out with plain transactions from the owner's unlocked account, and read back."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from agent.chain.reader import PortfolioReader
from agent.cli import app
from agent.cycle import assess, run_cycle
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.policies import render_policy
from agent.localnet.readback import aave_account
from agent.localnet.world import MAX_UINT256, RESERVES, raw_pool_price, sqrt_price_x96
from agent.model import Action
from agent.policy import Policy

WAD = 10**18
VARIABLE = 2
MAX_UINT128 = 2**128 - 1


def set_weth_price(chain: LocalChain, localnet: Localnet, usd: float) -> None:
    """Set the WETH feed to `usd` and move both WETH/USDC pools there, so that quotes agree with the oracle."""
    deployer = localnet.accounts[0].address
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    chain.send(feed.functions.setAnswer(int(usd * 10**8)), deployer)
    params = {r.symbol: r for r in RESERVES}
    tokens = localnet.world.tokens
    token0, token1 = sorted(("WETH", "USDC"), key=lambda s: int(tokens[s], 16))
    moved = {**params, "WETH": dataclasses.replace(params["WETH"], price_usd=Fraction(usd))}
    limit = sqrt_price_x96(raw_pool_price(moved[token0], moved[token1]))
    trader = localnet.accounts[7].address
    router = chain.at("SwapRouter", localnet.world.contracts["SwapRouter"])
    for symbol in ("WETH", "USDC"):
        token = chain.at("MintableERC20", tokens[symbol])
        chain.send(token.functions.mint(trader, 10**30), trader)
        chain.send(token.functions.approve(router.address, MAX_UINT256), trader)
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
    for fee, pool_address in localnet.world.pools.items():
        current = chain.at("UniswapV3Pool", pool_address).functions.slot0().call()[0]
        zero_for_one = limit < current  # selling token0 lowers the pool price
        token_in, token_out = (token0, token1) if zero_for_one else (token1, token0)
        chain.send(router.functions.exactInputSingle(
            (tokens[token_in], tokens[token_out], fee, trader, deadline, 10**29, 0, limit)), trader)


def execute(chain: LocalChain, localnet: Localnet, owner: str, actions: list[dict[str, Any]]) -> None:
    """Carry out plan actions (as `ballast once --json` prints them) from the owner's account, one transaction
    each, the way the executor will."""
    world = localnet.world
    for symbol in ("WETH", "USDC"):
        token = chain.at("MintableERC20", world.tokens[symbol])
        for spender in (world.contracts["Pool"], world.contracts["SwapRouter"]):
            chain.send(token.functions.approve(spender, MAX_UINT256), owner)
    for index, action in enumerate(actions):
        try:
            _execute_one(chain, localnet, owner, action)
        except Exception as error:
            raise AssertionError(f"step {index} {action['kind']} {action['asset']} failed: {error}") from error


def _execute_one(chain: LocalChain, localnet: Localnet, owner: str, action: dict[str, Any]) -> None:
    world = localnet.world
    pool = chain.at("Pool", world.contracts["Pool"])
    router = chain.at("SwapRouter", world.contracts["SwapRouter"])
    manager = chain.at("NonfungiblePositionManager", world.contracts["NonfungiblePositionManager"])
    kind, amount = action["kind"], action["amount_base_units"]
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
    asset = world.tokens.get(action["asset"], "")
    if kind == "repay":
        chain.send(pool.functions.repay(asset, amount, VARIABLE, owner), owner)
    elif kind == "withdraw":
        chain.send(pool.functions.withdraw(asset, amount, owner), owner)
    elif kind == "supply":
        chain.send(pool.functions.supply(asset, amount, owner, 0), owner)
    elif kind == "borrow":
        chain.send(pool.functions.borrow(asset, amount, VARIABLE, 0, owner), owner)
    elif kind == "swap":
        chain.send(router.functions.exactInputSingle((
            asset, world.tokens[action["asset_out"]], action["fee_pips"], owner, deadline, amount,
            action["min_amount_out_base_units"], 0)), owner)
    elif kind == "remove_liquidity":
        token_id = action["position_id"]
        chain.send(manager.functions.decreaseLiquidity((token_id, amount, 0, 0, deadline)), owner)
        chain.send(manager.functions.collect((token_id, owner, MAX_UINT128, MAX_UINT128)), owner)
    elif kind == "perp":
        perp = chain.at("PerpMarket", world.contracts["PerpMarket"])
        chain.send(perp.functions.modifyPosition(amount, action["acceptable_price_1e18"]), owner)
    elif kind in ("option_buy", "option_sell"):
        options = chain.at("OptionsMarket", world.contracts["OptionsMarket"])
        usdc = chain.at("MintableERC20", world.tokens["USDC"])
        chain.send(usdc.functions.approve(options.address, MAX_UINT256), owner)
        trade = options.functions.buy if kind == "option_buy" else options.functions.sell
        bound = action["max_amount_in_base_units"] if kind == "option_buy" else action["min_amount_out_base_units"]
        chain.send(trade(action["position_id"], amount, bound), owner)
    else:
        raise AssertionError(f"no helper for {kind}")


def once_json(localnet: Localnet, name: str, tmp_path: Path) -> dict[str, Any]:
    policy_file = tmp_path / f"{name}.yaml"
    policy_file.write_text(render_policy(name, localnet.demo_accounts[name], localnet))
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        result = CliRunner().invoke(app, ["once", "--policy", str(policy_file), "--json"])
    finally:
        # `once` logs to the runner's stderr, which closes with it: put logging back as it was.
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        structlog.reset_defaults()
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def onchain_health_factor(chain: LocalChain, localnet: Localnet, owner: str) -> float:
    return aave_account(chain, localnet.world.contracts["Pool"], owner).health_factor_wad / WAD


def test_once_plan_restores_leveraged_long_health_factor_after_a_crash(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    # given the leveraged long holding 40,000 idle USDC (the looped seed holds none), after a crash to $1,400:
    # HF ≈ 1.19, below min 1.5
    owner = localnet.demo_accounts["leveraged-long"]
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    chain.send(usdc.functions.mint(owner, 40_000 * 10**6), localnet.accounts[0].address)
    set_weth_price(chain, localnet, 1_400)
    before = onchain_health_factor(chain, localnet, owner)
    assert before < 1.5

    # when `ballast once` plans and a helper executes the plan
    output = once_json(localnet, "leveraged-long", tmp_path)
    plan = output["plan"]
    execute(chain, localnet, owner, plan["actions"])

    # then the plan repaid from the idle USDC first, and the on-chain HF is within 2% of target 1.8
    assert [a["kind"] for a in plan["actions"]] == ["repay"]
    assert plan["limited_by"] == ""
    after = onchain_health_factor(chain, localnet, owner)
    print(f"leveraged-long: HF {before:.4f} → {after:.4f}:", plan["reason"])
    assert after == pytest.approx(1.8, rel=0.02)
    assert plan["predicted"]["accounts"][0]["health_factor"] == pytest.approx(after, rel=0.005)


def test_withdraw_swap_repay_rounds_restore_health_factor_without_idle_funds(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy]
) -> None:
    # given the leveraged long without its borrowed USDC (spent), after a crash to $1,400
    owner = localnet.demo_accounts["leveraged-long"]
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    chain.send(usdc.functions.transfer(localnet.accounts[8].address, usdc.functions.balanceOf(owner).call()), owner)
    set_weth_price(chain, localnet, 1_400)
    before = onchain_health_factor(chain, localnet, owner)

    # when one cycle plans and the helper executes it, checking the HF after every step
    policy = demo_policy("leveraged-long")
    result = run_cycle(policy, PortfolioReader(policy))
    kinds = [a.kind for a in result.plan.actions]
    actions = [_as_dict(a) for a in result.plan.actions]
    seen = [before]
    for action in actions:
        execute(chain, localnet, owner, [action])
        seen.append(onchain_health_factor(chain, localnet, owner))

    print("leveraged-long without idle USDC: HF after each step", [round(h, 4) for h in seen], kinds)

    # then it withdrew WETH, swapped it for USDC and repaid, and HF reached target within 2%
    assert kinds[:3] == ["withdraw", "swap", "repay"]
    assert seen[-1] == pytest.approx(1.8, rel=0.02)
    floor = 1 + (before - 1) / 2
    assert min(seen) >= floor * 0.999
    after_rounds = [hf for hf, kind in zip(seen[1:], kinds, strict=True) if kind == "repay"]
    assert after_rounds == sorted(after_rounds) and after_rounds[0] > before


def test_plan_restores_delta_neutral_lp_health_factor_and_delta_after_a_rally(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    # given the delta-neutral LP after a rally to $2,450: HF below 1.5 and delta far below -5,000
    owner = localnet.demo_accounts["delta-neutral-lp"]
    set_weth_price(chain, localnet, 2_450)
    policy = demo_policy("delta-neutral-lp")
    reader = PortfolioReader(policy)
    report = assess(reader.read())
    assert report.accounts[0].health_factor < 1.5
    assert report.total.delta_usd < -5_000

    # when `ballast once` plans and the helper executes it
    output = once_json(localnet, "delta-neutral-lp", tmp_path)
    execute(chain, localnet, owner, output["plan"]["actions"])
    print(f"delta-neutral-lp: HF {report.accounts[0].health_factor:.4f} delta {report.total.delta_usd:,.0f} →",
          output["plan"]["reason"])

    # then HF is back above min and delta inside its band, as read back from the chain
    kinds = [a["kind"] for a in output["plan"]["actions"]]
    assert kinds[0] == "remove_liquidity" and "repay" in kinds
    after = assess(PortfolioReader(policy).read())
    assert after.accounts[0].health_factor >= 1.5
    assert onchain_health_factor(chain, localnet, owner) >= 1.5
    assert -5_000 <= after.total.delta_usd <= 5_000


def _as_dict(action: Action) -> dict[str, Any]:
    return dataclasses.asdict(action)
