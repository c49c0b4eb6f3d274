"""The reference options market on the local chain: its price is Black-Scholes for its own inputs to 1e-6
relative, trades respect their cost and proceeds bounds, and an expired series settles at the feed price."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.seed import option_series_id
from agent.localnet.world import MAX_UINT256, OPTION_SERIES, OPTIONS_FEE_BPS
from agent.risk.greeks import black_scholes

WAD = 10**18
USDC = 10**6
TRADER = 5


@pytest.fixture
def options(chain: LocalChain, localnet: Localnet) -> Contract:
    return chain.at("OptionsMarket", localnet.world.contracts["OptionsMarket"])


def funded_trader(chain: LocalChain, localnet: Localnet, options: Contract, usdc_amount: int) -> str:
    account = localnet.accounts[TRADER].address
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    chain.send(usdc.functions.mint(account, usdc_amount * USDC), account)
    chain.send(usdc.functions.approve(options.address, MAX_UINT256), account)
    return account


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def relative_errors(options: Contract) -> list[float]:
    """The venue's mark of every listed series against black_scholes for the inputs the venue reports (relative;
    a price under a millionth of a dollar is held to 1e-12 USD absolute instead)."""
    errors = []
    for series_id in range(options.functions.seriesCount().call()):
        is_call = options.functions.series(series_id).call()[0]
        price, spot, strike, t_years, vol, rate = (x / WAD for x in options.functions.quote(series_id).call())
        expected = float(black_scholes(is_call, spot, strike, t_years, vol, rate).price)
        if expected < 1e-6:
            assert abs(price - expected) < 1e-12
            continue
        errors.append(abs(price - expected) / expected)
    return errors


def test_venue_price_equals_black_scholes_for_its_inputs(
    localnet: Localnet, chain: LocalChain, options: Contract
) -> None:
    count = sum(len(smile) for smile in OPTION_SERIES.values()) * 2
    assert options.functions.seriesCount().call() == count
    assert max(relative_errors(options)) < 1e-6

    # With a rate, other vols, a spot far from the strikes and hours to go, still to 1e-6.
    owner = localnet.accounts[0].address
    chain.send(options.functions.setRate(5 * WAD // 100), owner)
    for series_id in range(count):
        chain.send(options.functions.setVol(series_id, (series_id + 1) * WAD // 10), owner)
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    chain.send(feed.functions.setAnswer(2_437_12345678), owner)
    rpc(chain.w3, "evm_increaseTime", 7 * 86_400 - 3 * 3600)
    rpc(chain.w3, "evm_mine")
    assert max(relative_errors(options)) < 1e-6


def test_options_are_bought_and_sold_within_their_bounds(
    localnet: Localnet, chain: LocalChain, options: Contract
) -> None:
    trader = funded_trader(chain, localnet, options, 50_000)
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    series_id = option_series_id(chain, localnet.world, True, 2_000, 30)
    amount = 3 * WAD
    mark = options.functions.quote(series_id).call()[0]
    cost = options.functions.quoteBuy(series_id, amount).call()
    premium = mark * amount // WAD
    assert cost == -(-(premium + premium * OPTIONS_FEE_BPS // 10_000) // 10**12)

    # The quote is taken at the latest block and the trade fills in the next one, a second or so closer to expiry:
    # the price may differ by a few base units, so bounds a hair away from the quote are what a trader sends.
    with pytest.raises(ContractLogicError, match="cost above maxCost"):
        chain.send(options.functions.buy(series_id, amount, cost * 99 // 100), trader)
    before = usdc.functions.balanceOf(trader).call()
    chain.send(options.functions.buy(series_id, amount, cost + cost // 10**5), trader)
    paid = before - usdc.functions.balanceOf(trader).call()
    assert paid == pytest.approx(cost, rel=1e-5)
    assert options.functions.balanceOf(series_id, trader).call() == amount

    proceeds = options.functions.quoteSell(series_id, WAD).call()
    with pytest.raises(ContractLogicError, match="proceeds below minProceeds"):
        chain.send(options.functions.sell(series_id, WAD, proceeds * 101 // 100), trader)
    with pytest.raises(ContractLogicError, match="sells more than held"):
        chain.send(options.functions.sell(series_id, 4 * WAD, 0), trader)
    before = usdc.functions.balanceOf(trader).call()
    chain.send(options.functions.sell(series_id, WAD, proceeds - proceeds // 10**5), trader)
    received = usdc.functions.balanceOf(trader).call() - before
    assert received == pytest.approx(proceeds, rel=1e-5)
    assert options.functions.balanceOf(series_id, trader).call() == 2 * WAD
    # Bought and sold back at the same mark: the round trip costs the fee both ways.
    assert paid / 3 - received == pytest.approx(2 * mark / 1e12 * OPTIONS_FEE_BPS / 10_000, rel=1e-3)


def test_expired_series_settles_at_the_feed_price(localnet: Localnet, chain: LocalChain, options: Contract) -> None:
    trader = funded_trader(chain, localnet, options, 50_000)
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    call = option_series_id(chain, localnet.world, True, 2_000, 7)
    put = option_series_id(chain, localnet.world, False, 2_200, 7)
    for series_id in (call, put):
        chain.send(options.functions.buy(series_id, 2 * WAD, 10**12), trader)
    with pytest.raises(ContractLogicError, match="not expired"):
        chain.send(options.functions.settle(call), trader)

    expiry = options.functions.series(call).call()[2]
    rpc(chain.w3, "anvil_setNextBlockTimestamp", expiry + 60)
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    chain.send(feed.functions.setAnswer(2_123_45000000), localnet.accounts[0].address)
    with pytest.raises(ContractLogicError, match="series expired"):
        chain.send(options.functions.buy(call, WAD, 10**12), trader)
    for series_id in (call, put):
        chain.send(options.functions.settle(series_id), localnet.liquidator.address)  # anyone may settle
        assert options.functions.series(series_id).call()[4:] == [True, 2_123_45 * 10**16]

    # The feed moves on; holders are paid at the settlement price: 2 × (2,123.45 − 2,000) and 2 × (2,200 − 2,123.45).
    chain.send(feed.functions.setAnswer(1_500 * 10**8), localnet.accounts[0].address)
    before = usdc.functions.balanceOf(trader).call()
    chain.send(options.functions.redeem(call), trader)
    chain.send(options.functions.redeem(put), trader)
    paid = usdc.functions.balanceOf(trader).call() - before
    assert paid == 2 * 123_450_000 + 2 * 76_550_000
    assert options.functions.balanceOf(call, trader).call() == 0
    assert options.functions.quote(call).call()[:2] == [123_45 * 10**16, 2_123_45 * 10**16]
