"""Black-Scholes-Merton prices and Greeks against published values, parity and finite differences."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr

from agent.risk import greeks
from agent.risk.greeks import black_scholes

HULL = {"price": 2.400527323, "delta": 0.521604661, "gamma": 0.065544039, "theta": -4.305329823,
        "vega": 12.10547988, "rho": 8.906961950}

kinds = st.booleans()
spots = st.floats(20.0, 500.0)
moneyness = st.floats(0.5, 2.0)
expiries = st.floats(0.02, 5.0)
vols = st.floats(0.05, 1.5)
rates = st.floats(-0.02, 0.15)
yields = st.floats(0.0, 0.10)


def test_hull_call_matches_published_price_and_greeks_to_1e9():
    g = black_scholes(True, 49.0, 50.0, 20 / 52, 0.2, 0.05)
    for name, expected in HULL.items():
        # 1e-9 relative, or half a unit of the last published decimal where that is coarser (gamma: 9 decimals).
        assert float(getattr(g, name)) == pytest.approx(expected, rel=1e-9, abs=0.5e-9), name


def test_hull_put_matches_published_price():
    assert float(black_scholes(False, 49.0, 50.0, 20 / 52, 0.2, 0.05).price) == pytest.approx(2.448175, abs=5e-7)


def test_haug_cases_match_to_1e4():
    assert float(black_scholes(True, 60.0, 65.0, 0.25, 0.3, 0.08).price) == pytest.approx(2.1334, abs=1e-4)
    g = black_scholes(True, 55.0, 60.0, 0.75, 0.3, 0.10)
    assert float(g.gamma) == pytest.approx(0.0278, abs=1e-4)
    assert float(g.vega) == pytest.approx(18.9358, abs=1e-4)


@settings(max_examples=150, deadline=None)
@given(spots, moneyness, expiries, vols, rates, yields)
def test_put_call_parity_holds(s, m, t, v, r, q):
    k = s * m
    call = black_scholes(True, s, k, t, v, r, q)
    put = black_scholes(False, s, k, t, v, r, q)
    forward_value = s * np.exp(-q * t) - k * np.exp(-r * t)
    assert float(call.price - put.price) == pytest.approx(forward_value, abs=1e-9 * s)
    assert float(call.delta - put.delta) == pytest.approx(np.exp(-q * t), abs=1e-12)
    assert float(call.gamma) == pytest.approx(float(put.gamma), rel=1e-12)


def _fd(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@settings(max_examples=150, deadline=None)
@given(kinds, spots, moneyness, expiries, vols, rates, yields)
def test_every_bsm_greek_is_the_finite_difference_of_price(c, s, m, t, v, r, q):
    k = s * m
    g = black_scholes(c, s, k, t, v, r, q)

    def price(**kw):
        args = {"spot": s, "t_years": t, "vol": v, "rate": r} | kw
        return float(black_scholes(c, args["spot"], k, args["t_years"], args["vol"], args["rate"], q).price)

    def delta_at(x):
        return float(black_scholes(c, x, k, t, v, r, q).delta)

    scale = s * 1e-6  # absolute floor: the finite difference itself is only this accurate
    assert float(g.delta) == pytest.approx(_fd(lambda x: price(spot=x), s, s * 1e-5), rel=1e-5, abs=1e-6)
    assert float(g.gamma) == pytest.approx(_fd(delta_at, s, s * 1e-5), rel=1e-4, abs=1e-6 / s)
    assert float(g.vega) == pytest.approx(_fd(lambda x: price(vol=x), v, 1e-5), rel=1e-5, abs=scale)
    assert float(g.rho) == pytest.approx(_fd(lambda x: price(rate=x), r, 1e-5), rel=1e-5, abs=scale)
    h = min(1e-5, t / 10)
    assert float(g.theta) == pytest.approx(-_fd(lambda x: price(t_years=x), t, h), rel=1e-4, abs=scale)


def test_expiry_and_zero_vol_give_intrinsic_value_and_finite_greeks_without_warnings():
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        g = black_scholes(
            [True, False, True, False, True, True],
            100.0,
            [90.0, 90.0, 110.0, 110.0, 100.0, 90.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            [0.3, 0.3, 0.3, 0.3, 0.3, 0.0],
            0.05,
        )
    np.testing.assert_allclose(g.price[:5], [10.0, 0.0, 0.0, 10.0, 0.0])
    # Zero vol, one year: the discounted forward intrinsic value.
    assert g.price[5] == pytest.approx(100.0 - 90.0 * np.exp(-0.05))
    np.testing.assert_array_equal(g.delta[:4], [1.0, 0.0, 0.0, -1.0])
    for field in (g.price, g.delta, g.gamma, g.vega, g.theta, g.rho):
        assert np.all(np.isfinite(field))
    np.testing.assert_array_equal(g.gamma, 0.0)
    np.testing.assert_array_equal(g.vega, 0.0)


def test_arrays_and_scalars_broadcast_to_the_same_values_as_one_option_at_a_time():
    strikes = np.array([[80.0], [100.0], [120.0]])
    expiries_ = np.array([0.1, 1.0])
    g = black_scholes(False, 100.0, strikes, expiries_, 0.4, 0.02, 0.01)
    assert g.price.shape == (3, 2)
    one = black_scholes(False, 100.0, 120.0, 1.0, 0.4, 0.02, 0.01)
    assert g.theta[2, 1] == pytest.approx(float(one.theta), rel=1e-14)


@pytest.mark.parametrize("case", [(True, 100.0, 90.0, 0.5, 0.4, 0.03, 0.0), (False, 100.0, 120.0, 1.0, 0.4, 0.02, 0.01),
                                  (True, 100.0, 100.0, 0.0, 0.4, 0.02, 0.0), (False, 100.0, 100.0, 0.5, 0.0, 0.0, 0.0)])
def test_one_option_takes_the_same_bits_as_the_block_path(case):
    # A single option skips the block set-up (the backtest's per-bar marks); the kernels must give it the exact
    # values an array of options gets.
    c, s, k, t, v, r, q = case
    one, many = black_scholes(c, s, k, t, v, r, q), black_scholes([c, c], s, k, t, v, r, q)
    for field in ("price", "delta", "gamma", "vega", "theta", "rho"):
        assert getattr(one, field).shape == ()
        np.testing.assert_array_equal(np.full(2, getattr(one, field)), getattr(many, field))


def test_threaded_blocks_give_the_same_result_as_one_block(monkeypatch):
    rng = np.random.default_rng(7)
    n = 50_000
    args = (rng.random(n) < 0.5, 100.0, rng.uniform(50, 150, n), rng.uniform(0, 2, n), rng.uniform(0, 1, n), 0.03)
    monkeypatch.setattr(greeks, "_PARALLEL_MIN", 1)
    monkeypatch.setattr(greeks, "_BLOCK", 4096)
    threaded = black_scholes(*args)
    monkeypatch.setattr(greeks, "_PARALLEL_MIN", 10**9)
    monkeypatch.setattr(greeks, "_BLOCK", 10**6)
    single = black_scholes(*args)
    np.testing.assert_array_equal(threaded.price, single.price)
    np.testing.assert_array_equal(threaded.rho, single.rho)


@pytest.mark.parametrize("is_call", [True, False])
def test_quantlib_agrees_with_dividend_yield(is_call):
    s, k, t, v, r, q = 2000.0, 2200.0, 0.5, 0.65, 0.04, 0.03
    today = ql.Date(1, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    expiry = today + round(t * 365)
    t = dc.yearFraction(today, expiry)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(s)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), v, dc)),
    )
    option = ql.EuropeanOption(
        ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, k), ql.EuropeanExercise(expiry)
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    g = black_scholes(is_call, s, k, t, v, r, q)
    assert float(g.price) == pytest.approx(option.NPV(), rel=1e-10)
    assert float(g.delta) == pytest.approx(option.delta(), rel=1e-10)
    assert float(g.gamma) == pytest.approx(option.gamma(), rel=1e-10)
    assert float(g.vega) == pytest.approx(option.vega(), rel=1e-10)
    assert float(g.rho) == pytest.approx(option.rho(), rel=1e-10)
    assert float(g.theta) == pytest.approx(option.theta(), rel=1e-8)


def _reference(is_call, s, k, t, vol, r, q):
    """The formulas of the numpy implementation the compiled kernel replaced, unblocked, with scipy's ndtr: the
    oracle. fs = S·e^(−qt), fk = K·e^(−rt); a1 = φ·fs·N(φd1), a2 = φ·fk·N(φd2); σ√t > 0 here."""
    phi = np.where(is_call, 1.0, -1.0)
    v = vol * np.sqrt(t)
    fs, fk = s * np.exp(-q * t), k * np.exp(-r * t)
    d1 = np.log(fs / fk) / v + v / 2
    a1, a2 = phi * fs * ndtr(phi * d1), phi * fk * ndtr(phi * (d1 - v))
    fs_pdf = fs * np.exp(-d1 * d1 / 2) / np.sqrt(2 * np.pi)
    price = a1 - a2
    gamma = fs_pdf / (s * s * v)
    diffusion = -0.5 * (vol * s) ** 2 * gamma
    theta = -r * a2 + diffusion + q * a1
    rho = t * a2
    return price, a1 / s, gamma, fs_pdf * np.sqrt(t), theta, rho


@pytest.mark.parametrize("model", ["bsm", "bsm-no-yield"])
def test_compiled_kernel_matches_the_reference_formulas_to_1e12(monkeypatch, model):
    rng = np.random.default_rng({"bsm": 1, "bsm-no-yield": 2}[model])
    n = 30_001
    is_call = rng.random(n) < 0.5
    s = rng.uniform(1.0, 5_000.0, n)
    k = s * np.exp(rng.uniform(-1.5, 1.5, n))
    t = rng.uniform(1e-4, 5.0, n)
    vol = rng.uniform(0.01, 2.5, n)
    r = rng.uniform(-0.02, 0.15, n)
    q = 0.0 if model == "bsm-no-yield" else rng.uniform(0.0, 0.1, n)
    # Several blocks on several workers, ending in a partial block.
    monkeypatch.setattr(greeks, "_PARALLEL_MIN", 1)
    monkeypatch.setattr(greeks, "_BLOCK", 4096)
    g = black_scholes(is_call, s, k, t, vol, r, q)
    expected = _reference(is_call, s, k, t, vol, r, q)
    # 1e-12 relative, with a floor of 1e-12 of each field's natural unit: deep out of the money the price is the
    # difference of two nearly equal terms, and any two evaluations of N agree there only to a few ulps of those.
    units = {"price": s, "delta": 1.0, "gamma": 1.0 / s, "vega": s, "theta": s, "rho": s}
    for (name, unit), want in zip(units.items(), expected, strict=True):
        got = getattr(g, name)
        assert np.all(np.abs(got - want) <= 1e-12 * np.maximum(np.abs(want), unit)), name
