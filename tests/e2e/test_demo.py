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
    status = {r[0]: r for r in table if len(r) == 6}
    assert status["leveraged-long"][2] == "1.6963" and status["leveraged-long"][4] == "97,000.00"
    assert status["delta-neutral-lp"][2] == "1.8140" and status["delta-neutral-lp"][5] == "1,600–2,500"
    steps = [r for r in table if len(r) == 7 and r[0].split()[-1] in ("crash", "gap", "rally")]
    assert len(steps) >= 20 and all(r[6] == "no" for r in steps)
    # one row per plan, each one keeper transaction: the looped long's gap is a flash-loan recipe back to target
    plans = [r for r in table if len(r) == 8 and r[0] in status]
    assert plans and all(r[7] == "confirmed" for r in plans)
    long_plans = [r for r in plans if r[0] == "leveraged-long"]
    flash = [r for r in long_plans if r[1].startswith("flash loan")]
    assert flash and all(float(r[5]) < 1.1 and float(r[6]) >= 1.78 for r in flash), long_plans
    assert all(float(r[6]) >= float(r[5]) for r in long_plans)  # a deleverage only raises the health factor
    report = {r[0]: r for r in table if len(r) == 7 and r[0] in status}
    assert set(report) == {"leveraged-long", "delta-neutral-lp"}
    assert all(int(r[4]) > 0 for r in report.values())  # each portfolio had confirmed transactions
    assert (tmp_path / "demo" / "journal.sqlite").exists() and "Traceback" not in result.stderr
