"""Implied vol: round trips from deep in to deep out of the money and from hours to years, and no-arbitrage."""

from __future__ import annotations

import numpy as np
import pytest
from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv

from agent.risk.greeks import black_scholes
from agent.risk.implied_vol import implied_vol

HOUR = 1 / (365 * 24)


def _grid():
    strikes = [20.0, 50.0, 80.0, 95.0, 100.0, 105.0, 125.0, 200.0, 500.0]
    expiries = [HOUR, 4 * HOUR, 1 / 365, 7 / 365, 0.25, 1.0, 5.0]
    vols = [0.05, 0.2, 0.6, 1.5, 3.0]
    k, t, v, c = (a.ravel() for a in np.meshgrid(strikes, expiries, vols, [True, False], indexing="ij"))
    return k, t, v, c


def test_round_trip_recovers_vol_from_deep_itm_to_deep_otm_and_hours_to_years():
    k, t, v, c = _grid()
    s, r, q = 100.0, 0.03, 0.01
    price = black_scholes(c, s, k, t, v, r, q).price
    result = implied_vol(price, c, s, k, t, r, q)
    intrinsic = np.maximum(np.where(c, 1, -1) * (s * np.exp(-q * t) - k * np.exp(-r * t)), 0.0)
    # Where the time value is below 1e-9 of spot the price no longer pins the vol down in float64.
    measurable = price - intrinsic > 1e-9 * s
    assert measurable.sum() > 300
    assert not result.no_solution[measurable].any()
    np.testing.assert_allclose(result.vol[measurable], v[measurable], rtol=1e-7)
    # Everywhere, the recovered vol reprices the option.
    repriced = black_scholes(c, s, k, t, result.vol, r, q).price
    np.testing.assert_allclose(repriced, price, rtol=1e-9, atol=1e-12 * s)


def test_prices_outside_no_arbitrage_bounds_are_nan_and_flagged():
    s, k, t, r = 100.0, 90.0, 0.5, 0.0
    prices = np.array([9.0, 101.0, 12.0, -0.1])  # below intrinsic, above spot, fine, negative
    result = implied_vol(prices, True, s, k, t, r)
    np.testing.assert_array_equal(result.no_solution, [True, True, False, True])
    assert np.isnan(result.vol[[0, 1, 3]]).all()
    assert np.isfinite(result.vol[2])


def test_price_at_intrinsic_value_has_zero_vol():
    result = implied_vol(0.0, False, 100.0, 90.0, 1.0, 0.0)
    assert float(result.vol) == 0.0
    assert not bool(result.no_solution)


@pytest.mark.parametrize("flag,k,t", [("c", 120.0, 0.1), ("p", 60.0, 2.0), ("c", 70.0, 0.02), ("p", 100.0, 1.0)])
def test_agrees_with_py_vollib(flag, k, t):
    s, r, q, v = 100.0, 0.04, 0.02, 0.45
    price = float(black_scholes(flag == "c", s, k, t, v, r, q).price)
    assert float(implied_vol(price, flag == "c", s, k, t, r, q).vol) == pytest.approx(
        vollib_iv(price, s, k, t, r, q, flag), rel=1e-8
    )
