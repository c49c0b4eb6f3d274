"""Perpetual-futures venues: the interface every perp venue adapter implements (GMX, Synthetix, a local reference
market…), and the adapter of the local reference market (`deploy/localnet/contracts/PerpMarket.sol`).

A venue adapter reads, in the chain's one batch, the account's position (a `PerpPosition`, margin net of the
funding it owes) and the market's state (a `PerpMarket`: index price, skew, fee, funding rate, margin fractions),
and encodes the venue's trades: change the position with a worst acceptable fill price, deposit or withdraw
margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from web3 import Web3

from agent.adapters import LocalVenue, VenueAdapter, failed_calls
from agent.adapters.erc20 import TokenRegistry
from agent.chain.abi import load_abi
from agent.chain.multicall import Block, Call, CallResult, read_batch
from agent.model import PerpMarket, PerpPosition, Reading, Token, TxRequest

LOCAL_PERP = load_abi("perps", "PerpMarket")
WAD = 10**18
SECONDS_PER_HOUR = 3600


class PerpVenue(VenueAdapter, Protocol):
    """What a perp venue adapter implements: `VenueAdapter` plus the venue's trades."""

    margin_token: Token | None

    def encode_modify_position(self, size_delta_base_units: int, acceptable_price_1e18: int) -> TxRequest:
        """Returns the trade that changes the position by a signed size (1e18 units of the underlying) at a fill no
        worse than `acceptable_price_1e18` (USD, 1e18)."""
        ...

    def encode_deposit_margin(self, amount_base_units: int) -> TxRequest: ...


class LocalPerpMarket(LocalVenue):
    """The local reference perp market: one market per contract, on the underlying its feed prices."""

    name = "perps"

    def __init__(self, chain: str, account: str, market: str, underlying: str, tokens: TokenRegistry) -> None:
        super().__init__(chain, account, market, underlying, tokens)
        self.margin_token: Token | None = None

    def discover(self, w3: Web3) -> None:
        """Read the margin token once."""
        _b, (token,) = read_batch(w3, [Call("perps:quoteToken", self.market, LOCAL_PERP.fn("quoteToken"),
                                            allow_failure=False)])
        address = Web3.to_checksum_address(token.value)
        self.margin_token = self.token_registry.resolve(w3, [address])[address]

    @property
    def wallet_tokens(self) -> tuple[Token, ...]:
        return () if self.margin_token is None else (self.margin_token,)

    def calls(self) -> list[Call]:
        return [
            Call("perps:marketState", self.market, LOCAL_PERP.fn("marketState")),
            Call("perps:position", self.market, LOCAL_PERP.fn("position"), (self.account,)),
            Call("perps:maxFundingRatePerDay", self.market, LOCAL_PERP.fn("maxFundingRatePerDay")),
        ]

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading:
        problems = failed_calls(self.chain, results)
        if problems or self.margin_token is None:
            return Reading(problems=problems)
        state, position, max_funding_per_day = (r.value for r in results)
        price, skew, skew_scale, fee_bps, rate_per_s, imf, mmf = state
        market = PerpMarket(
            chain=self.chain, venue=f"{self.venue}:{self.market}", address=self.market, underlying=self.underlying,
            margin_token=self.margin_token.symbol, index_price_usd=price / WAD, skew_underlying=skew / WAD,
            skew_scale_underlying=skew_scale / WAD, fee_fraction=fee_bps / 1e4,
            funding_rate_per_hour=rate_per_s * SECONDS_PER_HOUR / WAD, initial_margin_fraction=imf / WAD,
            maintenance_margin_fraction=mmf / WAD, max_funding_rate_per_hour=max_funding_per_day / WAD / 24,
        )
        size, entry, margin, owed_funding = position
        positions: tuple[PerpPosition, ...] = ()
        if size != 0 or margin != 0:
            positions = (PerpPosition(
                venue=market.venue, underlying=self.underlying, size_underlying=size / WAD,
                entry_price_usd=entry / WAD, margin_usd=(margin - owed_funding) / WAD,
                maintenance_margin_fraction=market.maintenance_margin_fraction,
                funding_rate_per_hour=market.funding_rate_per_hour,
            ),)
        return Reading(positions=positions, markets=(market,))

    def encode_modify_position(self, size_delta_base_units: int, acceptable_price_1e18: int) -> TxRequest:
        data = LOCAL_PERP.fn("modifyPosition").encode(size_delta_base_units, acceptable_price_1e18)
        side = "buy" if size_delta_base_units > 0 else "sell"
        return TxRequest(self.chain, self.market, data, description=(
            f"perps {side} {abs(size_delta_base_units)} {self.underlying} at ≤{acceptable_price_1e18}"
            if size_delta_base_units > 0 else
            f"perps {side} {abs(size_delta_base_units)} {self.underlying} at ≥{acceptable_price_1e18}"))

    def encode_deposit_margin(self, amount_base_units: int) -> TxRequest:
        data = LOCAL_PERP.fn("depositMargin").encode(amount_base_units)
        return TxRequest(self.chain, self.market, data, description=f"perps deposit {amount_base_units} margin")


def perp_venue(venue: str, chain: str, account: str, market: str, underlying: str, tokens: TokenRegistry) -> PerpVenue:
    """Returns the adapter of a perp venue by the policy's `venue` name ("local": the reference market)."""
    if venue == "local":
        return LocalPerpMarket(chain, account, market, underlying, tokens)
    raise ValueError(f"no perp venue adapter named {venue!r}")
