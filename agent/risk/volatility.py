"""A health-factor minimum that knows the market: the smallest health factor that survives a k-sigma move of the
account's risk factors over the reaction horizon.

For an account, ln HF = ln Σ_c v_c·LT_c − ln Σ_d v_d, so its sensitivity to the log price of factor f is
s_f = (Σ_c∈f v_c·LT_c) / (Σ_c v_c·LT_c) − (Σ_d∈f v_d) / (Σ_d v_d). An LST moves with the asset it is pegged to plus
a spread of its own, so the factors group as: each non-LST factor g with s_g = s_g + Σ_{LST pegged to g} s_LST and
its vol σ_g, and each LST's spread with s_LST and σ_LST (the vol of its price in its peg). With independent groups

    σ_HF = √(Σ_g (s_g·σ_g)²),    HF_min = exp(k · σ_HF · √τ)

(τ the horizon in years): a k-sigma adverse move leaves HF_min·exp(−k·σ_HF·√τ) = 1. σ is the implied vol of the
nearest-to-the-money listed option on the factor where there is one, else the realised vol the policy gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from agent.model import AaveAccount, Market, OptionSeries
from agent.risk import lending

SECONDS_PER_YEAR = 365 * 86_400


def factor_vols(markets: Iterable[Market], realised_annual: Mapping[str, float], now_ts: int,
                pegs: Mapping[str, str]) -> dict[str, float]:
    """Return each factor's annual vol: the implied vol of the live listed series nearest the money (then nearest
    expiry) on it, else `realised_annual`'s. An LST's entry is its spread's vol, never an option's."""
    vols = dict(realised_annual)
    best: dict[str, tuple[float, int]] = {}
    for series in markets:
        if (not isinstance(series, OptionSeries) or series.expiry_ts <= now_ts or series.spot_usd <= 0
                or series.underlying in pegs):
            continue
        key = (abs(math.log(series.strike_usd / series.spot_usd)), series.expiry_ts)
        if series.underlying not in best or key < best[series.underlying]:
            best[series.underlying] = key
            vols[series.underlying] = series.vol_annual
    return vols


def survival_health_factor(
    account: AaveAccount, vols_annual: Mapping[str, float], k_sigma: float, horizon_s: float,
    pegs: Mapping[str, str],
) -> float:
    """Return the module docstring's HF_min for the account (1.0 without debt; factors without a vol count as 0)."""
    weighted: dict[str, float] = {}
    owed: dict[str, float] = {}
    for reserve in account.reserves:
        factor = lending.price_follows(account, reserve)
        per_unit = lending.effective_price_1e8(account, reserve) / 10**reserve.token.decimals
        if reserve.usage_as_collateral and reserve.liquidation_threshold_bps:
            lt = lending.liquidation_threshold_bps(account, reserve)
            weighted[factor] = weighted.get(factor, 0.0) + reserve.collateral_base_units * per_unit * lt
        debt = reserve.variable_debt_base_units + reserve.stable_debt_base_units
        owed[factor] = owed.get(factor, 0.0) + debt * per_unit
    total_weighted, total_owed = sum(weighted.values()), sum(owed.values())
    if total_owed == 0 or total_weighted == 0:
        return 1.0
    exposure = {f: weighted.get(f, 0.0) / total_weighted - owed.get(f, 0.0) / total_owed
                for f in set(weighted) | set(owed)}
    groups: dict[str, float] = {}
    for factor, s in exposure.items():
        peg = pegs.get(factor)
        if peg is not None:
            groups[f"{factor}/{peg}"] = groups.get(f"{factor}/{peg}", 0.0) + s
        base = peg if peg is not None else factor
        groups[base] = groups.get(base, 0.0) + s
    variance = sum((s * _group_vol(name, vols_annual)) ** 2 for name, s in groups.items())
    return math.exp(k_sigma * math.sqrt(variance) * math.sqrt(horizon_s / SECONDS_PER_YEAR))


def _group_vol(name: str, vols_annual: Mapping[str, float]) -> float:
    # An LST's spread group is "LST/PEG": its vol is the LST's own entry (the vol of its price in its peg).
    return vols_annual.get(name.split("/")[0], 0.0)
