"""Uniswap v3: the account's NonfungiblePositionManager positions with their pools' state and uncollected fees,
and QuoterV2 quotes for the planner's slippage estimates — all in the chain's one batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from web3 import Web3

from agent.adapters import failed_calls
from agent.adapters.erc20 import TokenRegistry
from agent.chain.abi import load_abi
from agent.chain.multicall import Block, Call, CallResult, read_batch
from agent.model import DataProblem, LpPosition, Reading, SwapQuote, Token

MANAGER = load_abi("uniswap_v3", "NonfungiblePositionManager")
POOL = load_abi("uniswap_v3", "UniswapV3Pool")
FACTORY = load_abi("uniswap_v3", "UniswapV3Factory")
QUOTER = load_abi("uniswap_v3", "QuoterV2")
Q128 = 2**128
U256 = 2**256
QUOTE_FEES = (500, 3000)


@dataclass(frozen=True)
class _Position:
    token_id: int
    token0: Token
    token1: Token
    fee_pips: int
    tick_lower: int
    tick_upper: int
    pool: str


@dataclass(frozen=True)
class QuoteRequest:
    """A swap to quote each cycle: `amount_in_base_units` of `token_in` for `token_out` at pool fee `fee_pips`."""

    token_in: Token
    token_out: Token
    fee_pips: int
    amount_in_base_units: int


def uncollected_fees(
    liquidity: int, tick: int, tick_lower: int, tick_upper: int, global_x128: int, lower_outside_x128: int,
    upper_outside_x128: int, inside_last_x128: int,
) -> int:
    """Return the fees (base units) a position earned since its last update, as the pool would credit them.

    Fee growth is modular arithmetic in Q128 (it wraps, as the pool's unchecked math does).
    """
    below = lower_outside_x128 if tick >= tick_lower else (global_x128 - lower_outside_x128) % U256
    above = upper_outside_x128 if tick < tick_upper else (global_x128 - upper_outside_x128) % U256
    inside = (global_x128 - below - above) % U256
    return liquidity * ((inside - inside_last_x128) % U256) // Q128


class UniswapV3:
    """The account's LP positions in one NonfungiblePositionManager, and quotes from one QuoterV2."""

    name = "uniswap_v3"

    def __init__(self, chain: str, owner: str, position_manager: str, quoter: str, tokens: TokenRegistry) -> None:
        self.chain = chain
        self.owner = Web3.to_checksum_address(owner)
        self.manager = Web3.to_checksum_address(position_manager)
        self.quoter = Web3.to_checksum_address(quoter)
        self.token_registry = tokens
        self.factory = ""
        self.positions: tuple[_Position, ...] = ()
        self.quote_requests: tuple[QuoteRequest, ...] = ()

    def discover(self, w3: Web3) -> None:
        """Find the owner's position NFTs with their tokens, ticks and pools."""
        _b, (factory, count) = read_batch(w3, [
            Call("uniswap_v3:factory", self.manager, MANAGER.fn("factory"), allow_failure=False),
            Call("uniswap_v3:balanceOf", self.manager, MANAGER.fn("balanceOf"), (self.owner,), allow_failure=False),
        ])
        self.factory = Web3.to_checksum_address(factory.value)
        _b, ids = read_batch(w3, [
            Call(f"uniswap_v3:token:{i}", self.manager, MANAGER.fn("tokenOfOwnerByIndex"), (self.owner, i), False)
            for i in range(count.value)
        ])
        _b, details = read_batch(w3, [
            Call(f"uniswap_v3:position:{r.value}", self.manager, MANAGER.fn("positions"), (r.value,), False)
            for r in ids
        ])
        fields = [d.value for d in details]
        pools = self.pools(w3, [(f[2], f[3], f[4]) for f in fields])
        tokens = self.token_registry.resolve(w3, {a for f in fields for a in f[2:4]})
        self.positions = tuple(
            _Position(r.value, tokens[Web3.to_checksum_address(f[2])], tokens[Web3.to_checksum_address(f[3])], f[4],
                      f[5], f[6], pool)
            for r, f, pool in zip(ids, fields, pools, strict=True)
        )

    def pools(self, w3: Web3, keys: Sequence[tuple[str, str, int]]) -> list[str]:
        """Return the pool address of each (token, token, fee) from the factory (the zero address where none)."""
        _b, results = read_batch(w3, [
            Call("uniswap_v3:getPool", self.factory, FACTORY.fn("getPool"), key, False) for key in keys
        ])
        return [Web3.to_checksum_address(r.value) for r in results]

    def position_count_changed(self, results: Sequence[CallResult]) -> bool:
        """Whether the owner's NFT count differs from the one discovered (rediscover before the next cycle)."""
        return bool(results and results[0].ok and results[0].value != len(self.positions))

    def calls(self) -> list[Call]:
        calls = [Call("uniswap_v3:balanceOf", self.manager, MANAGER.fn("balanceOf"), (self.owner,))]
        for p in self.positions:
            src = f"uniswap_v3:{p.token_id}"
            calls += [
                Call(f"{src}:positions", self.manager, MANAGER.fn("positions"), (p.token_id,)),
                Call(f"{src}:slot0", p.pool, POOL.fn("slot0")),
                Call(f"{src}:feeGrowthGlobal0", p.pool, POOL.fn("feeGrowthGlobal0X128")),
                Call(f"{src}:feeGrowthGlobal1", p.pool, POOL.fn("feeGrowthGlobal1X128")),
                Call(f"{src}:tickLower", p.pool, POOL.fn("ticks"), (p.tick_lower,)),
                Call(f"{src}:tickUpper", p.pool, POOL.fn("ticks"), (p.tick_upper,)),
            ]
        calls += [
            Call(f"uniswap_v3:quote:{q.token_in.symbol}>{q.token_out.symbol}:{q.fee_pips}:{q.amount_in_base_units}",
                 self.quoter, QUOTER.fn("quoteExactInputSingle"),
                 ((q.token_in.address, q.token_out.address, q.amount_in_base_units, q.fee_pips, 0),))
            for q in self.quote_requests
        ]
        return calls

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading:
        problems = list(failed_calls(self.chain, results))
        if self.position_count_changed(results):
            problems.append(DataProblem(self.chain, "uniswap_v3:balanceOf", "mismatch",
                                        "the owner's position NFTs changed since discovery"))
        positions = []
        for i, p in enumerate(self.positions):
            chunk = results[1 + 6 * i: 7 + 6 * i]
            if not all(r.ok for r in chunk):
                continue
            details, slot0, global0, global1, lower, upper = (r.value for r in chunk)
            liquidity, tick = details[7], slot0[1]
            fees = [
                details[10 + k] + uncollected_fees(liquidity, tick, p.tick_lower, p.tick_upper, g, lower[2 + k],
                                                   upper[2 + k], details[8 + k])
                for k, g in enumerate((global0, global1))
            ]
            positions.append(LpPosition(
                self.chain, self.owner, p.token_id, p.token0, p.token1, p.fee_pips, p.tick_lower, p.tick_upper,
                liquidity, fees[0], fees[1], slot0[0], tick,
            ))
        quotes = tuple(
            SwapQuote(self.chain, q.token_in, q.token_out, q.fee_pips, q.amount_in_base_units, r.value[0], r.value[3])
            for q, r in zip(self.quote_requests, results[1 + 6 * len(self.positions):], strict=True) if r.ok
        )
        return Reading(positions=tuple(positions), quotes=quotes, problems=tuple(problems))
