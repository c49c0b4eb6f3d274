"""Move the local world's market: set the price feeds and arbitrage the Uniswap v3 pools to the same price, the way
the real market would, so that oracle, pool and quotes agree."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING

from agent.localnet.chain import LocalChain
from agent.localnet.world import (
    FEED_DECIMALS,
    LST_POOL_FEE,
    MAX_UINT256,
    RESERVES,
    raw_pool_price,
    sqrt_price_x96,
)

if TYPE_CHECKING:
    from agent.localnet import Localnet

ARBITRAGEUR = 7  # the dev account that trades the pools to the oracle price


def set_weth_price(chain: LocalChain, localnet: Localnet, price_usd: float, updated_at: int | None = None) -> None:
    """Set the WETH feed to `price_usd` and swap every WETH/USDC pool to that price (a price-limited swap); the
    WSTETH feed keeps its ratio to WETH (an ETH move is not a depeg). With `updated_at` (unix seconds), the feeds
    say they were updated then (an old time: a stale oracle)."""
    ratio = feed_price_usd(chain, localnet, "WSTETH") / feed_price_usd(chain, localnet, "WETH")
    _set_feed(chain, localnet, "WETH", price_usd, updated_at)
    _set_feed(chain, localnet, "WSTETH", price_usd * ratio, updated_at)
    for fee, pool_address in localnet.world.pools.items():
        _swap_pool_to(chain, localnet, pool_address, ("WETH", "USDC"), fee, {"WETH": price_usd, "USDC": 1.0})


def set_lst_depeg(chain: LocalChain, localnet: Localnet, depeg: float) -> None:
    """Set the WSTETH feed `depeg` (0.08: 8%) below its issue ratio to WETH's feed and swap the WSTETH/WETH pool to
    the same ratio: the market of a depegged liquid staking token."""
    params = {r.symbol: r for r in RESERVES}
    weth = feed_price_usd(chain, localnet, "WETH")
    price = weth * float(params["WSTETH"].price_usd / params["WETH"].price_usd) * (1.0 - depeg)
    _set_feed(chain, localnet, "WSTETH", price)
    pool = localnet.world.contracts[f"UniswapV3Pool:WSTETH/WETH:{LST_POOL_FEE}"]
    _swap_pool_to(chain, localnet, pool, ("WSTETH", "WETH"), LST_POOL_FEE, {"WSTETH": price, "WETH": weth})


def feed_price_usd(chain: LocalChain, localnet: Localnet, symbol: str) -> float:
    """Return the answer of `symbol`'s feed in USD."""
    feed = chain.at("LocalPriceFeed", localnet.world.feeds[symbol])
    return int(feed.functions.latestAnswer().call()) / 10**FEED_DECIMALS


def _set_feed(chain: LocalChain, localnet: Localnet, symbol: str, price_usd: float,
              updated_at: int | None = None) -> None:
    feed = chain.at("LocalPriceFeed", localnet.world.feeds[symbol])
    answer = round(price_usd * 10**FEED_DECIMALS)
    call = feed.functions.setAnswer(answer) if updated_at is None else feed.functions.setAnswerAt(answer, updated_at)
    chain.send(call, localnet.accounts[0].address)


def _swap_pool_to(chain: LocalChain, localnet: Localnet, pool_address: str, pair: tuple[str, str], fee: int,
                  prices_usd: dict[str, float]) -> None:
    """Trade the pool of `pair` from the arbitrageur's account until its price is the one `prices_usd` implies."""
    arb = localnet.accounts[ARBITRAGEUR].address
    router = chain.at("SwapRouter", localnet.world.contracts["SwapRouter"])
    for symbol in pair:
        token = chain.at("MintableERC20", localnet.world.tokens[symbol])
        if token.functions.allowance(arb, router.address).call() == 0:
            chain.send(token.functions.approve(router.address, MAX_UINT256), arb)
            chain.send(token.functions.mint(arb, 10**40), arb)
    params = {r.symbol: r for r in RESERVES}
    by_symbol = {s: replace(params[s], price_usd=Fraction(prices_usd[s]).limit_denominator(10**9)) for s in pair}
    token0, token1 = sorted(pair, key=lambda s: int(localnet.world.tokens[s], 16))
    target = sqrt_price_x96(raw_pool_price(by_symbol[token0], by_symbol[token1]))
    current = chain.at("UniswapV3Pool", pool_address).functions.slot0().call()[0]
    if current == target:
        return
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
    # Selling token0 lowers the price (token1 per token0); the swap stops at the limit price.
    token_in, token_out = (token0, token1) if target < current else (token1, token0)
    chain.send(router.functions.exactInputSingle((
        localnet.world.tokens[token_in], localnet.world.tokens[token_out], fee, arb, deadline, 10**36, 0, target,
    )), arb)
