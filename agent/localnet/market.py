"""Move the local world's market: set the price feeds and arbitrage the Uniswap v3 pools to the same price, the way
the real market would, so that oracle, pool and quotes agree."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING

from agent.localnet.chain import LocalChain
from agent.localnet.world import FEED_DECIMALS, MAX_UINT256, RESERVES, raw_pool_price, sqrt_price_x96

if TYPE_CHECKING:
    from agent.localnet import Localnet

ARBITRAGEUR = 7  # the dev account that trades the pools to the oracle price


def set_weth_price(chain: LocalChain, localnet: Localnet, price_usd: float) -> None:
    """Set the WETH feed to `price_usd` and swap every WETH/USDC pool to that price (a price-limited swap)."""
    deployer = localnet.accounts[0].address
    feed = chain.at("LocalPriceFeed", localnet.world.feeds["WETH"])
    chain.send(feed.functions.setAnswer(round(price_usd * 10**FEED_DECIMALS)), deployer)
    arb = localnet.accounts[ARBITRAGEUR].address
    router = chain.at("SwapRouter", localnet.world.contracts["SwapRouter"])
    tokens = {symbol: chain.at("MintableERC20", localnet.world.tokens[symbol]) for symbol in ("WETH", "USDC")}
    for token in tokens.values():
        if token.functions.allowance(arb, router.address).call() == 0:
            chain.send(token.functions.approve(router.address, MAX_UINT256), arb)
            chain.send(token.functions.mint(arb, 10**40), arb)
    params = {r.symbol: r for r in RESERVES}
    token0, token1 = sorted(("WETH", "USDC"), key=lambda s: int(localnet.world.tokens[s], 16))
    by_symbol = {**params, "WETH": replace(params["WETH"], price_usd=Fraction(price_usd).limit_denominator(10**9))}
    target = sqrt_price_x96(raw_pool_price(by_symbol[token0], by_symbol[token1]))
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
    for fee, pool_address in localnet.world.pools.items():
        current = chain.at("UniswapV3Pool", pool_address).functions.slot0().call()[0]
        if current == target:
            continue
        # Selling token0 lowers the price (token1 per token0); the swap stops at the limit price.
        token_in, token_out = (token0, token1) if target < current else (token1, token0)
        chain.send(router.functions.exactInputSingle((
            localnet.world.tokens[token_in], localnet.world.tokens[token_out], fee, arb, deadline, 10**36, 0, target,
        )), arb)

