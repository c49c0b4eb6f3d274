"""The guard's limits at their edges: a chunk planned at the per-transaction cap passes despite floating point, and
the turnover cap never holds back a deleverage that only lowers risk (it still holds everything else)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.execution.guard import Guard
from agent.execution.journal import Journal
from agent.execution.metrics import ExecutionMetrics
from agent.model import AaveAccount, Action, ChainSnapshot, Plan, Snapshot
from tests.unit.policy_support import OWNER, local_policy

POLICY = local_policy("p", """\
bands:
  health_factor: {min: 1.5, target: 1.8, max: 3.0}
limits: {max_notional_per_tx_usd: 10000, max_daily_turnover_usd: 15000, max_gas_price_gwei: 200}
""")


def snapshot(health_factor: float) -> Snapshot:
    account = AaveAccount("localnet", OWNER, (), reported_health_factor_wad=int(health_factor * 10**18))
    chain = ChainSnapshot("localnet", 31337, 100, "0x" + "00" * 32, 1_700_000_000, 10**9, (account,), (), (), (), ())
    return Snapshot("p", OWNER, "WETH", (chain,))


def plan(*actions: Action) -> Plan:
    return Plan("p", (("localnet", 100),), actions, "test")


def action(kind: str, notional_usd: float, predicted_hf: float | None = None) -> Action:
    return Action(kind, "localnet", "aave_v3", "USDC", 10**6, notional_usd, "test",
                  predicted_health_factor=predicted_hf)


def guard(tmp_path: Path) -> Guard:
    return Guard(POLICY, Journal(tmp_path / "journal.sqlite"), tmp_path / "KILL", {},
                 ExecutionMetrics(CollectorRegistry()), lambda: 1_700_000_000.0)


def test_a_chunk_at_the_per_transaction_cap_passes_despite_floating_point(tmp_path: Path) -> None:
    chunks = [action("repay", 10_000.000000000002, 1.6)]
    assert [r.rule for r in guard(tmp_path).check_plan(plan(*chunks), snapshot(1.6))] == []
    assert [r.rule for r in guard(tmp_path).check_plan(plan(action("repay", 10_001.0)), snapshot(1.6))] == ["notional"]


def test_the_turnover_cap_never_blocks_a_deleverage_that_only_lowers_risk(tmp_path: Path) -> None:
    deleverage = plan(action("withdraw", 8_000), action("repay", 8_000, predicted_hf=1.8))  # 16,000 > 15,000
    assert [r.rule for r in guard(tmp_path).check_plan(deleverage, snapshot(1.3))] == []
    # the cap still holds a plan that adds risk, and a "deleverage" predicted to leave the account worse off
    borrow = plan(action("borrow", 8_000), action("borrow", 8_000, predicted_hf=1.7))
    assert [r.rule for r in guard(tmp_path).check_plan(borrow, snapshot(2.4))] == ["turnover"]
    worse = plan(action("withdraw", 8_000), action("repay", 8_000, predicted_hf=1.2))
    assert [r.rule for r in guard(tmp_path).check_plan(worse, snapshot(1.3))] == ["turnover"]
