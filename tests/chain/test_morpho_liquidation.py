"""The engine's Morpho Blue health is Morpho's own: at the lowest healthy price the engine computes, the real
Morpho refuses a liquidation, and one feed unit below it allows one (random positions, prices, LLTVs and ages)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from web3 import Web3

from agent.adapters.erc20 import TokenRegistry
from agent.adapters.morpho_blue import MorphoBlue
from agent.chain.multicall import read_batch
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.morpho import ENABLED_LLTVS_WAD, create_market, market_params, open_position
from agent.model import MorphoPosition
from agent.risk import morpho

CASES = 10
BORROWER = 6  # a dev account no demo portfolio uses


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    return w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def read_position(w3: Web3, localnet: Localnet, market: str, owner: str) -> tuple[MorphoPosition, int, int]:
    """The position as the adapter reads it, with the block number and timestamp of the read."""
    adapter = MorphoBlue("localnet", owner, localnet.world.contracts["MorphoBlue"], [market], TokenRegistry())
    adapter.discover(w3)
    block, results = read_batch(w3, adapter.calls())
    reading = adapter.decode(results, block)
    assert not reading.problems
    (position,) = reading.positions
    assert isinstance(position, MorphoPosition)
    return position, block.number, block.timestamp


def liquidate_at(
    w3: Web3, chain: LocalChain, localnet: Localnet, market: str, borrower: str, feed_answer: int, timestamp: int
) -> tuple[int, int, str]:
    """Set the WETH feed and call `liquidate` in one block mined at `timestamp` (so no interest accrues after the
    read); return the liquidation's receipt status, the oracle price in that block and its revert reason."""
    world, deployer = localnet.world, localnet.accounts[0].address
    feed = chain.at("LocalPriceFeed", world.feeds["WETH"])
    params = market_params(chain, world, market)
    morpho_contract = chain.at("Morpho", world.contracts["MorphoBlue"])
    oracle = chain.at("MorphoFeedOracle", params.oracle)
    rpc(w3, "evm_setAutomine", False)
    try:
        feed.functions.setAnswer(feed_answer).transact({"from": deployer, "gas": 200_000})
        call = morpho_contract.functions.liquidate(params.as_tuple(), borrower, 10**15, 0, b"")
        tx = call.transact({"from": localnet.liquidator.address, "gas": 1_000_000})
        rpc(w3, "evm_setNextBlockTimestamp", timestamp)
        rpc(w3, "evm_mine")
    finally:
        rpc(w3, "evm_setAutomine", True)
    receipt = w3.eth.get_transaction_receipt(tx)
    price = oracle.functions.price().call(block_identifier=receipt["blockNumber"])
    reason = ""
    if receipt["status"] == 0:
        try:
            call.call({"from": localnet.liquidator.address}, block_identifier=receipt["blockNumber"] - 1)
        except Exception as error:  # the revert reason, replayed on the state before the block
            reason = str(error)
    return receipt["status"], price, reason


def feed_answer_for(oracle_price_1e36: int, oracle_at: Callable[[int], int]) -> int:
    """The smallest WETH feed answer (1e8 USD) whose oracle price is at least `oracle_price_1e36`."""
    answer = max(1, oracle_price_1e36 // oracle_at(1))
    while oracle_at(answer) < oracle_price_1e36:
        answer += 1
    while answer > 1 and oracle_at(answer - 1) >= oracle_price_1e36:
        answer -= 1
    return answer


def test_liquidation_boundary_matches_morpho(localnet: Localnet, chain: LocalChain) -> None:
    w3, world = chain.w3, localnet.world
    deployer, borrower = localnet.accounts[0].address, localnet.accounts[BORROWER].address
    rng = random.Random(15)
    markets = {lltv: create_market(chain, world, "WETH", "USDC", lltv, deployer)
               for lltv in ENABLED_LLTVS_WAD}
    morpho_contract = chain.at("Morpho", world.contracts["MorphoBlue"])
    usdc = chain.at("MintableERC20", world.tokens["USDC"])
    chain.send(usdc.functions.mint(deployer, 10**14), deployer)
    chain.send(usdc.functions.approve(morpho_contract.address, 10**14), deployer)
    for market in markets.values():
        params = market_params(chain, world, market)
        chain.send(morpho_contract.functions.supply(params.as_tuple(), 2 * 10**13, 0, deployer, b""), deployer)
    feed = chain.at("LocalPriceFeed", world.feeds["WETH"])
    usdc_answer = chain.at("LocalPriceFeed", world.feeds["USDC"]).functions.latestAnswer().call()

    seen = []
    for _case in range(CASES):
        case = rpc(w3, "evm_snapshot")
        lltv = rng.choice(ENABLED_LLTVS_WAD)
        market = markets[lltv]
        oracle = chain.at("MorphoFeedOracle", market_params(chain, world, market).oracle)
        numerator, denominator = oracle.functions.scaleNumerator().call(), oracle.functions.scaleDenominator().call()

        def oracle_at(answer: int, numerator: int = numerator, denominator: int = denominator) -> int:
            return answer * numerator // (usdc_answer * denominator)

        # Given a random position opened at a random price, at a random health, and left to accrue for a while.
        price_answer = rng.randrange(500 * 10**8, 5_000 * 10**8)
        chain.send(feed.functions.setAnswer(price_answer), deployer)
        collateral = rng.randrange(10**16, 500 * 10**18)
        health = rng.uniform(1.02, 2.0)
        borrow = int(collateral * oracle_at(price_answer) // 10**36 * lltv // 10**18 / health)
        open_position(chain, world, market, borrower, collateral, borrow)
        rpc(w3, "evm_increaseTime", rng.randrange(0, 90 * 86_400))
        rpc(w3, "evm_mine")
        position, read_block, read_ts = read_position(w3, localnet, market, borrower)
        assert position.collateral_base_units == collateral

        # When the engine computes the lowest healthy price and the feed answer that gives it
        boundary = morpho.lowest_healthy_price_1e36(position)
        assert boundary is not None
        answer = feed_answer_for(boundary, oracle_at)
        at_boundary = rpc(w3, "evm_snapshot")

        # Then Morpho refuses to liquidate at it, and liquidates one feed unit below it.
        status, price, reason = liquidate_at(w3, chain, localnet, market, borrower, answer, read_ts)
        assert price >= boundary
        assert status == 0 and "position is healthy" in reason
        assert rpc(w3, "evm_revert", at_boundary) is True
        status, price, _ = liquidate_at(w3, chain, localnet, market, borrower, answer - 1, read_ts)
        assert price < boundary
        assert status == 1
        seen.append((lltv, morpho.health_factor_wad(position)))
        assert rpc(w3, "evm_revert", case) is True
        assert w3.eth.block_number <= read_block

    assert len({lltv for lltv, _ in seen}) > 1  # the random cases cover several markets

