"""The derivatives venues in the portfolio's snapshot and risk: both are read in the chain's one block-pinned batch,
their values equal the contracts' getters, and the portfolio Greeks that include them equal finite differences of
the portfolio's value."""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np
import pytest

from agent.adapters.options import vol_from_mark
from agent.chain.reader import PortfolioReader
from agent.localnet import Localnet
from agent.localnet.chain import LocalChain
from agent.localnet.seed import option_series_id
from agent.localnet.world import MAX_UINT256
from agent.model import OptionPosition, OptionSeries, PerpMarket, PerpPosition
from agent.planner import prices_usd
from agent.policy import Policy
from agent.risk.portfolio import risk_report, value_usd, years_to_expiry

WAD = 10**18


def test_snapshot_reads_both_venues_in_the_chains_one_batch(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy]
) -> None:
    policy = demo_policy("delta-neutral-lp")
    owner = policy.portfolio.account
    # Give the LP portfolio options too, so that one snapshot holds an Aave account, an LP, a perp and options.
    options = chain.at("OptionsMarket", localnet.world.contracts["OptionsMarket"])
    usdc = chain.at("MintableERC20", localnet.world.tokens["USDC"])
    chain.send(usdc.functions.approve(options.address, MAX_UINT256), owner)
    bought = [option_series_id(chain, localnet.world, is_call, 2_000, 30) for is_call in (True, False)]
    for series_id in bought:
        chain.send(options.functions.buy(series_id, 2 * WAD, 10**12), owner)
    requests: collections.Counter[tuple[int, str]] = collections.Counter()
    reader = PortfolioReader(policy, on_request=lambda i, m, o: requests.update([(i, m)]))
    reader.read()
    requests.clear()

    snapshot = reader.read()

    assert sum(requests.values()) == 2 and set(requests) == {(0, "eth_getBlockByNumber"), (0, "eth_call")}
    (perp,) = [p for p in snapshot.positions if isinstance(p, PerpPosition)]
    perp_contract = chain.at("PerpMarket", localnet.world.contracts["PerpMarket"])
    size, entry, margin, owed = perp_contract.functions.position(owner).call()
    assert (perp.size_underlying, perp.entry_price_usd) == (size / WAD, entry / WAD) == (-5.0, entry / WAD)
    assert perp.margin_usd == pytest.approx((margin - owed) / WAD, abs=1e-6)
    (market,) = [m for m in snapshot.markets if isinstance(m, PerpMarket)]
    assert market.skew_underlying == perp_contract.functions.skew().call() / WAD
    held = sorted((p for p in snapshot.positions if isinstance(p, OptionPosition)), key=lambda p: p.series_id or 0)
    assert [(p.series_id, p.quantity) for p in held] == [(i, 2.0) for i in sorted(bought)]
    series = [m for m in snapshot.markets if isinstance(m, OptionSeries)]
    assert len(series) == options.functions.seriesCount().call()
    for s in series:
        mark, spot, strike, t_years, vol, rate = options.functions.quote(s.series_id).call()
        assert (s.mark_price_usd, s.spot_usd, s.strike_usd, s.vol_annual) == (mark / WAD, spot / WAD, strike / WAD,
                                                                              vol / WAD)
        # A venue that quoted only its price would give the same vol back.
        implied = vol_from_mark(s.mark_price_usd, s.is_call, s.spot_usd, s.strike_usd, t_years / WAD, rate / WAD)
        assert implied == pytest.approx(s.vol_annual, rel=1e-6)


def test_portfolio_greeks_include_the_venues_and_equal_finite_differences(
    localnet: Localnet, chain: LocalChain, demo_policy: Callable[[str], Policy]
) -> None:
    snapshot = PortfolioReader(demo_policy("leveraged-long")).read()
    lp_snapshot = PortfolioReader(demo_policy("delta-neutral-lp")).read()
    book = snapshot.positions + lp_snapshot.positions
    assert {type(p).__name__ for p in book} == {"AaveAccount", "LpPosition", "PerpPosition", "OptionPosition"}
    prices, now = prices_usd(snapshot), snapshot.timestamp
    spot = prices["WETH"]

    report = risk_report(book, "WETH", prices, now)

    def total(spot_factor: float | np.ndarray, vol_factor: float = 1.0) -> np.ndarray:
        return sum(value_usd(p, "WETH", prices, now, spot_factor=spot_factor, vol_factor=vol_factor) for p in book)

    h = 1e-4
    up, mid, down = total(np.array([1 + h, 1.0, 1 - h]))
    delta_usd = (up - down) / (2 * h)  # dV/dS · S
    gamma_usd_1pct = (up - 2 * mid + down) / h**2 * 0.01  # d²V/dS² · S · 0.01 S
    vega_usd_1vol = (total(1.0, 1 + h) - total(1.0, 1 - h)) / (2 * h) / 100 / _vol(book)
    assert report.total.delta_usd == pytest.approx(delta_usd, rel=1e-6)
    assert report.total.gamma_usd_1pct == pytest.approx(gamma_usd_1pct, rel=1e-4)
    assert report.total.vega_usd_1vol == pytest.approx(vega_usd_1vol, rel=1e-6)
    # The options are valued at the venue's own price; the perp at its equity at the feed price.
    for position in book:
        if isinstance(position, OptionPosition):
            assert position.mark_price_usd is not None and years_to_expiry(position.expiry_ts, now) > 0
            assert float(value_usd(position, "WETH", prices, now)) == pytest.approx(
                position.mark_price_usd * position.quantity, rel=1e-6)
        if isinstance(position, PerpPosition):
            assert float(value_usd(position, "WETH", prices, now)) == pytest.approx(
                position.margin_usd + position.size_underlying * (spot - position.entry_price_usd))
    labels = [r.label for r in report.positions]
    assert any(label.startswith("perp:") for label in labels) and any(label.startswith("option:") for label in labels)


def _vol(book: tuple[object, ...]) -> float:
    """The vol factor scales every option's vol alike: the book's options share one vol here (one put)."""
    vols = {p.vol_annual for p in book if isinstance(p, OptionPosition)}
    assert len(vols) == 1
    return vols.pop()
