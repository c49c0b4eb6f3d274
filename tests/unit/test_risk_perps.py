"""Perps: notional, equity, leverage, liquidation price, funding carry and delta."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import PerpPosition
from agent.risk import perps

LONG = PerpPosition("ref", "WETH", 2.0, 2000.0, 1000.0, 0.05, 0.0001)
SHORT = PerpPosition("ref", "WETH", -2.0, 2000.0, 1000.0, 0.05, 0.0001)


def test_notional_equity_and_leverage_at_the_mark():
    assert float(perps.notional_usd(LONG, 2100.0)) == 4200.0
    assert float(perps.equity_usd(LONG, 2100.0)) == 1200.0
    assert float(perps.equity_usd(SHORT, 2100.0)) == 800.0
    assert float(perps.leverage(LONG, 2100.0)) == pytest.approx(3.5)


def test_leverage_is_infinite_once_equity_is_gone():
    assert float(perps.leverage(LONG, 1400.0)) == float("inf")


@settings(max_examples=100, deadline=None)
@given(st.floats(-50, 50).filter(lambda q: abs(q) > 1e-3), st.floats(100, 5000), st.floats(0.0, 1.0),
       st.floats(0.005, 0.2))
def test_equity_equals_maintenance_margin_at_the_liquidation_price(size, entry, extra_margin, mmf):
    margin_share = mmf + extra_margin  # opened above maintenance, as a venue requires
    position = PerpPosition("ref", "WETH", size, entry, abs(size) * entry * margin_share, mmf, 0.0)
    price = perps.liquidation_price_usd(position)
    if price is None:
        assert size > 0 and margin_share >= 1 - mmf
        return
    assert float(perps.equity_usd(position, price)) == pytest.approx(mmf * abs(size) * price, rel=1e-9, abs=1e-6)
    # The long is liquidated at or below entry, the short at or above.
    assert (price <= entry * (1 + 1e-12)) if size > 0 else (price >= entry * (1 - 1e-12))


def test_long_pays_positive_funding_and_short_receives_it():
    assert float(perps.funding_carry_usd(LONG, 2000.0, 24.0)) == pytest.approx(-2 * 2000 * 0.0001 * 24)
    assert float(perps.funding_carry_usd(SHORT, 2000.0, 24.0)) == pytest.approx(2 * 2000 * 0.0001 * 24)


def test_delta_is_the_signed_size():
    assert perps.delta_underlying(SHORT) == -2.0
