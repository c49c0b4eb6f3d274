"""Read a whole fleet of portfolios once per block: per chain, every portfolio's calls merged into one block-pinned
Multicall3 batch (split only where a node's call-size limit, `BatchLimits`, requires), each distinct call read
and decoded once however many portfolios ask for it (reserve data, prices, quotes are the same for all), and the
answers handed back to each portfolio's own `ChainReader` to decode into its `ChainSnapshot`.

Per chain per block that is one `eth_call` per batch, plus the head poll that found the block. Markets (an Aave
pool's reserves, the feeds, the venues) are discovered once per chain and shared; account-level discovery (LP
positions) stays with each portfolio and runs again when its positions change."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from agent.adapters.erc20 import TokenRegistry
from agent.chain.multicall import BatchLimits, Block, Call, CallResult, latest_block, pinned_batches
from agent.chain.reader import ChainReader, MarketCache
from agent.chain.rpc import RequestHook, connect
from agent.model import ChainSnapshot
from agent.policy import Chain

ChainKey = tuple[str, int, tuple[str, ...]]  # name, chain id, RPC endpoints: portfolios that share a connection


def chain_key(chain: Chain) -> ChainKey:
    """Return the key under which portfolios share one chain connection and one batch."""
    return chain.name, chain.chain_id, tuple(chain.rpc)


@dataclass
class _Layout:
    """How the portfolios' calls map onto the distinct requests of the batch, for one set of portfolio batches."""

    batches: dict[str, list[Call]]
    requests: list[tuple[str, bool, bytes]]
    indices: dict[str, list[int]]
    encoded: list[bytes] = field(default_factory=list)  # the batches' call data, filled on the first read

    def matches(self, batches: dict[str, list[Call]]) -> bool:
        return batches.keys() == self.batches.keys() and all(batches[n] is self.batches[n] for n in batches)


class ChainFleet:
    """Every portfolio on one chain: one connection, one market cache, one batch per block."""

    def __init__(self, key: ChainKey, w3: Web3, limits: BatchLimits | None = None) -> None:
        self.key = key
        self.w3 = w3
        self.limits = limits or BatchLimits()
        self.markets: MarketCache = {}
        self.tokens = TokenRegistry()
        self.readers: dict[str, ChainReader] = {}
        self._layouts: dict[frozenset[str] | None, _Layout] = {}  # the whole fleet's (None) and a subset's
        self._calldata: dict[Call, bytes] = {}

    @property
    def name(self) -> str:
        return self.key[0]

    def latest_block(self) -> Block:
        """Return the chain's newest block header (one request): the head the follower polls."""
        return latest_block(self.w3)

    def read(self, block: Block, only: Collection[str] | None = None) -> dict[str, ChainSnapshot | Exception]:
        """Return each portfolio's chain snapshot at `block` (of the portfolios named in `only`, or all), or the
        error that kept one portfolio from it (its discovery or decoding failed: the others still count). Raises
        `PinningLost` when the node answered from another block, and `ChainUnavailable` when no endpoint answered:
        then no portfolio has a snapshot."""
        batches: dict[str, list[Call]] = {}
        outcome: dict[str, ChainSnapshot | Exception] = {}
        subset = None if only is None else frozenset(only)
        for name, reader in self.readers.items():
            if subset is not None and name not in subset:
                continue
            try:
                batches[name] = reader.batch()
            except Exception as error:  # this portfolio's discovery failed; it is retried next block
                outcome[name] = error
        layout = self._layouts.get(subset)
        if layout is None or not layout.matches(batches):
            layout = self._lay_out(batches, subset)
        answers = pinned_batches(self.w3, layout.requests, block, self.limits, layout.encoded)
        decoded: dict[tuple[int, Any, Any], CallResult] = {}
        for name, calls in batches.items():
            results = [_result(call, index, answers[index], decoded) for call, index in
                       zip(calls, layout.indices[name], strict=True)]
            try:
                outcome[name] = self.readers[name].snapshot(block, results, calls)
            except Exception as error:  # an adapter could not make sense of this portfolio's answers
                outcome[name] = error
        return outcome

    def _lay_out(self, batches: dict[str, list[Call]], subset: frozenset[str] | None) -> _Layout:
        distinct: dict[tuple[str, bytes], int] = {}
        requests: list[tuple[str, bool, bytes]] = []
        indices: dict[str, list[int]] = {}
        calldata: dict[Call, bytes] = {}
        for name, calls in batches.items():
            positions = []
            for call in calls:
                data = calldata.get(call)
                if data is None:
                    data = calldata[call] = self._calldata.get(call) or call.function.encode(*call.args)
                key = (call.target.lower(), data)
                index = distinct.get(key)
                if index is None:
                    index = distinct[key] = len(requests)
                    requests.append((call.target, True, data))
                positions.append(index)
            indices[name] = positions
        if subset is None:
            self._calldata = calldata  # the calls of rediscovered positions leave the cache
            self._layouts = {}  # a subset's layout is laid out again against the new calls
        elif len(self._layouts) > 3:  # the subsets change from block to block: keep the whole fleet's layout only
            self._layouts = {k: v for k, v in self._layouts.items() if k is None}
        layout = self._layouts[subset] = _Layout(batches, requests, indices)
        return layout


def _result(call: Call, index: int, answer: tuple[bool, bytes], decoded: dict[tuple[int, Any, Any], CallResult]
            ) -> CallResult:
    """Return the call's result, decoding each distinct answer once per way of decoding it."""
    ok, data = answer
    if not ok:
        return CallResult(call, False, error=f"{call.source}: call reverted")
    key = (index, call.function, call.convert)
    first = decoded.get(key)
    if first is None:
        try:
            first = decoded[key] = CallResult(call, True, call.decode(data, fast=True))
        except Exception as exc:  # reported against the adapter that asked, as a single read would
            first = decoded[key] = CallResult(call, False, error=f"cannot decode {call.function.name}: {exc}")
    if first.ok:
        return first if first.call is call else CallResult(call, True, first.value)
    return CallResult(call, False, error=f"{call.source}: {first.error}")


class Fleet:
    """The chains of every portfolio the daemon runs, each a `ChainFleet` shared by the portfolios on it."""

    def __init__(self, limits: BatchLimits | None = None, on_request: RequestHook | None = None,
                 connector: Callable[[Chain], Web3] | None = None) -> None:
        self.limits = limits or BatchLimits()
        self.chains: dict[ChainKey, ChainFleet] = {}
        self._connect = connector or (lambda chain: connect(chain.name, chain.rpc, on_request=on_request))

    def chain_reader(self, portfolio: str, chain: Chain, account: str, underlying: str) -> ChainReader:
        """Return a reader of `portfolio`'s positions on `chain` that shares the chain's connection, markets and
        batch with every other portfolio on it."""
        key = chain_key(chain)
        fleet = self.chains.get(key)
        if fleet is None:
            fleet = self.chains[key] = ChainFleet(key, self._connect(chain), self.limits)
        reader = ChainReader(chain, account, underlying, fleet.w3, fleet.markets, fleet.tokens)
        fleet.readers[portfolio] = reader
        return reader

    def remove(self, portfolio: str) -> None:
        """Stop reading `portfolio` (its readers leave every chain's batch)."""
        for key, fleet in list(self.chains.items()):
            fleet.readers.pop(portfolio, None)
            if not fleet.readers:
                del self.chains[key]


def seconds_per_block(earlier: Block, later: Block) -> float:
    """Return the mean block time between two blocks (s): per block, not per poll, so that blocks skipped while a
    slow block was processed do not stretch the estimate (which would delay the next poll and skip more)."""
    return max(0, later.timestamp - earlier.timestamp) / max(1, later.number - earlier.number)
