"""The looped long in its Safe through a crash under its health-factor band, on the real local chain: each plan
lands as exactly one keeper transaction to the module (a flash-loan recipe where the classic rounds fall short),
the health factor ends at the band's target, and at no block is the account liquidatable (a liquidator's
`liquidationCall` reverts at every block). A recipe that fails on chain leaves the Safe exactly as it was and its
intent failed with the inner reason."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3
from web3.exceptions import ContractLogicError

from agent.cycle import decide
from agent.execution.reverts import revert_reason
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import ARBITRAGEUR, set_weth_price
from agent.localnet.world import MAX_UINT256
from agent.model import Plan
from agent.policy import Policy
from tests.chain.execution_support import keeper_account, live, make_executor, read, rpc

TARGET_TOLERANCE = 0.02  # the health factor after a plan: at least the band's target less this (interest, rounding)


def liquidation_reverts_at(w3: Web3, localnet: Localnet, chain: LocalChain, account: str, block: int) -> str:
    """Returns the revert reason of the liquidator's `liquidationCall` on `account` at `block` (fails if it would
    go through)."""
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    call = pool.functions.liquidationCall(localnet.world.tokens["WETH"], localnet.world.tokens["USDC"], account,
                                          MAX_UINT256, False)
    with pytest.raises(ContractLogicError) as reverted:
        call.call({"from": localnet.liquidator.address}, block_identifier=block)
    return revert_reason(reverted.value)


def hf_to_price(policy: Policy, health_factor: float) -> float:
    """The WETH price at which the looped long's health factor is `health_factor` (from where it is now)."""
    snapshot = read(policy)
    now = snapshot.lowest_health_factor
    price = snapshot.price_usd("WETH")
    assert now is not None and price is not None
    # Debt in USDC, collateral in WETH: the health factor is proportional to the WETH price.
    return price * health_factor / now


def test_crash_under_the_band_each_plan_is_one_keeper_transaction_and_never_liquidatable(
    localnet: Localnet, w3: Web3, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    safe, module = policy.portfolio.account, policy.portfolio.executor.module  # type: ignore[union-attr]
    keeper = keeper_account(localnet, "leveraged-long").address
    executor = make_executor(localnet, policy, tmp_path)
    first_block = w3.eth.block_number
    landed: list[dict[str, Any]] = []
    # A gap down to HF 1.02 (the rounds' withdraw floor leaves them short: a flash-loan recipe), then a second leg
    # from the target to HF 1.3 (a cheaper set of rounds, one recipe all the same).
    for health_factor in (1.02, 1.3):
        set_weth_price(chain, localnet, hf_to_price(policy, health_factor))
        snapshot = read(policy)
        cycle = decide(snapshot, policy, log_decision=False)
        nonce = w3.eth.get_transaction_count(keeper)

        report = executor.execute_plan(cycle.plan, snapshot, wait_s=30)

        (intent,) = report.intents
        assert (intent.kind, intent.state) == ("recipe", "confirmed"), intent.error
        assert "(deleverage)" in intent.description  # the module itself refused any outcome that lowered the HF
        tx = w3.eth.get_transaction(intent.tx_hash)  # type: ignore[arg-type]
        assert (tx["from"], tx["to"]) == (keeper, module)
        assert w3.eth.get_transaction_count(keeper) == nonce + 1
        after = read(policy).lowest_health_factor
        assert after is not None and after >= 1.8 - TARGET_TOLERANCE
        receipt = w3.eth.get_transaction_receipt(intent.tx_hash)  # type: ignore[arg-type]
        landed.append({"kinds": [a.kind for a in cycle.plan.actions], "block": receipt["blockNumber"],
                       "gas": receipt["gasUsed"], "before": snapshot.lowest_health_factor, "after": after})
    assert landed[0]["kinds"][0] == "flash_loan" and landed[0]["kinds"][-1] == "flash_repay"
    print(landed)  # the numbers of the closing note
    for block in range(first_block, w3.eth.block_number + 1):
        assert liquidation_reverts_at(w3, localnet, chain, safe, block).startswith("45 ")  # HF not below 1


def safe_state(chain: LocalChain, localnet: Localnet, safe: str) -> dict[str, int]:
    """The Safe's scaled Aave balances (interest-free), wallet balances and allowances to the protocols."""
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    state = {}
    for symbol in ("WETH", "USDC"):
        token = localnet.world.tokens[symbol]
        data = pool.functions.getReserveData(token).call()
        state[f"a{symbol}"] = chain.at("AToken", data[8]).functions.scaledBalanceOf(safe).call()
        state[f"debt{symbol}"] = chain.at("VariableDebtToken", data[10]).functions.scaledBalanceOf(safe).call()
        erc20 = chain.at("MintableERC20", token)
        state[symbol] = erc20.functions.balanceOf(safe).call()
        for spender in ("Pool", "SwapRouter"):
            state[f"{symbol}>{spender}"] = erc20.functions.allowance(safe, localnet.world.contracts[spender]).call()
    return state


def flash_plan(policy: Policy, chain: LocalChain, localnet: Localnet) -> tuple[Plan, Any]:
    set_weth_price(chain, localnet, hf_to_price(policy, 1.02))
    snapshot = read(policy)
    plan = decide(snapshot, policy, log_decision=False).plan
    assert plan.actions[0].kind == "flash_loan", plan.reason
    return plan, snapshot


def test_a_recipe_whose_swap_misses_its_minimum_is_refused_in_simulation_and_changes_nothing(
    localnet: Localnet, w3: Web3, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path
) -> None:
    policy = live(demo_policy("leveraged-long"))
    plan, snapshot = flash_plan(policy, chain, localnet)
    greedy = tuple(dataclasses.replace(a, min_amount_out_base_units=a.min_amount_out_base_units * 2)
                   if a.kind == "swap" else a for a in plan.actions)  # a minimum out above the pool's price
    before = safe_state(chain, localnet, policy.portfolio.account)
    keeper = keeper_account(localnet, "leveraged-long").address
    nonce = w3.eth.get_transaction_count(keeper)

    report = make_executor(localnet, policy, tmp_path).execute_plan(dataclasses.replace(plan, actions=greedy),
                                                                    snapshot, wait_s=5)

    (intent,) = report.intents
    assert intent.state == "failed" and intent.error == "reverted in simulation: Too little received"
    assert w3.eth.get_transaction_count(keeper) == nonce
    assert safe_state(chain, localnet, policy.portfolio.account) == before


def test_a_recipe_that_reverts_on_chain_leaves_the_safe_as_it_was_and_fails_with_the_inner_reason(
    localnet: Localnet, w3: Web3, chain: LocalChain, demo_policy: Callable[[str], Policy], tmp_path: Path,
    automine_off: None,
) -> None:
    policy = live(demo_policy("leveraged-long"))
    rpc(w3, "evm_setAutomine", True)
    plan, snapshot = flash_plan(policy, chain, localnet)
    rpc(w3, "evm_setAutomine", False)
    executor = make_executor(localnet, policy, tmp_path)
    before = safe_state(chain, localnet, policy.portfolio.account)
    (intent,) = executor.execute_plan(plan, snapshot).intents
    assert intent.state == "sent"

    # A large WETH sale lands first in the same block (a higher tip): the recipe's swap misses its minimum.
    arb = localnet.accounts[ARBITRAGEUR].address
    router = chain.at("SwapRouter", localnet.world.contracts["SwapRouter"])
    deadline = w3.eth.get_block("latest")["timestamp"] + 600
    sale = router.functions.exactInputSingle((localnet.world.tokens["WETH"], localnet.world.tokens["USDC"], 500, arb,
                                              deadline, 2_000 * 10**18, 0, 0))
    sale.transact({"from": arb, "maxPriorityFeePerGas": 50 * 10**9, "maxFeePerGas": 100 * 10**9, "gas": 1_000_000})
    rpc(w3, "anvil_mine", "0x1")
    executor.advance()

    failed = executor.journal.intent(intent.id)
    assert failed is not None and failed.state == "failed"
    assert failed.error is not None and failed.error.endswith("Too little received"), failed.error
    assert w3.eth.get_transaction_receipt(failed.tx_hash)["status"] == 0  # type: ignore[arg-type]
    assert safe_state(chain, localnet, policy.portfolio.account) == before
