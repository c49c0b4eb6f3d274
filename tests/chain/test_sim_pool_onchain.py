"""The backtest's pool against the real one: the simulated Uniswap v3 pool, laid out with the local world's 0.05%
WETH/USDC pool's price and active liquidity, quotes exactly what QuoterV2 quotes on chain for swaps that stay
inside the active range, both ways, from $10k to $1M."""

from __future__ import annotations

import pytest
from web3 import Web3

from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.model import Token
from agent.sim.pool import Pool


@pytest.mark.parametrize("notional_usd", [10_000, 100_000, 1_000_000])
def test_the_simulated_pool_quotes_what_quoter_v2_quotes(localnet: Localnet, chain: LocalChain,
                                                         notional_usd: int) -> None:
    world = localnet.world
    weth = Token("WETH", world.tokens["WETH"], 18)
    usdc = Token("USDC", world.tokens["USDC"], 6)
    token0, token1 = sorted((weth, usdc), key=lambda t: int(t.address, 16))
    onchain = chain.at("UniswapV3Pool", world.pools[500])
    root, tick = onchain.functions.slot0().call()[:2]
    liquidity = onchain.functions.liquidity().call()
    pool = Pool(token0, token1, 500, 10)
    # The active liquidity over a range around the price wide enough for these swaps (they cross no tick).
    pool.lay_out(root, [(tick // 10 * 10 - 20_000, tick // 10 * 10 + 20_000, liquidity)])
    quoter = chain.at("QuoterV2", world.contracts["QuoterV2"])
    for token_in, token_out, amount in ((weth, usdc, notional_usd * 10**18 // 2000),
                                        (usdc, weth, notional_usd * 10**6)):
        expected = quoter.functions.quoteExactInputSingle(
            (Web3.to_checksum_address(token_in.address), Web3.to_checksum_address(token_out.address), amount, 500,
             0)).call()[0]
        assert pool.quote(token_in, amount) == expected, (token_in.symbol, amount)
