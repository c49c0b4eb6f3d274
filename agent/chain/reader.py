"""Read a portfolio's snapshot: per chain, the adapters its policy configures, discovered once, then every cycle
one block-pinned Multicall3 batch (two RPC requests per chain, however many positions); chains are read
concurrently."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from web3 import Web3

from agent.adapters import Adapter
from agent.adapters.aave_v3 import AaveV3
from agent.adapters.chainlink import ChainlinkFeeds, latest_price_usd
from agent.adapters.erc20 import Erc20Balances, TokenRegistry
from agent.adapters.options import options_venue
from agent.adapters.perps import perp_venue
from agent.adapters.uniswap_v3 import QUOTE_FEES, QuoteRequest, UniswapV3
from agent.chain.multicall import PinningLost, read_batch
from agent.chain.rpc import RequestHook, connect
from agent.errors import ChainUnavailable
from agent.model import ChainSnapshot, Snapshot, Token
from agent.policy import Chain, Policy

QUOTE_NOTIONAL_USD = (10_000.0, 100_000.0)
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_REDISCOVER_ON = ("uniswap_v3:balanceOf", "options:seriesCount", "aave_v3:health_factor")
PIN_ATTEMPTS = 3


class ChainReader:
    """Reads one chain of a portfolio; `discover()` runs on first use and whenever positions change."""

    def __init__(self, chain: Chain, account: str, underlying: str, w3: Web3) -> None:
        self.chain = chain
        self.account = account
        self.underlying = underlying
        self.w3 = w3
        self.tokens = TokenRegistry()
        self.adapters: list[Adapter] = []
        self._discovered = False

    def discover(self) -> None:
        """Build the adapters and read what does not change between cycles."""
        protocols, name = self.chain.protocols, self.chain.name
        adapters: list[Adapter] = []
        held: dict[str, Token] = {}
        if protocols.aave_v3:
            aave = AaveV3(name, self.account, protocols.aave_v3.pool_addresses_provider, self.tokens)
            aave.discover(self.w3)
            adapters.append(aave)
            held.update({t.address: t for t in aave.tokens})
        uniswap = None
        if protocols.uniswap_v3:
            uniswap = UniswapV3(name, self.account, protocols.uniswap_v3.position_manager,
                                protocols.uniswap_v3.quoter, self.tokens)
            uniswap.discover(self.w3)
            adapters.append(uniswap)
            held.update({t.address: t for p in uniswap.positions for t in (p.token0, p.token1)})
        if protocols.chainlink:
            feeds = protocols.chainlink
            chainlink = ChainlinkFeeds(name, feeds.feeds, feeds.max_age_s, feeds.sequencer_uptime_feed,
                                       feeds.grace_period_s)
            chainlink.discover(self.w3)
            adapters.append(chainlink)
        if protocols.perps:
            perps = perp_venue(protocols.perps.venue, name, self.account, protocols.perps.market, self.underlying,
                               self.tokens)
            perps.discover(self.w3)
            adapters.append(perps)
            if perps.margin_token is not None:
                held[perps.margin_token.address] = perps.margin_token
        if protocols.options:
            options = options_venue(protocols.options.venue, name, self.account, protocols.options.market,
                                    self.underlying, self.tokens)
            options.discover(self.w3)
            adapters.append(options)
            if options.quote_token is not None:
                held[options.quote_token.address] = options.quote_token
        adapters.append(Erc20Balances(name, self.account, sorted(held.values(), key=lambda t: t.symbol)))
        self.adapters = adapters
        self._discovered = True
        if uniswap is not None:
            uniswap.quote_requests = self._quote_requests(uniswap, list(held.values()), self.read())

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

    def read(self) -> ChainSnapshot:
        """Return this chain's snapshot: one batch of every adapter's calls at one block."""
        if not self._discovered:
            self.discover()
        per_adapter = [adapter.calls() for adapter in self.adapters]
        batch = [call for calls in per_adapter for call in calls]
        for attempt in range(PIN_ATTEMPTS):
            try:
                block, results = read_batch(self.w3, batch)
                break
            except PinningLost:
                # anvil can answer a call pinned to the newest block from the next one when a block is mined
                # meanwhile; the batch is read again at the new newest block.
                if attempt == PIN_ATTEMPTS - 1:
                    raise
        readings, start = [], 0
        for adapter, calls in zip(self.adapters, per_adapter, strict=True):
            readings.append(adapter.decode(results[start:start + len(calls)], block))
            start += len(calls)
        if any(p.kind == "mismatch" and p.source in _REDISCOVER_ON for r in readings for p in r.problems):
            self._discovered = False  # positions or listed series changed: rediscover before the next cycle
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

    def __init__(self, policy: Policy, on_request: RequestHook | None = None) -> None:
        self.policy = policy
        portfolio = policy.portfolio
        self.chains = [
            ChainReader(chain, portfolio.account, portfolio.underlying, connect(chain.name, chain.rpc,
                                                                                on_request=on_request))
            for chain in portfolio.chains
        ]
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.chains)), thread_name_prefix="chain-reader")

    def read(self) -> Snapshot:
        """Return the portfolio's snapshot; raises `ChainUnavailable` when a chain has no answering endpoint."""
        chains: Sequence[ChainSnapshot] = list(self._pool.map(lambda reader: reader.read(), self.chains))
        portfolio = self.policy.portfolio
        return Snapshot(portfolio.name, portfolio.account, portfolio.underlying, tuple(chains))

    def underlying_price_usd(self) -> float | None:
        """Return the underlying's latest price from the first chain with a feed for it (one `eth_call`), or None
        when no chain has one or it cannot be read now. Cheap enough for a watch between cycles."""
        for reader in self.chains:
            feeds = reader.chain.protocols.chainlink
            if feeds is None or self.policy.portfolio.underlying not in feeds.feeds:
                continue
            try:
                return latest_price_usd(reader.w3, feeds.feeds[self.policy.portfolio.underlying])
            except ChainUnavailable:
                return None
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=False)
