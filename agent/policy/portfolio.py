"""The policy's `portfolio` section: the account and how its transactions are made, its chains with their RPC
endpoints, and the protocols on each."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from agent.policy.fields import Address, MarketId, Name, RpcUrl, StrictModel, field_error


class AaveV3(StrictModel):
    """An Aave v3 market, found through its PoolAddressesProvider."""

    pool_addresses_provider: Address


class MorphoBlue(StrictModel):
    """Morpho Blue: the singleton contract and the markets the account borrows in."""

    morpho: Address
    """The Morpho Blue contract."""
    markets: tuple[MarketId, ...] = Field(min_length=1)
    """Market ids (the hash of each market's loan token, collateral token, oracle, IRM and LLTV)."""

    @model_validator(mode="after")
    def _markets_unique(self) -> MorphoBlue:
        for index, market in enumerate(self.markets):
            if market in self.markets[:index]:
                raise field_error(f"expected each market once: {market} is listed twice", "markets", index)
        return self


class UniswapV3(StrictModel):
    """Uniswap v3 periphery contracts, and optionally the factory and the pools the agent may trade in."""

    position_manager: Address
    """NonfungiblePositionManager."""
    swap_router: Address
    quoter: Address
    """QuoterV2."""
    factory: Address | None = None
    pools: dict[Name, Address] = Field(default_factory=dict)
    """Label (e.g. WETH-USDC-500) → pool address."""


class Chainlink(StrictModel):
    """Chainlink AggregatorV3 price feeds, and the L2 sequencer uptime feed where there is one."""

    feeds: dict[Name, Address] = Field(min_length=1)
    """Token symbol → USD price feed."""
    max_age_s: PositiveInt = 3600
    """A price older than this is stale: nothing is sent."""
    sequencer_uptime_feed: Address | None = None
    grace_period_s: NonNegativeInt = 3600
    """Seconds to wait after the sequencer is back up."""


class Perps(StrictModel):
    """A perpetual-futures venue: its market on the portfolio's underlying."""

    market: Address
    """The market contract (the local reference venue: PerpMarket)."""
    venue: Literal["local"] = "local"
    """Which venue adapter reads and trades it."""


class Options(StrictModel):
    """An options venue: European options on the portfolio's underlying."""

    market: Address
    """The market contract (the local reference venue: OptionsMarket)."""
    venue: Literal["local"] = "local"
    """Which venue adapter reads and trades it."""


class Protocols(StrictModel):
    """The protocols the agent reads and trades on one chain; each is optional, at least one is required."""

    aave_v3: AaveV3 | None = None
    uniswap_v3: UniswapV3 | None = None
    chainlink: Chainlink | None = None
    perps: Perps | None = None
    options: Options | None = None
    morpho_blue: MorphoBlue | None = None

    def names(self) -> list[str]:
        """Returns the names of the configured protocols, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class Chain(StrictModel):
    """One chain: its id, its RPC endpoints and the protocols used on it."""

    name: Name
    chain_id: PositiveInt
    # repr=False: an RPC URL often carries an API key.
    rpc: tuple[RpcUrl, ...] = Field(min_length=1, repr=False)
    """Endpoints, tried in order: failover."""
    protocols: Protocols

    @model_validator(mode="after")
    def _has_a_protocol(self) -> Chain:
        if not self.protocols.names():
            allowed = ", ".join(Protocols.model_fields)
            raise field_error(f"expected at least one protocol of {allowed}", "protocols")
        return self


class DirectExecutor(StrictModel):
    """A plain account (a personal wallet) that signs its own transactions: one transaction per step."""

    kind: Literal["direct"] = "direct"


class SafeModuleExecutor(StrictModel):
    """A Safe that enabled the Ballast keeper module: a plan runs as one recipe through the module, signed by a key
    the module lists as a keeper (never the Safe's owners' keys)."""

    kind: Literal["safe_module"]
    module: Address
    """The BallastKeeperModule instance the Safe enabled."""


Executor = Annotated[DirectExecutor | SafeModuleExecutor, Field(discriminator="kind")]


class Portfolio(StrictModel):
    """The account whose positions are managed, how its transactions are made, the risk factor of its Greeks, and
    its chains."""

    name: Name
    account: Address
    """The account that holds the positions: with a `safe_module` executor, the Safe."""
    executor: Executor = Field(default_factory=DirectExecutor)
    """`{kind: direct}` (the default) or `{kind: safe_module, module: "0x…"}`."""
    underlying: Name
    """Token symbol of the risk factor the Greeks are taken against, e.g. WETH."""
    chains: tuple[Chain, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _chains_unique(self) -> Portfolio:
        first_of: dict[int, int] = {}
        for index, chain in enumerate(self.chains):
            if chain.chain_id in first_of:
                first = first_of[chain.chain_id]
                message = f"expected each chain once: chain id {chain.chain_id} is already chains[{first}]"
                raise field_error(message, "chains", index, "chain_id")
            first_of[chain.chain_id] = index
        return self
