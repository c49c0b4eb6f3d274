"""The market around the price path, bar by bar: Aave rates, gas price, perp funding and skew, option implied vol.
Each comes from data when a file is given and from a stated model otherwise, and says which (`Conditions.sources`).

- Aave rates: each reserve's interest-rate strategy (the local world's `DefaultReserveInterestRateStrategy`
  curves: optimal usage, base, slope1, slope2) at a utilisation path. Utilisation sits at the reserve's base level
  (`market.utilisation`); a stress bar, one whose high/low range is at least `stress.move_pct`, adds
  `stress.spike` to it (capped at 0.99), and the excess decays with a half-life of `stress.half_life_hours`:
  borrowers rush in a crash, and rates spike on the kink. Supply APR = borrow APR × utilisation × (1 − reserve
  factor).
- Gas: an hourly or daily file (`unix,gwei`; each value holds until the next) when given; else the model
  base × min(1 + (range / gas.double_at_pct)², gas.max_multiple), range being the bar's high/low move in %: gas
  doubles on a bar that moves `double_at_pct` and spikes on crash bars, as block space is fought over.
- Perp funding from skew: the other traders' skew is trend-following, skew / skew scale = clip(perp.trend ×
  72-hour log return, ±perp.max_skew), and the venue's funding per hour is that fraction × its maximum rate
  (the local reference venue's rule: 100%/day at a skew as large as the scale); trades fill at the skew's premium.
- WSTETH (an LST book): WETH's price × a ratio that grows with the staking yield, less a depeg that each stress
  bar deepens (the same stress bars as the rates'), decaying with its half-life and capped: LSTs trade at a
  discount when holders rush for the exit in a crash (stETH/ETH traded near 0.94 in June 2022).
- Option implied vol: BTC's DVOL file (daily, vol points) when given, scaled by `ETH_OVER_BTC_VOL` as a proxy for
  ETH; bars the file does not cover, and runs without it, use EWMA realised vol × `REALISED_TO_IMPLIED`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.errors import UserInputError
from agent.localnet.world import RATE_CURVES, RESERVES
from agent.sim.market import PricePath, parse_date, realised_vol
from agent.sim.portfolio import Market

ETH_OVER_BTC_VOL = 1.2  # ETH's implied vol over BTC's DVOL: the stated proxy for ETH options
REALISED_TO_IMPLIED = 1.1  # implied vol over realised: the variance premium option sellers charge
TREND_HOURS = 72
HOURS_PER_YEAR = 8_760


@dataclass(frozen=True)
class Conditions:
    """Per-bar arrays (one value per bar of the path): Aave APRs per reserve symbol (fractions per year), gas
    price (gwei), perp skew as a fraction of the skew scale, funding per hour (fraction of notional a long pays),
    implied vol (annual), and what each comes from."""

    borrow_apr: dict[str, NDArray[np.float64]]
    supply_apr: dict[str, NDArray[np.float64]]
    utilisation: dict[str, NDArray[np.float64]]
    gas_gwei: NDArray[np.float64]
    skew_fraction: NDArray[np.float64]
    funding_per_hour: NDArray[np.float64]
    vol_annual: NDArray[np.float64]
    sources: dict[str, str]
    lst_ratio: NDArray[np.float64] | None = None  # WSTETH's price in WETH (None: no LST market)


def borrow_rate(utilisation: float | NDArray[np.float64], optimal: float, base: float, slope1: float,
                slope2: float) -> NDArray[np.float64]:
    """Return Aave v3's variable borrow APR at `utilisation` (DefaultReserveInterestRateStrategy, v3.0)."""
    u = np.asarray(utilisation, dtype=np.float64)
    below = base + slope1 * u / optimal
    above = base + slope1 + slope2 * (u - optimal) / (1.0 - optimal)
    return np.where(u <= optimal, below, above)


def stress_path(path: PricePath, move_pct: float, spike: float, half_life_h: float) -> NDArray[np.float64]:
    """Return the utilisation added by stress at each bar: `spike` on each bar whose range is ≥ `move_pct`,
    decaying with the half-life."""
    moves = (path.high / path.low - 1.0) * 100.0
    decay = 0.5 ** (1.0 / half_life_h)
    out = np.empty(len(path))
    level = 0.0
    for i, move in enumerate(moves):
        level = level * decay + (spike if move >= move_pct else 0.0)
        out[i] = level
    return out


def conditions(path: PricePath, market: Market, gas_file: Path | None = None,
               vol_file: Path | None = None) -> Conditions:
    """Return the market's conditions along `path` (module docstring); UserInputError for unreadable files."""
    stress = stress_path(path, market.stress.move_pct, market.stress.spike, market.stress.half_life_hours)
    params = {r.symbol: r for r in RESERVES}
    borrow: dict[str, NDArray[np.float64]] = {}
    supply: dict[str, NDArray[np.float64]] = {}
    usage: dict[str, NDArray[np.float64]] = {}
    for symbol, base_u in market.utilisation.items():
        reserve = params[symbol]
        curve = tuple(float(x) for x in RATE_CURVES["stable" if reserve.stable else "volatile"])
        u = np.minimum(base_u + stress, 0.99)
        usage[symbol] = u
        borrow[symbol] = borrow_rate(u, *curve)
        supply[symbol] = borrow[symbol] * u * (1.0 - reserve.reserve_factor_bps / 1e4)
    moves = (path.high / path.low - 1.0) * 100.0
    if gas_file is not None:
        gas = _stepped(_read_series(gas_file, "unix", "gwei", dated=False), path)
        gas_source = f"data: {gas_file}"
    else:
        g = market.gas
        gas = g.base_gwei * np.minimum(1.0 + (moves / g.double_at_pct) ** 2, g.max_multiple)
        gas_source = (f"model: {g.base_gwei:g} gwei × min(1 + (bar range / {g.double_at_pct:g}%)², "
                      f"{g.max_multiple:g})")
    closes = path.close
    lagged = np.concatenate((np.full(TREND_HOURS, closes[0]), closes[:-TREND_HOURS]))[: len(closes)]
    skew = np.clip(market.perp.trend * np.log(closes / lagged), -market.perp.max_skew, market.perp.max_skew)
    funding = skew * market.perp.max_funding_per_day / 24.0
    realised = realised_vol(path) * REALISED_TO_IMPLIED
    vol_source = f"model: EWMA realised vol × {REALISED_TO_IMPLIED:g} (no implied-vol file)"
    vol = realised
    if vol_file is not None:
        dvol = _stepped(_read_series(vol_file, "date", "dvol", dated=True), path, fill=math.nan) / 100.0
        vol = np.where(np.isnan(dvol), realised, dvol * ETH_OVER_BTC_VOL)
        covered = float(np.mean(~np.isnan(dvol)))
        vol_source = (f"data (proxy): BTC DVOL ({vol_file}) × {ETH_OVER_BTC_VOL:g} for ETH on {covered:.0%} of bars; "
                      f"elsewhere model: EWMA realised vol × {REALISED_TO_IMPLIED:g}")
    sources = {
        "prices": f"data: {path.source}",
        "aave_rates": (f"model: the reserves' interest-rate strategies at utilisation {_fmt(market.utilisation)}, "
                       f"+{market.stress.spike:g} on bars moving ≥ {market.stress.move_pct:g}% (half-life "
                       f"{market.stress.half_life_hours:g} h)"),
        "gas": gas_source,
        "funding": (f"model: skew = clip({market.perp.trend:g} × {TREND_HOURS} h log return, ±"
                    f"{market.perp.max_skew:g}) of the skew scale; funding = skew × "
                    f"{market.perp.max_funding_per_day:g}/day"),
        "implied_vol": vol_source,
        "pool": "model: concentrated liquidity of market.pool, re-centred every "
                f"{market.pool.recentre_hours:g} h; arbitraged to each bar's close",
    }
    ratio = None
    if market.lst is not None:
        lst, depeg = market.lst, market.lst.depeg
        years = (path.unix - path.unix[0]) / (HOURS_PER_YEAR * 3600.0)
        discount = np.minimum(stress_path(path, market.stress.move_pct, depeg.per_stress_bar, depeg.half_life_hours),
                              depeg.max)
        ratio = lst.ratio * (1.0 + lst.yield_apr) ** years * (1.0 - discount)
        sources["lst_ratio"] = (f"model: WSTETH = WETH × {lst.ratio:g} growing {lst.yield_apr:.1%}/yr (staking), "
                                f"less a depeg of {depeg.per_stress_bar:.1%} per bar moving ≥ "
                                f"{market.stress.move_pct:g}% (half-life {depeg.half_life_hours:g} h, at most "
                                f"{depeg.max:.0%}); no WSTETH price history in the data")
    return Conditions(borrow, supply, usage, gas, skew, funding, vol, sources, ratio)


def _fmt(values: Mapping[Any, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in values.items())


def _read_series(path: Path, key: str, value: str, dated: bool) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Return (unix s, value) of a two-column CSV, sorted; UserInputError naming the file and line."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise UserInputError(f"{path}: cannot read ({error.strerror})") from None
    times, values = [], []
    with handle:
        reader = csv.DictReader(handle)
        if key not in (reader.fieldnames or ()) or value not in (reader.fieldnames or ()):
            raise UserInputError(f"{path}:1: expected the columns {key}, {value}")
        for line, row in enumerate(reader, start=2):
            try:
                times.append(parse_date(row[key], f"{path}:{line}") if dated else int(float(row[key])))
                values.append(float(row[value]))
            except (TypeError, ValueError, UserInputError):
                raise UserInputError(f"{path}:{line}: expected a {'date' if dated else 'unix time'} and a number") \
                    from None
    if not times:
        raise UserInputError(f"{path}: no rows")
    order = np.argsort(times)
    return np.array(times, dtype=np.int64)[order], np.array(values)[order]


def _stepped(series: tuple[NDArray[np.int64], NDArray[np.float64]], path: PricePath,
             fill: float | None = None) -> NDArray[np.float64]:
    """Return the series' value in force at each bar's open (the last at or before it); before the first value,
    `fill` (default: the first value). A daily series also ends a day after its last date."""
    times, values = series
    index = np.searchsorted(times, path.unix, side="right") - 1
    out = values[np.maximum(index, 0)].astype(np.float64)
    if fill is not None:
        out = np.where((index < 0) | (path.unix > times[-1] + 86_400), fill, out)
    return out
