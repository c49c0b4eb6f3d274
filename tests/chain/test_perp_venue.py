"""The reference perp market on the local chain: trades fill within their slippage bounds at the feed price plus
the skew's price impact and a fee, funding accrues with the skew exactly as specified, and a position below
maintenance margin is liquidated by another account."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from agent.adapters.erc20 import TokenRegistry
from agent.adapters.perps import LocalPerpMarket
from agent.chain.multicall import read_batch
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.world import MAX_UINT256, PERP_PARAMS
from agent.model import PerpPosition
from agent.risk import perps

WAD = 10**18
USDC = 10**6
TRADER, OTHER = 5, 6


@pytest.fixture
def perp(chain: LocalChain, localnet: Localnet) -> Contract:
    return chain.at("PerpMarket", localnet.world.contracts["PerpMarket"])


def fund(chain: LocalChain, localnet: Localnet, perp: Contract, index: int, margin_usdc: int) -> str:
    """Mint USDC to dev account `index` and deposit `margin_usdc` of it as margin; return its address."""
    account = localnet.accounts[index].address
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    chain.send(usdc.functions.mint(account, margin_usdc * USDC), account)
    chain.send(usdc.functions.approve(perp.address, MAX_UINT256), account)
    chain.send(perp.functions.depositMargin(margin_usdc * USDC), account)
    return account


def set_feed(chain: LocalChain, localnet: Localnet, price_usd: float) -> None:
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    chain.send(feed.functions.setAnswer(round(price_usd * 10**8)), localnet.accounts[0].address)


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def read_position(localnet: Localnet, chain: LocalChain, account: str) -> PerpPosition:
    adapter = LocalPerpMarket("localnet", account, localnet.world.contracts["PerpMarket"], "WETH", TokenRegistry())
    adapter.discover(chain.w3)
    block, results = read_batch(chain.w3, adapter.calls())
    (position,) = adapter.decode(results, block).positions
    assert isinstance(position, PerpPosition)
    return position


def test_perp_opens_grows_reduces_and_closes_within_slippage_bounds(
    localnet: Localnet, chain: LocalChain, perp: Contract
) -> None:
    trader = fund(chain, localnet, perp, TRADER, 20_000)
    fee_bps, scale = PERP_PARAMS["fee_bps"], PERP_PARAMS["skew_scale"]
    margin = 20_000 * WAD
    price = perp.functions.oraclePrice().call()

    skew = perp.functions.skew().call()  # the demo's perp hedge is short

    # Open 5 long: the fill is the feed price moved by the skew plus half the trade; a bound below it reverts.
    fill = perp.functions.fillPrice(5 * WAD).call()
    assert fill == price * (WAD + (skew + 5 * WAD // 2) * WAD // scale) // WAD
    assert perp.functions.fillPrice(5 * WAD).call() > perp.functions.fillPrice(WAD).call()
    with pytest.raises(ContractLogicError, match="fill price above acceptable"):
        chain.send(perp.functions.modifyPosition(5 * WAD, fill - 1), trader)
    chain.send(perp.functions.modifyPosition(5 * WAD, fill), trader)
    margin -= 5 * WAD * fill // WAD * fee_bps // 10_000
    size, entry, booked, _funding = perp.functions.position(trader).call()
    assert (size, entry, booked) == (5 * WAD, fill, margin)

    # Grow by 3: the entry is the size-weighted average fill.
    grow = perp.functions.fillPrice(3 * WAD).call()
    chain.send(perp.functions.modifyPosition(3 * WAD, grow), trader)
    margin -= 3 * WAD * grow // WAD * fee_bps // 10_000
    entry = (5 * WAD * fill + 3 * WAD * grow) // (8 * WAD)
    size, booked_entry, booked, funding = perp.functions.position(trader).call()
    assert (size, booked_entry) == (8 * WAD, entry)

    # Reduce by 4 after a rally: the P&L of the part closed is realised into the margin; a sell's bound is a floor.
    set_feed(chain, localnet, 2_100)
    reduce = perp.functions.fillPrice(-4 * WAD).call()
    with pytest.raises(ContractLogicError, match="fill price below acceptable"):
        chain.send(perp.functions.modifyPosition(-4 * WAD, reduce + 1), trader)
    funding = perp.functions.position(trader).call()[3]
    chain.send(perp.functions.modifyPosition(-4 * WAD, reduce), trader)
    size, kept_entry, booked, _ = perp.functions.position(trader).call()
    realised = 4 * (reduce - entry)
    fee = 4 * WAD * reduce // WAD * fee_bps // 10_000
    assert (size, kept_entry) == (4 * WAD, entry)
    assert abs(booked - (margin + realised - fee - funding)) <= 10**13  # funding of the trade's own block
    assert reduce > entry

    # Close the rest, then take every unit of margin out.
    close = perp.functions.fillPrice(-4 * WAD).call()
    chain.send(perp.functions.modifyPosition(-4 * WAD, close * 99 // 100), trader)
    size, kept_entry, left, _ = perp.functions.position(trader).call()
    assert (size, kept_entry) == (0, 0) and left > 20_000 * WAD  # the rally paid more than fees and funding
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    chain.send(perp.functions.withdrawMargin(left // 10**12), trader)
    assert usdc.functions.balanceOf(trader).call() == left // 10**12
    assert perp.functions.skew().call() == skew


def test_position_below_maintenance_margin_is_liquidated_by_another_account(
    localnet: Localnet, chain: LocalChain, perp: Contract
) -> None:
    trader = fund(chain, localnet, perp, TRADER, 1_000)
    liquidator = localnet.liquidator.address
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    chain.send(perp.functions.modifyPosition(4 * WAD, perp.functions.fillPrice(4 * WAD).call()), trader)
    onchain = perp.functions.liquidationPrice(trader).call() / WAD
    position = read_position(localnet, chain, trader)
    expected = perps.liquidation_price_usd(position)
    assert expected is not None and abs(onchain - expected) < 1e-6 * expected

    # Just above the liquidation price nobody can liquidate; just below, anyone can.
    skew = perp.functions.skew().call()
    set_feed(chain, localnet, onchain + 1)
    with pytest.raises(ContractLogicError, match="above maintenance"):
        chain.send(perp.functions.liquidate(trader), liquidator)
    set_feed(chain, localnet, onchain - 1)
    equity = perp.functions.equity(trader).call()
    notional = 4 * WAD * perp.functions.oraclePrice().call() // WAD
    assert 0 < equity < notional * PERP_PARAMS["maintenance_margin_fraction"] // WAD
    before = usdc.functions.balanceOf(liquidator).call()
    chain.send(perp.functions.liquidate(trader), liquidator)

    reward = usdc.functions.balanceOf(liquidator).call() - before
    assert reward == min(notional * PERP_PARAMS["liquidation_reward_bps"] // 10_000, equity) // 10**12
    assert perp.functions.position(trader).call()[:3] == [0, 0, 0]
    assert perp.functions.skew().call() == skew - 4 * WAD


def test_funding_accrues_with_the_skew_as_specified(localnet: Localnet, chain: LocalChain, perp: Contract) -> None:
    short_side = fund(chain, localnet, perp, TRADER, 10_000)
    long_side = fund(chain, localnet, perp, OTHER, 10_000)
    seeded = perp.functions.skew().call()  # the demo's own 5 WETH short
    chain.send(perp.functions.modifyPosition(-10 * WAD, 0), short_side)
    chain.send(perp.functions.modifyPosition(4 * WAD, 10**30), long_side)
    skew = perp.functions.skew().call()
    assert skew == seeded - 6 * WAD
    max_rate, scale = PERP_PARAMS["max_funding_rate_per_day"], PERP_PARAMS["skew_scale"]
    assert perp.functions.fundingRatePerSecond().call() == _toward_zero(_toward_zero(skew * max_rate, scale), 86_400)
    start = perp.functions.lastFundingTime().call()
    assert [perp.functions.position(a).call()[3] for a in (short_side, long_side)] == [0, 0]

    rpc(chain.w3, "evm_increaseTime", 86_400)
    rpc(chain.w3, "evm_mine")
    elapsed = chain.w3.eth.get_block("latest")["timestamp"] - start
    price = perp.functions.oraclePrice().call()

    # The index moves by skew · max rate · price · time / (scale · 1 day), in one division (toward zero);
    # each position owes its size times that move: the short skew pays, so the short owes and the long receives.
    moved = _toward_zero(skew * max_rate * price * elapsed, scale * 86_400 * WAD)
    owed = [perp.functions.position(a).call()[3] for a in (short_side, long_side)]
    assert owed == [_toward_zero(-10 * WAD * moved, WAD), _toward_zero(4 * WAD * moved, WAD)]
    # A day at a skew of −11 WETH of 100,000 (0.011%/day): $2.20 from the 10 WETH short, $0.88 to the 4 WETH long.
    assert owed[0] / WAD == pytest.approx(10 * 2_000 * 11 / 100_000 * elapsed / 86_400, rel=1e-9)
    assert owed[1] / WAD == pytest.approx(-4 * 2_000 * 11 / 100_000 * elapsed / 86_400, rel=1e-9)

    # The adapter reports the margin net of what is owed, and the rate per hour a long pays.
    position = read_position(localnet, chain, short_side)
    assert position.margin_usd == pytest.approx((perp.functions.position(short_side).call()[2] - owed[0]) / WAD)
    assert position.funding_rate_per_hour == pytest.approx(skew / scale * max_rate / WAD / 24, rel=1e-6)
    # Settled into the margin by the next trade: what was owed leaves the margin.
    margin = perp.functions.position(short_side).call()[2]
    chain.send(perp.functions.modifyPosition(WAD, 10**30), short_side)
    fill = perp.functions.position(short_side).call()
    assert fill[3] == 0 and margin - fill[2] > owed[0]  # the funding, plus the fee and the P&L of the part closed


def _toward_zero(numerator: int, denominator: int) -> int:
    """Integer division as Solidity does it: rounded toward zero."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient
