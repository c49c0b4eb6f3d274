"""The crash replay on the local chain with the real Aave v3 and Uniswap v3: on 31 hours of 2020-03-12 (rescaled to
start at $2,000), the liquidator liquidates the unmanaged twin at the bar's low with a real `liquidationCall` and
cannot touch the account the daemon keeps (the demo's Safe, through its keeper module); and the health-factor
path of each matches the backtest's of the same window, run with the new market model (the endogenous pool, Aave
rates from the strategies at a utilisation path, the gas model), within HF_TOLERANCE.

The backtest's book is the one the local world seeds for `leveraged-long` (the looped long: 199,450 USD of WETH
against 97,000 USDC, nothing idle: `config/portfolio.leveraged-long.yaml`), and its pool the local world's 0.05%
pool (50,000 WETH full range at $2,000, $200M). What still differs: Aave's interest on chain accrues at the local
reserves' own utilisation, the backtest's at the model's; the daemon's swaps fill in the chain's pool, the backtest's
in the simulated one (same depth, so the same fills to a few base units)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.policy import load_policy
from agent.sim.backtest import run_backtest
from agent.sim.market import load_prices, parse_date
from agent.sim.portfolio import PoolRange, load_portfolio
from agent.sim.replay import run_replay

ROOT = Path(__file__).resolve().parents[2]
HF_TOLERANCE = 1e-3  # relative, per bar


def test_replay_liquidates_the_unmanaged_twin_not_the_managed_account_and_matches_the_backtest() -> None:
    policy = load_policy(ROOT / "config" / "backtest" / "policy.leveraged-long.yaml")
    path = load_prices(ROOT / "config" / "market" / "eth_usd_1h.2020-03-crash.csv",
                       parse_date("2020-03-12T00:00", "from"), parse_date("2020-03-13T06:00", "to"))
    assert len(path) == 31

    replay = run_replay(policy, path)
    spec = load_portfolio(ROOT / "config" / "portfolio.leveraged-long.yaml")
    local_pool = spec.market.pool.model_copy(update={"ranges": (PoolRange(range="full", usd=200_000_000.0),)})
    spec = spec.model_copy(update={"market": spec.market.model_copy(update={"pool": local_pool})})
    backtest = run_backtest(spec, path, policy)

    figures = replay.figures()
    managed = replay.runs["policy"].policy
    assert managed is not None and managed.portfolio.executor.kind == "safe_module"  # the demo's Safe, its module
    assert figures["unmanaged"]["liquidations"] >= 1 and figures["unmanaged"]["min_health_factor"] < 1
    assert figures["policy"]["liquidations"] == 0 and figures["policy"]["min_health_factor"] > 1
    assert figures["policy"]["actions"] >= 1
    assert backtest.market.sources["aave_rates"].startswith("model") and backtest.market.sources["gas"].startswith(
        "model")
    for label in ("policy", "unmanaged"):
        on_chain, simulated = replay.runs[label], backtest.runs[label]
        assert [x.unix for x in on_chain.liquidations] == [x.unix for x in simulated.liquidations], label
        for ours, theirs in ((on_chain.health_factor, simulated.health_factor),
                             (on_chain.health_factor_bar_min, simulated.health_factor_bar_min)):
            finite = np.isfinite(ours)
            assert (finite == np.isfinite(theirs)).all(), label
            assert np.max(np.abs(ours[finite] / theirs[finite] - 1)) < HF_TOLERANCE, label
