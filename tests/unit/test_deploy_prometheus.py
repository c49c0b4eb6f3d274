"""deploy/prometheus: promtool accepts the scrape config and the alert rules, and the rules' own unit tests
(deploy/prometheus/tests/alerts_test.yml) pass; every alert is labelled and annotated for the operator."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"

# What the issue asks the rules to watch, each by at least one alert.
REQUIRED_ALERTS = {
    "BallastHealthFactorNearMin",
    "BallastLiquidationDistanceSmall",
    "BallastAgentStale",
    "BallastAgentDown",
    "BallastTransactionsStuck",
    "BallastIntentStuck",
    "BallastTransactionsFailing",
    "BallastOracleStale",
    "BallastKillSwitchOn",
    "BallastPortfolioPaused",
}


def promtool() -> str:
    """Returns the promtool executable ($PROMTOOL, else PATH); fails the test when there is none."""
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: install the Debian package `prometheus` (make deps) or set PROMTOOL")
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = YAML(typ="safe").load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_alert_rules() -> None:
    result = run_promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_accepts_the_scrape_config_and_its_rule_file() -> None:
    result = run_promtool("check", "config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    # given the rule tests: health factor near and below min, agent stale and down, stuck and failed
    # transactions, kill switch, stale oracle, paused portfolio
    tested = {
        case["alertname"]
        for group in YAML(typ="safe").load(ALERT_TESTS.read_text())["tests"]
        for case in group["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {"BallastHealthFactorNearMin", "BallastHealthFactorBelowMin", "BallastAgentStale",
            "BallastIntentStuck"} <= tested
    # when promtool runs them, then every expected alert fires (and only then)
    result = run_promtool("test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    # given the rules with the health-factor margin dropped (near-min would then only fire below min)
    broken = ALERTS.read_text().replace("1.05 * ballast_band", "1.00 * ballast_band")
    assert broken != ALERTS.read_text()
    (tmp_path / "tests").mkdir()
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "tests" / "alerts_test.yml").write_text(ALERT_TESTS.read_text())
    # when the same rule tests run against it, then they fail on that alert
    result = run_promtool("test", "rules", tmp_path / "tests" / "alerts_test.yml")
    assert result.returncode != 0
    assert "BallastHealthFactorNearMin" in result.stdout + result.stderr


def test_every_concern_of_the_issue_has_an_alert() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "alert names must be unique"
    assert set(names) >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_a_summary_and_a_description(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in {"warning", "critical"}
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip()
    assert len(annotations.get("description", "").split()) >= 8, "a description says what to do"
