"""The liquid staking token of an LST book (WSTETH, pegged to WETH) in the simulated market: its WSTETH/WETH pool,
full range, holding `market.lst.pool_usd` at the first bar (its liquidity then fixed in tokens), which
arbitrageurs keep at each bar's ratio (`sim.conditions`: the staking yield less the depeg path); the keeper's
deleverage swaps WSTETH for WETH against it."""

from __future__ import annotations

import math

from agent.model import SwapQuote
from agent.planner.costs import GAS_UNITS
from agent.sim.pool import Pool, liquidity_for_usd
from agent.sim.portfolio import SIM_CHAIN, TOKENS, Lst

LST = "WSTETH"
PEG = "WETH"
TICK_SPACING = 10


def lst_root(pool: Pool, ratio: float) -> int:
    """The pool's sqrt price (Q96) at which one WSTETH is worth `ratio` WETH."""
    raw = ratio if pool.token0.symbol == LST else 1.0 / ratio
    return int(math.sqrt(raw * 10.0 ** (pool.token1.decimals - pool.token0.decimals)) * (1 << 96))


def lst_pool(spec: Lst | None, peg_price_usd: float) -> Pool:
    """The WSTETH/WETH pool at the first bar, with WETH at `peg_price_usd`."""
    assert spec is not None
    token0, token1 = sorted((TOKENS[LST], TOKENS[PEG]), key=lambda t: int(t.address, 16))
    pool = Pool(token0, token1, spec.pool_fee_pips, TICK_SPACING)
    root = lst_root(pool, spec.ratio)
    prices = {LST: peg_price_usd * spec.ratio, PEG: peg_price_usd}
    lower, upper = pool.full_range()
    liquidity = liquidity_for_usd(root, lower, upper, spec.pool_usd, prices[token0.symbol], prices[token1.symbol],
                                  token0, token1)
    pool.lay_out(root, [(lower, upper, liquidity)])
    return pool


def lst_quotes(pool: Pool, prices_usd: dict[str, float], notionals_usd: tuple[float, ...]) -> tuple[SwapQuote, ...]:
    """QuoterV2's answers from the LST pool at the reader's notional sizes, both ways."""
    out = []
    for notional in notionals_usd:
        for token_in, token_out in ((TOKENS[LST], TOKENS[PEG]), (TOKENS[PEG], TOKENS[LST])):
            amount_in = round(notional / prices_usd[token_in.symbol] * 10**token_in.decimals)
            out.append(SwapQuote(SIM_CHAIN, token_in, token_out, pool.fee_pips, amount_in,
                                 pool.quote(token_in, amount_in), GAS_UNITS["swap"]))
    return tuple(out)

