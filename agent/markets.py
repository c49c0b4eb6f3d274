"""What the derivatives venues quote at the snapshot block: a perp market's state and the listed option series, the
prices a perp or option trade is planned with. Re-exported by `agent.model`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PerpMarket:
    """A perp venue's market on `underlying` at the snapshot block, what a perp trade is priced with.

    `index_price_usd` is the venue's oracle price; a trade of q units fills at index · (1 + (skew + q/2) / skew
    scale) plus `fee_fraction` of its notional. `funding_rate_per_hour` is the fraction of notional a long pays per
    hour now (negative: longs receive), proportional to the skew. Margins are fractions of notional: growing a
    position needs equity ≥ the initial one, below the maintenance one it can be liquidated. `margin_token` is the
    symbol margin is paid in.
    """

    chain: str
    venue: str
    address: str
    underlying: str
    margin_token: str
    index_price_usd: float
    skew_underlying: float
    skew_scale_underlying: float
    fee_fraction: float
    funding_rate_per_hour: float
    initial_margin_fraction: float
    maintenance_margin_fraction: float
    max_funding_rate_per_hour: float = 0.0  # the funding rate at a skew as large as the skew scale

    def fill_price_usd(self, size_delta_underlying: float) -> float:
        """Return the price (USD) a trade of `size_delta_underlying` (signed) fills at, before the fee."""
        premium = (self.skew_underlying + size_delta_underlying / 2) / self.skew_scale_underlying
        return self.index_price_usd * (1.0 + premium)


@dataclass(frozen=True, slots=True)
class OptionSeries:
    """A listed European option series at the snapshot block, what an option trade is priced with.

    `mark_price_usd` is the venue's price per unit of the underlying, computed by the venue from `spot_usd`, the
    strike, the time to `expiry_ts`, `vol_annual` and `rate_annual`; a buyer pays it plus `fee_fraction` of it, a
    seller receives it less that. `quote_token` is the symbol premiums are paid in. Past expiry the mark is the
    intrinsic value (at the settlement price once settled).
    """

    chain: str
    venue: str
    address: str
    underlying: str
    quote_token: str
    series_id: int
    is_call: bool
    strike_usd: float
    expiry_ts: int
    vol_annual: float
    rate_annual: float
    spot_usd: float
    mark_price_usd: float
    fee_fraction: float

    @property
    def label(self) -> str:
        """Returns e.g. "WETH-1700000000-1800-P"."""
        return f"{self.underlying}-{self.expiry_ts}-{self.strike_usd:g}-{'C' if self.is_call else 'P'}"


Market = PerpMarket | OptionSeries
