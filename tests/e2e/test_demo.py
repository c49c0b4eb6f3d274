"""`make demo`, the main job, as a user runs it: status, the scripted crash and rally under the daemon, a report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.count("│") > 3]


def test_demo_runs_the_daemon_through_a_crash_and_a_rally_without_a_liquidatable_step(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "agent.cli", "demo", "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-2000:]
    table = rows(result.stdout)
    names = ("leveraged-long", "delta-neutral-lp", "lst-loop", "cross-protocol")
    status = {r[0]: r for r in table if len(r) == 5 and r[0] in names}  # portfolio (its Safe below), HF, …
    assert status["leveraged-long"][1] == "1.6963" and status["leveraged-long"][3] == "97,000.00"
    assert status["delta-neutral-lp"][1] == "1.8140" and status["delta-neutral-lp"][4] == "1,600–2,500"
    # one row per step and portfolio: step, WETH USD, depeg, portfolio, HF, delta USD, actions, liquidatable
    step_rows = [r for r in table if len(r) == 8 and r[3] in names]
    steps = [r for r in step_rows if r[0]]
    assert len(steps) >= 24 and {r[3] for r in step_rows} == set(names) and all(r[7] == "no" for r in step_rows)
    assert [r[2] for r in steps if r[0].endswith("depeg")] == ["2%", "4%", "6%", "8%"]
    # one row per plan, each one keeper transaction: the looped long's gap is a flash-loan recipe back to target
    plans = [r for r in table if len(r) == 8 and r[0] in status]
    unconfirmed = [r for r in plans if r[7] != "confirmed"]
    # Known open defect: after the $967 gap the cross-protocol recipe (about 47 calls) can miss a swap minimum once;
    # it reverts whole (nothing half-applied) and the next cycle's recipe lands. Every other plan confirms.
    assert all(r[0] == "cross-protocol" and r[7] == "failed" for r in unconfirmed), unconfirmed
    assert plans and {r[0] for r in plans if r[7] == "confirmed"} == set(names)
    long_plans = [r for r in plans if r[0] == "leveraged-long"]
    flash = [r for r in long_plans if r[1].startswith("flash loan")]
    assert flash and all(float(r[5]) < 1.1 and float(r[6]) >= 1.78 for r in flash), long_plans
    assert all(float(r[6]) >= float(r[5]) for r in long_plans)  # a deleverage only raises the health factor
    report = {r[0]: r for r in table if len(r) == 7 and r[0] in status}
    assert set(report) == set(names)
    assert all(int(r[4]) > 0 for r in report.values())  # each portfolio had confirmed transactions
    assert (tmp_path / "demo" / "journal.sqlite").exists() and "Traceback" not in result.stderr
