"""The crash replay on the local chain with the real Aave v3 and Uniswap v3: on 31 hours of 2020-03-12 (rescaled to
start at $2,000), the liquidator liquidates the unmanaged twin at the bar's low with a real `liquidationCall` and
cannot touch the managed account the daemon keeps (the demo's Safe, through its keeper module); and the
health-factor path of each matches the backtest's of the same window within 1e-3 (relative; observed ~5e-5:
Aave's interest differs from the backtest's rates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.policy import load_policy
from agent.sim.backtest import run_backtest
from agent.sim.market import load_prices, parse_date
from agent.sim.portfolio import load_portfolio
from agent.sim.replay import run_replay

ROOT = Path(__file__).resolve().parents[2]
HF_TOLERANCE = 1e-3


def test_replay_liquidates_the_unmanaged_twin_not_the_managed_account_and_matches_the_backtest() -> None:
    policy = load_policy(ROOT / "config" / "backtest" / "policy.leveraged-long.yaml")
    path = load_prices(ROOT / "config" / "market" / "eth_usd_1h.2020-03-crash.csv",
                       parse_date("2020-03-12T00:00", "from"), parse_date("2020-03-13T06:00", "to"))
    assert len(path) == 31

    replay = run_replay(policy, path)
    backtest = run_backtest(load_portfolio(ROOT / "config" / "portfolio.leveraged-long.yaml"), path, policy)

    figures = replay.figures()
    managed = replay.runs["managed"].policy
    assert managed is not None and managed.portfolio.executor.kind == "safe_module"  # the demo's Safe, its module
    assert figures["unmanaged"]["liquidations"] >= 1 and figures["unmanaged"]["min_health_factor"] < 1
    assert figures["managed"]["liquidations"] == 0 and figures["managed"]["min_health_factor"] > 1
    assert figures["managed"]["actions"] >= 1
    for label in ("managed", "unmanaged"):
        on_chain, simulated = replay.runs[label], backtest.runs[label]
        assert [x.unix for x in on_chain.liquidations] == [x.unix for x in simulated.liquidations], label
        for ours, theirs in ((on_chain.health_factor, simulated.health_factor),
                             (on_chain.health_factor_bar_min, simulated.health_factor_bar_min)):
            finite = np.isfinite(ours)
            assert (finite == np.isfinite(theirs)).all(), label
            assert np.max(np.abs(ours[finite] / theirs[finite] - 1)) < HF_TOLERANCE, label
