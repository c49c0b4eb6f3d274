"""Options venues: the interface every options venue adapter implements (Derive, Premia, a local reference
market…), and the adapter of the local reference market (`deploy/localnet/contracts/OptionsMarket.sol`).

A venue adapter reads, in the chain's one batch, every listed series (an `OptionSeries`: strike, expiry, the
venue's mark and implied vol, fee) and the account's holdings of each (`OptionPosition`s), and encodes the venue's
trades: buy with a maximum cost, sell with a minimum proceeds. A venue that quotes only prices gets its vols from
`vol_from_mark` (the implied vol that reprices the mark), so the risk engine always has a vol to revalue with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from web3 import Web3

from agent.adapters import LocalVenue, VenueAdapter, failed_calls
from agent.adapters.erc20 import TokenRegistry
from agent.chain.abi import load_abi
from agent.chain.multicall import Block, Call, CallResult, read_batch
from agent.model import DataProblem, OptionPosition, OptionSeries, Reading, Token, TxRequest
from agent.risk.implied_vol import implied_vol

LOCAL_OPTIONS = load_abi("options", "OptionsMarket")
WAD = 10**18


class OptionsVenue(VenueAdapter, Protocol):
    """What an options venue adapter implements: `VenueAdapter` plus the venue's trades."""

    quote_token: Token | None

    def encode_buy(self, series_id: int, amount_base_units: int, max_cost_base_units: int) -> TxRequest:
        """Returns the purchase of `amount_base_units` options (1e18 units of the underlying) of a series, paying
        at most `max_cost_base_units` of the quote token."""
        ...

    def encode_sell(self, series_id: int, amount_base_units: int, min_proceeds_base_units: int) -> TxRequest: ...


def vol_from_mark(mark_price_usd: float, is_call: bool, spot_usd: float, strike_usd: float, t_years: float,
                  rate: float = 0.0) -> float | None:
    """Returns the annual implied vol that reprices a venue's mark (USD per unit), or None where no vol does (a
    mark outside the no-arbitrage bounds, or an expired option)."""
    if t_years <= 0:
        return None
    vol = float(implied_vol(mark_price_usd, is_call, spot_usd, strike_usd, t_years, rate).vol)
    return vol if math.isfinite(vol) else None


@dataclass(frozen=True)
class _Listed:
    series_id: int
    is_call: bool
    strike_1e18: int
    expiry_ts: int


class LocalOptionsMarket(LocalVenue):
    """The local reference options market: European cash-settled options on the underlying its feed prices."""

    name = "options"

    def __init__(self, chain: str, account: str, market: str, underlying: str, tokens: TokenRegistry) -> None:
        super().__init__(chain, account, market, underlying, tokens)
        self.quote_token: Token | None = None
        self.fee_fraction = 0.0
        self.listed: tuple[_Listed, ...] = ()

    def discover(self, w3: Web3) -> None:
        """Read the quote token, the fee and every listed series."""
        _b, (token, fee, count) = read_batch(w3, [
            Call("options:quoteToken", self.market, LOCAL_OPTIONS.fn("quoteToken"), allow_failure=False),
            Call("options:feeBps", self.market, LOCAL_OPTIONS.fn("feeBps"), allow_failure=False),
            Call("options:seriesCount", self.market, LOCAL_OPTIONS.fn("seriesCount"), allow_failure=False),
        ])
        address = Web3.to_checksum_address(token.value)
        self.quote_token = self.token_registry.resolve(w3, [address])[address]
        self.fee_fraction = fee.value / 1e4
        _b, series = read_batch(w3, [
            Call(f"options:series:{i}", self.market, LOCAL_OPTIONS.fn("series"), (i,), allow_failure=False)
            for i in range(count.value)
        ])
        self.listed = tuple(_Listed(i, s.value[0], s.value[1], s.value[2]) for i, s in enumerate(series))

    @property
    def wallet_tokens(self) -> tuple[Token, ...]:
        return () if self.quote_token is None else (self.quote_token,)

    def calls(self) -> list[Call]:
        calls = [Call("options:seriesCount", self.market, LOCAL_OPTIONS.fn("seriesCount"))]
        for s in self.listed:
            calls += [
                Call(f"options:{s.series_id}:quote", self.market, LOCAL_OPTIONS.fn("quote"), (s.series_id,)),
                Call(f"options:{s.series_id}:balanceOf", self.market, LOCAL_OPTIONS.fn("balanceOf"),
                     (s.series_id, self.account)),
            ]
        return calls

    def decode(self, results: Sequence[CallResult], block: Block) -> Reading:
        problems = list(failed_calls(self.chain, results))
        if results and results[0].ok and results[0].value != len(self.listed):
            problems.append(DataProblem(self.chain, "options:seriesCount", "mismatch",
                                        "the venue listed series since discovery"))
        if self.quote_token is None:
            return Reading(problems=tuple(problems))
        markets, positions = [], []
        for i, s in enumerate(self.listed):
            quote, balance = results[1 + 2 * i], results[2 + 2 * i]
            if not (quote.ok and balance.ok):
                continue
            price, spot, strike, _t_years, vol, rate = quote.value
            series = OptionSeries(
                chain=self.chain, venue=f"{self.venue}:{self.market}", address=self.market,
                underlying=self.underlying, quote_token=self.quote_token.symbol, series_id=s.series_id,
                is_call=s.is_call, strike_usd=strike / WAD, expiry_ts=s.expiry_ts, vol_annual=vol / WAD,
                rate_annual=rate / WAD, spot_usd=spot / WAD, mark_price_usd=price / WAD,
                fee_fraction=self.fee_fraction,
            )
            markets.append(series)
            if balance.value:
                positions.append(OptionPosition(
                    venue=series.venue, underlying=self.underlying, is_call=s.is_call, strike_usd=series.strike_usd,
                    expiry_ts=s.expiry_ts, quantity=balance.value / WAD, vol_annual=series.vol_annual,
                    mark_price_usd=series.mark_price_usd, series_id=s.series_id,
                ))
        return Reading(positions=tuple(positions), markets=tuple(markets), problems=tuple(problems))

    def encode_buy(self, series_id: int, amount_base_units: int, max_cost_base_units: int) -> TxRequest:
        data = LOCAL_OPTIONS.fn("buy").encode(series_id, amount_base_units, max_cost_base_units)
        return TxRequest(self.chain, self.market, data, description=(
            f"options buy {amount_base_units} of series {series_id} for ≤{max_cost_base_units}"))

    def encode_sell(self, series_id: int, amount_base_units: int, min_proceeds_base_units: int) -> TxRequest:
        data = LOCAL_OPTIONS.fn("sell").encode(series_id, amount_base_units, min_proceeds_base_units)
        return TxRequest(self.chain, self.market, data, description=(
            f"options sell {amount_base_units} of series {series_id} for ≥{min_proceeds_base_units}"))


def options_venue(venue: str, chain: str, account: str, market: str, underlying: str,
                  tokens: TokenRegistry) -> OptionsVenue:
    """Returns the adapter of an options venue by the policy's `venue` name ("local": the reference market)."""
    if venue == "local":
        return LocalOptionsMarket(chain, account, market, underlying, tokens)
    raise ValueError(f"no options venue adapter named {venue!r}")
