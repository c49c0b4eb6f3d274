"""The Morpho Blue adapter on the local chain: the cross-protocol snapshot holds the Morpho position with its market's
totals accrued to the block, a market the policy names wrongly is one clear error, and an oracle that cannot answer
is a data problem, not a guessed position."""

from __future__ import annotations

from typing import Any

import pytest
from web3.exceptions import ContractLogicError

from agent.adapters.erc20 import TokenRegistry
from agent.adapters.morpho_blue import MorphoBlue
from agent.chain.multicall import read_batch
from agent.errors import UserInputError
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.morpho import market_params, open_position
from agent.model import MorphoPosition
from agent.risk import morpho

NAME = "cross-protocol"


def adapter(localnet: Localnet, markets: list[str]) -> MorphoBlue:
    return MorphoBlue("localnet", localnet.demo_accounts[NAME], localnet.world.contracts["MorphoBlue"], markets,
                      TokenRegistry())


def test_the_position_is_read_with_interest_accrued_to_the_block(localnet: Localnet, chain: LocalChain) -> None:
    w3, market = chain.w3, localnet.world.morpho_markets["WETH/USDC"]
    reader = adapter(localnet, [market])
    reader.discover(w3)
    morpho_contract = chain.at("Morpho", localnet.world.contracts["MorphoBlue"])
    stored = morpho_contract.functions.market(bytes.fromhex(market[2:])).call()
    w3.provider.make_request("evm_increaseTime", [30 * 86_400])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    block, results = read_batch(w3, reader.calls())
    (position,) = reader.decode(results, block).positions

    assert isinstance(position, MorphoPosition)
    assert (position.collateral_token.symbol, position.loan_token.symbol) == ("WETH", "USDC")
    assert 64 * 10**18 < position.collateral_base_units < 66 * 10**18  # 30 WETH and the looped 69,730 USDC
    # a month of interest at 2% + 10% × utilisation (0.27%): the totals grew, and the storage did not
    assert position.total_borrow_assets > stored[2] * (1 + 0.02 * 30 / 365)
    assert morpho_contract.functions.market(bytes.fromhex(market[2:])).call() == stored
    assert position.flash_liquidity_base_units == 20_000_000 * 10**6 - 69_730 * 10**6
    assert position.reported_health_factor_wad == morpho.health_factor_wad(position) < 16 * 10**17


def test_a_market_morpho_does_not_know_is_one_line(localnet: Localnet, chain: LocalChain) -> None:
    unknown = "0x" + "12" * 32
    with pytest.raises(UserInputError, match=f"has no market {unknown}$"):
        adapter(localnet, [unknown]).discover(chain.w3)


def test_an_oracle_that_reverts_is_a_data_problem(localnet: Localnet, chain: LocalChain) -> None:
    reader = adapter(localnet, [localnet.world.morpho_markets["WETH/USDC"]])
    reader.discover(chain.w3)
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    chain.send(feed.functions.setAnswer(0), localnet.accounts[0].address)  # the oracle refuses a zero answer

    block, results = read_batch(chain.w3, reader.calls())
    reading = reader.decode(results, block)

    assert reading.positions == ()
    assert [(p.source, p.kind) for p in reading.problems] == [("morpho_blue:WETH/USDC:price", "failed_call")]


def test_the_wsteth_weth_market_lends_up_to_the_engines_maximum_and_not_a_unit_more(
    localnet: Localnet, chain: LocalChain
) -> None:
    # Given a WSTETH-collateral position on the LST market (its oracle: the WSTETH and WETH feeds)
    world, borrower = localnet.world, localnet.accounts[8].address
    market = world.morpho_markets["WSTETH/WETH"]
    open_position(chain, world, market, borrower, 10 * 10**18, 10**18)
    reader = MorphoBlue("localnet", borrower, world.contracts["MorphoBlue"], [market], TokenRegistry())
    reader.discover(chain.w3)
    block, results = read_batch(chain.w3, reader.calls())
    (position,) = reader.decode(results, block).positions
    assert isinstance(position, MorphoPosition)
    assert (position.collateral_token.symbol, position.loan_token.symbol) == ("WSTETH", "WETH")

    # When it asks, at the block the engine read, for the rest of what the engine says it may borrow, and one more
    room = morpho.max_borrow_base_units(position) - morpho.borrowed_base_units(position)
    contract = chain.at("Morpho", world.contracts["MorphoBlue"])
    params = market_params(chain, world, market).as_tuple()

    def borrow(amount: int) -> Any:
        return contract.functions.borrow(params, amount, 0, borrower, borrower).call({"from": borrower},
                                                                                      block_identifier=block.number)

    # Then Morpho lends exactly the engine's maximum (10 WSTETH at the feeds' ratio times the 94.5% LLTV)
    with pytest.raises(ContractLogicError, match="insufficient collateral"):
        borrow(room + 1)
    assets, _shares = borrow(room)
    assert assets == room and morpho.borrowed_base_units(position) + room > 10 * 10**18
