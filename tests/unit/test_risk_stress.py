"""Stress: the grid's shape, a zero shock with zero P&L, and known scenarios revalued in full."""

from __future__ import annotations

import numpy as np
import pytest

from agent.model import AaveAccount, AaveReserve, OptionPosition, PerpPosition, Token
from agent.risk import lending
from agent.risk.greeks import black_scholes
from agent.risk.stress import SPOT_SHOCKS, VOL_SHOCKS, stress

WETH = Token("WETH", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18)
USDC = Token("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
NOW = 1_700_000_000
PRICES = {"WETH": 2000.0, "USDC": 1.0}
LEVERAGED_LONG = AaveAccount("l", "0x1", (
    AaveReserve(WETH, 10 * 10**18, 0, 2000 * 10**8, 8000, 8300, 10500, True),
    AaveReserve(USDC, 5000 * 10**6, 12_000 * 10**6, 10**8, 7500, 7800, 10450, True),
))
PUT = OptionPosition("ref", "WETH", False, 1800.0, NOW + 30 * 86_400, 10.0, 0.7)
PERP = PerpPosition("ref", "WETH", -2.0, 2000.0, 1000.0, 0.05, 0.0)


def test_default_grid_is_25_spot_by_7_vol_shocks_and_zero_shock_has_zero_pnl():
    result = stress([LEVERAGED_LONG, PUT, PERP], "WETH", PRICES, NOW)
    assert result.pnl_usd.shape == (25, 7) == (len(SPOT_SHOCKS), len(VOL_SHOCKS))
    assert SPOT_SHOCKS[0] == -0.6 and SPOT_SHOCKS[-1] == 0.6 and VOL_SHOCKS[0] == -0.5 and VOL_SHOCKS[-1] == 1.0
    i, j = int(np.argmin(np.abs(SPOT_SHOCKS))), int(np.argmin(np.abs(VOL_SHOCKS)))
    assert result.pnl_usd[i, j] == pytest.approx(0.0, abs=1e-9)
    assert result.health_factors.shape == (1, 25)


def test_a_known_scenario_is_revalued_in_full():
    spot, vol = np.array([-0.3]), np.array([0.5])
    result = stress([LEVERAGED_LONG, PUT, PERP], "WETH", PRICES, NOW, spot_shocks=spot, vol_shocks=vol)
    t = 30 / 365
    put_pnl = 10 * float(black_scholes(False, 1400.0, 1800.0, t, 1.05, 0.0).price
                         - black_scholes(False, 2000.0, 1800.0, t, 0.7, 0.0).price)
    expected = -0.3 * 2000 * 10 + put_pnl + 0.3 * 2000 * 2
    assert result.pnl_usd[0, 0] == pytest.approx(expected, rel=1e-12)
    # (10·1400 + 5000) · 8168 bps (the weighted threshold 8168.4, truncated) / 12,000.
    exact = lending.health_factor_wad(lending.shocked_account(LEVERAGED_LONG, ("WETH",), 0.7)) / 1e18
    assert result.health_factors[0, 0] == pytest.approx(exact, rel=1e-9)
    assert result.min_health_factor()[0] < 1.6


def test_health_falls_monotonically_as_the_collateral_crashes():
    result = stress([LEVERAGED_LONG], "WETH", PRICES, NOW)
    assert np.all(np.diff(result.health_factors[0]) > 0)
    assert result.health_factors[0, 0] < 1 < result.health_factors[0, -1]
