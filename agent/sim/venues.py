"""The simulated derivatives venues: the perp market (skew and funding from `conditions`, quote-token margin) and
the options venue (series listed around spot each day, Black-Scholes marks at the implied-vol path, settlement in
the quote token at expiry), as the snapshot shows them to the planner."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from agent.model import OptionPosition, OptionSeries, PerpMarket, PerpPosition
from agent.risk.greeks import black_scholes
from agent.sim.portfolio import SIM_CHAIN, OptionsVenue, PerpMarketModel

VENUE = "sim"
PERP_ADDRESS = "0x" + "00" * 19 + "01"
OPTIONS_ADDRESS = "0x" + "00" * 19 + "02"
SECONDS_PER_YEAR = 365 * 86_400
DAY_S = 86_400
EXPIRY_HOUR_S = 8 * 3600  # series expire at 08:00 UTC, as Deribit's


def series_id(expiry_ts: int, strike_usd: float, is_call: bool) -> int:
    """Return the venue's id of a series: its expiry (s), strike (cents) and kind packed in one integer."""
    return (expiry_ts * 10**12 + round(strike_usd * 100)) * 2 + int(is_call)


def strike_step(spot_usd: float) -> float:
    """Return the strike grid's step at this spot: a twentieth of its power of ten ($50 at $2,000, $5 at $129)."""
    return 10.0 ** math.floor(math.log10(spot_usd)) / 20.0


def mark_usd(is_call: bool, spot_usd: float, strike_usd: float, expiry_ts: int, now: int, vol: float) -> float:
    """Return the venue's mark per unit: Black-Scholes at rate 0, the intrinsic value at or past expiry."""
    t = (expiry_ts - now) / SECONDS_PER_YEAR
    if t <= 0:
        return max(spot_usd - strike_usd, 0.0) if is_call else max(strike_usd - spot_usd, 0.0)
    return float(black_scholes(is_call, spot_usd, strike_usd, t, vol, 0.0).price)


def listed_series(venue: OptionsVenue, underlying: str, quote: str, spot_usd: float, now: int, vol: float,
                  held: tuple[OptionPosition, ...]) -> tuple[OptionSeries, ...]:
    """Return the series the venue lists at `now`: a call and a put at each strike multiple of spot (on the strike
    grid) for each expiry (days after today's 08:00 UTC), and every series the book holds."""
    today = now // DAY_S * DAY_S + EXPIRY_HOUR_S
    step = strike_step(spot_usd)
    wanted = {(today + days * DAY_S, round(spot_usd * k / step) * step, is_call)
              for days in venue.expiry_days for k in venue.strikes for is_call in (True, False)}
    wanted |= {(o.expiry_ts, o.strike_usd, o.is_call) for o in held if o.expiry_ts > now}
    rows = sorted(wanted)
    marks = black_scholes(np.array([c for _e, _k, c in rows]), spot_usd, np.array([k for _e, k, _c in rows]),
                          np.array([(e - now) / SECONDS_PER_YEAR for e, _k, _c in rows]), vol, 0.0).price
    return tuple(
        OptionSeries(SIM_CHAIN, VENUE, OPTIONS_ADDRESS, underlying, quote, series_id(e, k, c), c, k, e, vol, 0.0,
                     spot_usd, float(m), venue.fee_fraction)
        for (e, k, c), m in zip(rows, np.atleast_1d(marks), strict=True))


def marked_option(position: OptionPosition, spot_usd: float, now: int, vol: float) -> OptionPosition:
    """Return the held option at the bar's vol and mark, with the venue's series id."""
    sid = position.series_id if position.series_id is not None else series_id(
        position.expiry_ts, position.strike_usd, position.is_call)
    return dataclasses.replace(position, venue=VENUE, vol_annual=vol, series_id=sid,
                               mark_price_usd=mark_usd(position.is_call, spot_usd, position.strike_usd,
                                                       position.expiry_ts, now, vol))


def perp_market(model: PerpMarketModel, position: PerpPosition | None, underlying: str, quote: str,
                index_usd: float, skew_fraction: float, funding_per_hour: float) -> PerpMarket:
    """Return the perp venue's market at the bar: the other traders' skew (a fraction of the scale) plus the book's
    own position, its funding rate, fee and margins (10% initial, the position's maintenance or 5%)."""
    scale = model.skew_scale_underlying
    own = position.size_underlying if position is not None else 0.0
    maintenance = position.maintenance_margin_fraction if position is not None else 0.05
    return PerpMarket(SIM_CHAIN, VENUE, PERP_ADDRESS, underlying, quote, index_usd, skew_fraction * scale + own,
                      scale, model.fee_fraction, funding_per_hour, max(2 * maintenance, 0.1), maintenance,
                      model.max_funding_per_day / 24.0)
