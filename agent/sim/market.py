"""The simulated market's inputs: an hourly OHLCV price path from a CSV file, and the volatility path options are
marked with.

Volatility is realised, not implied: the data set has no ETH implied volatility (DVOL is BTC's, and only from
2021-03), so options are marked with an exponentially weighted realised vol of hourly close-to-close log returns
(half-life `VOL_HALF_LIFE_H` hours), annualised over 8,760 hours and floored at `VOL_FLOOR`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from agent.errors import UserInputError

HOURS_PER_YEAR = 8_760
VOL_HALF_LIFE_H = 72.0
VOL_FLOOR = 0.10
COLUMNS = ("unix", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class PricePath:
    """Hourly bars of one underlying (USD): `unix` is each bar's open time (s), `volume` in the base asset; `source`
    names the file. Arrays share one length, at least 2."""

    source: str
    unix: NDArray[np.int64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.unix)

    def scaled(self, factor: float) -> PricePath:
        """Return the path with every price multiplied by `factor` (volumes in the base asset divided by it, so
        that USD volume is unchanged)."""
        return PricePath(self.source, self.unix, self.open * factor, self.high * factor, self.low * factor,
                         self.close * factor, self.volume / factor)

    def window(self) -> tuple[str, str]:
        """Return the first and last bar's open time as ISO-8601 (UTC)."""
        return iso(int(self.unix[0])), iso(int(self.unix[-1]))


def iso(unix_s: int) -> str:
    """Return a unix time as ISO-8601 UTC with a Z."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(text: str, what: str) -> int:
    """Return the unix time (s) of an ISO date or date-time (UTC unless it says otherwise); UserInputError when
    `text` is neither."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserInputError(f"{what}: expected a date like 2020-03-12 or 2020-03-12T06:00 (got {text!r})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def load_prices(path: str | Path, start_s: int | None = None, end_s: int | None = None) -> PricePath:
    """Return the bars of an hourly OHLCV CSV (columns time, unix, open, high, low, close, volume) whose open time
    lies in [start_s, end_s] (an `end_s` at midnight includes that whole day). UserInputError naming the file and
    line when it cannot be read, and when fewer than two bars are left."""
    source = str(path)
    try:
        handle = Path(path).open(newline="", encoding="utf-8")  # noqa: SIM115  (closed by the with below)
    except OSError as error:
        raise UserInputError(f"{source}: cannot read ({error.strerror})") from None
    if end_s is not None and end_s % 86_400 == 0:
        end_s += 86_400 - 1
    rows: list[tuple[float, ...]] = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise UserInputError(f"{source}:1: expected the columns {', '.join(COLUMNS)} "
                                 f"(missing {', '.join(missing)})")
        for line, row in enumerate(reader, start=2):
            try:
                values = tuple(float(row[c]) for c in COLUMNS)
            except (TypeError, ValueError):
                raise UserInputError(f"{source}:{line}: expected numbers in {', '.join(COLUMNS)}") from None
            unix = values[0]
            if (start_s is not None and unix < start_s) or (end_s is not None and unix > end_s):
                continue
            if not all(v > 0 for v in values[1:5]) or values[3] > values[2]:
                raise UserInputError(f"{source}:{line}: expected positive prices with low ≤ high")
            rows.append(values)
    if len(rows) < 2:
        raise UserInputError(f"{source}: fewer than two hourly bars in the window")
    data = np.array(rows, dtype=np.float64)
    order = np.argsort(data[:, 0], kind="stable")
    data = data[order]
    return PricePath(source, data[:, 0].astype(np.int64), data[:, 1], data[:, 2], data[:, 3], data[:, 4], data[:, 5])


def realised_vol(path: PricePath, half_life_h: float = VOL_HALF_LIFE_H) -> NDArray[np.float64]:
    """Return the annualised EWMA realised volatility at each bar's close (0.6 = 60%), seeded with the first day's
    (or the whole path's, when shorter) mean squared hourly log return, floored at VOL_FLOOR."""
    returns = np.diff(np.log(path.close), prepend=math.log(path.open[0]))
    decay = 0.5 ** (1.0 / half_life_h)
    seed = float(np.mean(returns[: min(24, len(returns))] ** 2))
    variance = np.empty(len(returns))
    current = seed
    for i, r in enumerate(returns):
        current = decay * current + (1.0 - decay) * r * r
        variance[i] = current
    return np.maximum(np.sqrt(variance * HOURS_PER_YEAR), VOL_FLOOR)
