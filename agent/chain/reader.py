"""Read a portfolio's snapshot: per chain, the adapters its policy configures, discovered once, then every cycle
one block-pinned Multicall3 batch (two RPC requests per chain, however many positions); chains are read
concurrently. `agent.chain.fleet` reads many portfolios' chain readers in one batch per block."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from web3 import Web3

from agent.adapters import Adapter, VenueAdapter, rebind
from agent.adapters.aave_v3 import AaveV3
from agent.adapters.chainlink import ChainlinkFeeds
from agent.adapters.erc20 import Erc20Balances, TokenRegistry
from agent.adapters.morpho_blue import MorphoBlue
from agent.adapters.options import options_venue
from agent.adapters.perps import perp_venue
from agent.adapters.uniswap_v3 import QUOTE_FEES, QuoteRequest, UniswapV3
from agent.chain.multicall import Block, Call, CallResult, PinningLost, read_batch
from agent.chain.rpc import RequestHook, connect
from agent.model import ChainSnapshot, Snapshot, Token
from agent.policy import Chain, Options, Perps, Policy

if TYPE_CHECKING:
    from agent.chain.fleet import Fleet

QUOTE_NOTIONAL_USD = (10_000.0, 100_000.0)
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_REDISCOVER_ON = ("uniswap_v3:balanceOf", "options:seriesCount", "aave_v3:health_factor")
PIN_ATTEMPTS = 3
# What discovery found about a market (an Aave pool, a set of feeds, a venue), by (protocol, address): portfolios
# on the same market share it, so a fleet discovers each market once.
MarketCache = dict[tuple[str, str], Any]
_A = TypeVar("_A")
VenueFactory = Callable[[str, str, str, str, str, TokenRegistry], VenueAdapter]
"""`perp_venue` or `options_venue`: (venue, chain, account, market, underlying, tokens) to the venue's adapter."""


class BatchChanged(RuntimeError):
    """A reader's calls changed (rediscovery) between reading a batch and decoding it: read again."""


class ChainReader:
    """Reads one chain of a portfolio; `discover()` runs on first use and whenever positions change."""

    def __init__(self, chain: Chain, account: str, underlying: str, w3: Web3, markets: MarketCache | None = None,
                 tokens: TokenRegistry | None = None) -> None:
        self.chain = chain
        self.account = account
        self.underlying = underlying
        self.w3 = w3
        self.tokens = tokens if tokens is not None else TokenRegistry()
        self.markets: MarketCache = markets if markets is not None else {}
        self.adapters: list[Adapter] = []
        self._discovered = False
        self._fresh = False  # the next discovery reads every market again instead of the cache
        self._batch: tuple[list[Adapter], list[list[Call]], list[Call]] | None = None
        # The daemon's block follower and a timer's cycle may use one reader at once: discovery, the batch and its
        # decoding must not interleave.
        self._lock = threading.RLock()

    def _market(self, protocol: str, address: str, build: Callable[[], _A]) -> _A:
        """Return the market's adapter for this account: from the cache, or built, discovered and cached."""
        key = (protocol, address.lower())
        cached = None if self._fresh else self.markets.get(key)
        if cached is not None:
            return rebind(cached, self.account)
        adapter = build()
        adapter.discover(self.w3)  # type: ignore[attr-defined]  # every adapter discovers
        self.markets[key] = adapter
        return adapter

    def _venue(self, protocol: str, spec: Perps | Options, build: VenueFactory) -> VenueAdapter:
        """Return the adapter of the policy's perp or options venue (both protocols' adapters are `VenueAdapter`s)."""
        return self._market(protocol, spec.market, lambda: build(
            spec.venue, self.chain.name, self.account, spec.market, self.underlying, self.tokens))

    def discover(self) -> None:
        """Build the adapters and read what does not change between cycles (markets from the cache when known)."""
        with self._lock:
            self._discover()

    def _discover(self) -> None:
        protocols, name = self.chain.protocols, self.chain.name
        adapters: list[Adapter] = []
        held: dict[str, Token] = {}
        if protocols.aave_v3:
            provider = protocols.aave_v3.pool_addresses_provider
            aave = self._market("aave_v3", provider, lambda: AaveV3(name, self.account, provider, self.tokens))
            adapters.append(aave)
            held.update({t.address: t for t in aave.tokens})
        if protocols.morpho_blue:
            blue = protocols.morpho_blue
            morpho = self._market("morpho_blue", ",".join((blue.morpho, *blue.markets)), lambda: MorphoBlue(
                name, self.account, blue.morpho, blue.markets, self.tokens))
            adapters.append(morpho)
            held.update({t.address: t for t in morpho.tokens})
        uniswap = None
        if protocols.uniswap_v3:
            uniswap = UniswapV3(name, self.account, protocols.uniswap_v3.position_manager,
                                protocols.uniswap_v3.quoter, self.tokens)
            uniswap.discover(self.w3)
            adapters.append(uniswap)
            held.update({t.address: t for p in uniswap.positions for t in (p.token0, p.token1)})
        if protocols.chainlink:
            feeds = protocols.chainlink
            chainlink = self._market("chainlink", ",".join(sorted(feeds.feeds.values())), lambda: ChainlinkFeeds(
                name, feeds.feeds, feeds.max_age_s, feeds.sequencer_uptime_feed, feeds.grace_period_s))
            adapters.append(chainlink)
        venues: tuple[tuple[str, Perps | Options | None, VenueFactory], ...] = (
            ("perps", protocols.perps, perp_venue), ("options", protocols.options, options_venue))
        for protocol, spec, build in venues:
            if spec is not None:
                venue = self._venue(protocol, spec, build)
                adapters.append(venue)
                held.update({t.address: t for t in venue.wallet_tokens})
        adapters.append(Erc20Balances(name, self.account, sorted(held.values(), key=lambda t: t.symbol)))
        self.adapters = adapters
        self._discovered, self._fresh, self._batch = True, False, None
        if uniswap is not None:
            uniswap.quote_requests = self._quote_requests(uniswap, list(held.values()), self.read())
            self._batch = None

    def _quote_requests(
        self, uniswap: UniswapV3, tokens: list[Token], first: ChainSnapshot
    ) -> tuple[QuoteRequest, ...]:
        """Quote swaps between the underlying and every other held token, both ways, at a few notional sizes."""
        prices = {p.symbol: p.price_usd for p in first.prices if not p.stale}
        base = next((t for t in tokens if t.symbol == self.underlying), None)
        others = [t for t in tokens if base is not None and t != base and t.symbol in prices]
        if base is None or self.underlying not in prices:
            return ()
        keys = [(base.address, other.address, fee) for other in others for fee in QUOTE_FEES]
        pools = uniswap.pools(self.w3, keys) if keys else []
        requests = []
        for (_a, other_address, fee), pool in zip(keys, pools, strict=True):
            if pool == ZERO_ADDRESS:
                continue
            other = next(t for t in others if t.address == other_address)
            for notional in QUOTE_NOTIONAL_USD:
                for token_in, token_out in ((base, other), (other, base)):
                    amount = round(notional / prices[token_in.symbol] * 10**token_in.decimals)
                    requests.append(QuoteRequest(token_in, token_out, fee, amount))
        return tuple(requests)

    def batch(self) -> list[Call]:
        """Return the calls of one snapshot (discovering first if needed); the same list until rediscovery."""
        with self._lock:
            if not self._discovered:
                self.discover()
            if self._batch is None:
                per_adapter = [adapter.calls() for adapter in self.adapters]
                self._batch = list(self.adapters), per_adapter, [call for calls in per_adapter for call in calls]
            return self._batch[2]

    def read(self) -> ChainSnapshot:
        """Return this chain's snapshot: one batch of every adapter's calls at one block."""
        with self._lock:
            batch = self.batch()
            for attempt in range(PIN_ATTEMPTS):
                try:
                    block, results = read_batch(self.w3, batch)
                    break
                except PinningLost:
                    # anvil can answer a call pinned to the newest block from the next one when a block is mined
                    # meanwhile; the batch is read again at the new newest block.
                    if attempt == PIN_ATTEMPTS - 1:
                        raise
            return self.snapshot(block, results, batch)

    def snapshot(self, block: Block, results: Sequence[CallResult], batch: list[Call]) -> ChainSnapshot:
        """Return the chain snapshot that `results` (of `batch`, a list `batch()` returned, in order, read at
        `block`) make; marks the reader for rediscovery when positions or listed series changed. Raises
        `BatchChanged` when the reader rediscovered since `batch` was taken."""
        with self._lock:
            if self._batch is None or self._batch[2] is not batch:
                raise BatchChanged(f"{self.chain.name}: positions were rediscovered while the batch was read")
            return self._decode(block, results)

    def _decode(self, block: Block, results: Sequence[CallResult]) -> ChainSnapshot:
        assert self._batch is not None
        adapters, per_adapter, _calls = self._batch
        readings, start = [], 0
        for adapter, calls in zip(adapters, per_adapter, strict=True):
            readings.append(adapter.decode(results[start:start + len(calls)], block))
            start += len(calls)
        if any(p.kind == "mismatch" and p.source in _REDISCOVER_ON for r in readings for p in r.problems):
            # positions or listed series changed: rediscover, markets included, before the next cycle
            self._discovered, self._fresh = False, True
        return ChainSnapshot(
            chain=self.chain.name, chain_id=self.chain.chain_id, block_number=block.number, block_hash=block.hash,
            timestamp=block.timestamp, base_fee_wei=block.base_fee_wei,
            positions=tuple(p for r in readings for p in r.positions),
            prices=tuple(p for r in readings for p in r.prices),
            balances=tuple(b for r in readings for b in r.balances),
            quotes=tuple(q for r in readings for q in r.quotes),
            problems=tuple(p for r in readings for p in r.problems),
            markets=tuple(m for r in readings for m in r.markets),
        )


class PortfolioReader:
    """Reads every chain of a policy's portfolio, concurrently, into one `Snapshot`."""

    def __init__(self, policy: Policy, on_request: RequestHook | None = None, fleet: Fleet | None = None) -> None:
        """With `fleet`, the portfolio's chain readers join the fleet's chains (shared connections and markets, one
        batch per block for all); without, each chain gets its own connection."""
        self.policy = policy
        self.fleet = fleet
        portfolio = policy.portfolio
        self.chains = [
            fleet.chain_reader(portfolio.name, chain, portfolio.account, portfolio.underlying) if fleet else
            ChainReader(chain, portfolio.account, portfolio.underlying, connect(chain.name, chain.rpc,
                                                                                on_request=on_request))
            for chain in portfolio.chains
        ]
        # Threads only where several chains are read at once: a fleet of single-chain portfolios would otherwise
        # hold an idle thread each.
        several = len(self.chains) > 1
        self._pool = ThreadPoolExecutor(len(self.chains), thread_name_prefix="chain-reader") if several else None

    def read(self) -> Snapshot:
        """Return the portfolio's snapshot; raises `ChainUnavailable` when a chain has no answering endpoint."""
        chains: Sequence[ChainSnapshot] = ([reader.read() for reader in self.chains] if self._pool is None
                                           else list(self._pool.map(lambda reader: reader.read(), self.chains)))
        portfolio = self.policy.portfolio
        return Snapshot(portfolio.name, portfolio.account, portfolio.underlying, tuple(chains))

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.remove(self.policy.portfolio.name)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
