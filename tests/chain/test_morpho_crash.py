"""A scripted crash on the local chain: the cross-protocol portfolio (a Safe, looped on Aave and Morpho Blue with no
idle funds, one risk report) is deleveraged on Morpho, the position that breached, in one keeper transaction per
plan (a recipe around Morpho's free flash loan: repay, withdraw collateral, swap), through the real executor, and
neither protocol's position is ever liquidatable: at every step a liquidator's `liquidate` on Morpho would revert
and the Aave health factor stays above 1."""

from __future__ import annotations

from pathlib import Path

from agent.cycle import decide
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.market import set_weth_price
from agent.localnet.morpho import market_params
from agent.localnet.readback import aave_account
from agent.model import MorphoPosition
from agent.risk import morpho
from tests.chain.execution_support import read, started_demo_executor

NAME = "cross-protocol"
PRICES = [2_000 * 0.95**step for step in range(1, 8)]  # −5% a step, to ≈ $1,397


def morpho_liquidation_reverts(chain: LocalChain, localnet: Localnet, borrower: str) -> bool:
    """Whether Morpho refuses a liquidator's `liquidate` of the borrower's WETH/USDC position now."""
    params = market_params(chain, localnet.world, localnet.world.morpho_markets["WETH/USDC"])
    call = chain.at("Morpho", localnet.world.contracts["MorphoBlue"]).functions.liquidate(
        params.as_tuple(), borrower, 10**15, 0, b"")
    try:
        call.call({"from": localnet.liquidator.address})
    except Exception as error:
        assert "position is healthy" in str(error)
        return True
    return False


def test_a_crash_deleverages_the_morpho_position_and_nothing_becomes_liquidatable(
    localnet: Localnet, chain: LocalChain, tmp_path: Path
) -> None:
    policy, owner, executor = started_demo_executor(localnet, NAME, tmp_path)
    pool = localnet.world.contracts["Pool"]
    aave_start = aave_account(chain, pool, owner).health_factor_wad
    acted: list[tuple[float, list[tuple[str, str]], float]] = []
    lowest_morpho = lowest_aave = float("inf")
    gas: list[int] = []

    for price in PRICES:
        # Given WETH moved down 5% (feeds and pools)
        set_weth_price(chain, localnet, price)
        snapshot = read(policy)
        (position,) = [p for p in snapshot.positions if isinstance(p, MorphoPosition)]
        lowest_morpho = min(lowest_morpho, morpho.health_factor_wad(position) / 1e18)
        lowest_aave = min(lowest_aave, aave_account(chain, pool, owner).health_factor_wad / 1e18)
        # Then neither protocol would let a liquidator in
        assert morpho_liquidation_reverts(chain, localnet, owner)
        assert aave_account(chain, pool, owner).health_factor_wad >= 10**18

        # When the cycle plans and the executor carries the plan out
        result = decide(snapshot, policy, log_decision=False)
        if result.plan.actions:
            report = executor.execute_plan(result.plan, snapshot, wait_s=60)
            assert report.refusals == () and set(report.states) == {"confirmed"}, report.to_json()
            (intent,) = report.intents  # one transaction: the keeper's call to the Safe's module
            tx = chain.w3.eth.get_transaction(intent.tx_hash)  # type: ignore[arg-type]
            portfolio = localnet.demo_portfolios[NAME]
            assert (intent.kind, tx["from"], tx["to"]) == ("recipe", portfolio.keeper, portfolio.module)
            (after,) = [p for p in read(policy).positions if isinstance(p, MorphoPosition)]
            acted.append((price, [(a.kind, a.protocol) for a in result.plan.actions],
                          morpho.health_factor_wad(after) / 1e18))
            gas.append(chain.w3.eth.get_transaction_receipt(intent.tx_hash)["gasUsed"])  # type: ignore[arg-type]
    print(f"{NAME}: lowest Morpho health {lowest_morpho:.4f}, lowest Aave HF {lowest_aave:.4f}; acted {acted}; "
          f"gas per recipe {gas}")

    # Then only Morpho was deleveraged, each time back to the band's target through its free flash loan, and Aave
    # was left alone
    assert acted, "the crash never breached the Morpho position"
    bracket = [("flash_loan", "morpho_blue"), ("repay", "morpho_blue"), ("withdraw", "morpho_blue"),
               ("swap", "uniswap_v3"), ("flash_repay", "morpho_blue")]
    for _price, actions, health in acted:
        # what the last bracket's swap left over in USDC is repaid first
        assert actions[-5:] == bracket and set(actions[:-5]) <= {("repay", "morpho_blue")}
        assert abs(health - 1.8) < 0.01
    assert lowest_morpho > 1.0
    assert aave_account(chain, pool, owner).health_factor_wad < aave_start  # it fell with WETH, untouched
