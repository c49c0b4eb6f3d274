"""The local world runs the real protocols: Aave v3 lends and liquidates, Uniswap v3 swaps, feeds move prices."""

from __future__ import annotations

import pytest
from web3 import Web3

from agent.chain.multicall import MULTICALL3_ADDRESS
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.readback import aave_account, lp_ranges
from agent.localnet.world import MAX_UINT256, weth_price_at_tick

VARIABLE = 2
WAD = 10**18


def token(chain: LocalChain, localnet: Localnet, symbol: str):
    return chain.at("MintableERC20", localnet.world.tokens[symbol])


def set_price(chain: LocalChain, localnet: Localnet, symbol: str, usd: float) -> None:
    feed = chain.at("LocalPriceFeed", localnet.world.feeds[symbol])
    chain.send(feed.functions.setAnswer(int(usd * 10**8)), localnet.accounts[0].address)


def test_demo_portfolios_are_seeded_with_their_health_factors(localnet: Localnet, chain: LocalChain) -> None:
    pool = localnet.world.contracts["Pool"]
    long_data = aave_account(chain, pool, localnet.demo_accounts["leveraged-long"])
    lp_data = aave_account(chain, pool, localnet.demo_accounts["delta-neutral-lp"])

    assert 1.65 < long_data.health_factor_wad / WAD < 1.75
    assert 1.75 < lp_data.health_factor_wad / WAD < 1.9
    ranges = lp_ranges(chain, localnet.world.contracts["NonfungiblePositionManager"],
                       localnet.demo_accounts["delta-neutral-lp"])
    assert len(ranges) == 1 and ranges[0].liquidity > 0
    low, high = sorted(weth_price_at_tick(t, localnet.world) for t in (ranges[0].tick_lower, ranges[0].tick_upper))
    assert low < 2000 < high


def test_supply_borrow_repay_withdraw_move_account_data(localnet: Localnet, chain: LocalChain) -> None:
    # given a fresh account with 10 WETH
    user = localnet.accounts[9].address
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    weth, usdc = token(chain, localnet, "WETH"), token(chain, localnet, "USDC")
    chain.send(weth.functions.mint(user, 10 * WAD), user)
    for t in (weth, usdc):
        chain.send(t.functions.approve(pool.address, MAX_UINT256), user)

    # when it supplies, then the collateral is 10 × $2,000 in the 1e8 base currency and there is no debt
    chain.send(pool.functions.supply(weth.address, 10 * WAD, user, 0), user)
    supplied = aave_account(chain, pool.address, user)
    assert supplied.total_collateral_base == 20_000 * 10**8
    assert supplied.total_debt_base == 0
    assert supplied.health_factor_wad == MAX_UINT256

    # when it borrows 8,000 USDC, HF = 20,000 · 0.825 / 8,000
    chain.send(pool.functions.borrow(usdc.address, 8_000 * 10**6, VARIABLE, 0, user), user)
    borrowed = aave_account(chain, pool.address, user)
    assert borrowed.total_debt_base == pytest.approx(8_000 * 10**8, rel=1e-6)
    assert borrowed.health_factor_wad / WAD == pytest.approx(20_000 * 0.825 / 8_000, rel=1e-6)
    assert usdc.functions.balanceOf(user).call() == 8_000 * 10**6

    # when it repays everything (a little interest accrued: mint some) and withdraws, the account is empty
    chain.send(usdc.functions.mint(user, 10 * 10**6), user)
    chain.send(pool.functions.repay(usdc.address, MAX_UINT256, VARIABLE, user), user)
    assert aave_account(chain, pool.address, user).total_debt_base == 0
    chain.send(pool.functions.withdraw(weth.address, MAX_UINT256, user), user)
    emptied = aave_account(chain, pool.address, user)
    assert emptied.total_collateral_base == 0
    assert weth.functions.balanceOf(user).call() >= 10 * WAD


def test_feed_update_changes_aave_asset_price_and_health_factor(localnet: Localnet, chain: LocalChain) -> None:
    oracle = chain.at("AaveOracle", localnet.world.contracts["AaveOracle"])
    weth = localnet.world.tokens["WETH"]
    owner = localnet.demo_accounts["leveraged-long"]
    before = aave_account(chain, localnet.world.contracts["Pool"], owner)

    set_price(chain, localnet, "WETH", 1_500)

    assert oracle.functions.getAssetPrice(weth).call() == 1_500 * 10**8
    after = aave_account(chain, localnet.world.contracts["Pool"], owner)
    assert after.health_factor_wad == pytest.approx(before.health_factor_wad * 1_500 / 2_000, rel=1e-4)


def test_swap_on_uniswap_pool_moves_its_price(localnet: Localnet, chain: LocalChain) -> None:
    trader = localnet.accounts[6].address
    router = chain.at("SwapRouter", localnet.world.contracts["SwapRouter"])
    pool = chain.at("UniswapV3Pool", localnet.world.pools[500])
    weth, usdc = token(chain, localnet, "WETH"), token(chain, localnet, "USDC")
    tick_before = pool.functions.slot0().call()[1]
    assert weth_price_at_tick(tick_before, localnet.world) == pytest.approx(2_000, rel=1e-3)

    # buy WETH with 20,000,000 USDC: the WETH price rises
    chain.send(usdc.functions.mint(trader, 20_000_000 * 10**6), trader)
    chain.send(usdc.functions.approve(router.address, MAX_UINT256), trader)
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
    chain.send(router.functions.exactInputSingle(
        (usdc.address, weth.address, 500, trader, deadline, 20_000_000 * 10**6, 0, 0)), trader)

    tick_after = pool.functions.slot0().call()[1]
    assert weth_price_at_tick(tick_after, localnet.world) > 2_000 * 1.05
    # the average price paid lies above the start price: fewer than 10,000 WETH for $20M
    assert 8_000 * WAD < weth.functions.balanceOf(trader).call() < 10_000 * WAD


def test_liquidator_liquidates_leveraged_long_after_a_crash(localnet: Localnet, chain: LocalChain) -> None:
    pool = chain.at("Pool", localnet.world.contracts["Pool"])
    owner = localnet.demo_accounts["leveraged-long"]
    liquidator = localnet.liquidator.address
    weth, usdc = token(chain, localnet, "WETH"), token(chain, localnet, "USDC")
    # liquidation price = 97,000 / (100 · 0.825) ≈ $1,175.76
    set_price(chain, localnet, "WETH", 1_200)
    assert aave_account(chain, pool.address, owner).health_factor_wad > WAD
    with pytest.raises(Exception, match="45"):  # Errors.HEALTH_FACTOR_NOT_BELOW_THRESHOLD
        pool.functions.liquidationCall(weth.address, usdc.address, owner, MAX_UINT256, False).call(
            {"from": liquidator})

    set_price(chain, localnet, "WETH", 1_150)  # HF ≈ 0.978: liquidatable, above the 0.95 full-close line
    before = aave_account(chain, pool.address, owner)
    assert before.health_factor_wad < WAD
    weth_before = weth.functions.balanceOf(liquidator).call()
    chain.send(pool.functions.liquidationCall(weth.address, usdc.address, owner, MAX_UINT256, False), liquidator)

    after = aave_account(chain, pool.address, owner)
    # HF above 0.95: the close factor is 50% of the debt
    assert after.total_debt_base == pytest.approx(before.total_debt_base / 2, rel=1e-4)
    seized = weth.functions.balanceOf(liquidator).call() - weth_before
    # collateral seized = debt covered × (1 + 5% bonus) / price, less the protocol's share of the bonus
    covered_usd = (before.total_debt_base - after.total_debt_base) / 10**8
    assert seized / WAD == pytest.approx(covered_usd * 1.05 / 1_150, rel=0.01)


def test_multicall3_answers_at_the_canonical_address(localnet: Localnet, chain: LocalChain) -> None:
    reader = chain.at("BatchReader", MULTICALL3_ADDRESS)
    weth = token(chain, localnet, "WETH")
    owner = localnet.demo_accounts["leveraged-long"]
    calls = [
        (MULTICALL3_ADDRESS, False, reader.encode_abi("getBlockNumber", [])),
        (weth.address, False, weth.encode_abi("decimals", [])),
        (weth.address, True, b"\x12\x34\x56\x78"),  # no such function: allowed to fail
    ]
    results = reader.functions.aggregate3(calls).call()
    assert int.from_bytes(results[0][1], "big") == chain.w3.eth.block_number
    assert int.from_bytes(results[1][1], "big") == 18
    assert results[2][0] is False
    assert Web3.to_checksum_address(owner) == owner


def test_market_move_sets_feed_and_arbitrages_every_pool_to_the_price(localnet: Localnet, chain: LocalChain) -> None:
    from agent.localnet.market import set_weth_price

    oracle = chain.at("AaveOracle", localnet.world.contracts["AaveOracle"])
    for price in (1_500.0, 2_600.0):
        set_weth_price(chain, localnet, price)
        assert oracle.functions.getAssetPrice(localnet.world.tokens["WETH"]).call() == price * 10**8
        for pool in localnet.world.pools.values():
            tick = chain.at("UniswapV3Pool", pool).functions.slot0().call()[1]
            assert weth_price_at_tick(tick, localnet.world) == pytest.approx(price, rel=2e-4)
