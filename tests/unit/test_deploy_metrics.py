"""The Grafana dashboard and the alert rules query only metrics the agent exports (`agent.telemetry.REGISTRY`,
with the executor's metrics that `agent.execution.metrics` registers in it), and the dashboard's queries are
valid PromQL."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent.execution.metrics import execution_metrics
from agent.telemetry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ballast.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Series each metric type puts in Prometheus (prometheus-client names a counter's family without `_total`).
_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "gauge": ("",),
    "stateset": ("",),
    "unknown": ("",),
}
# Series Prometheus itself adds to every scrape target.
_SCRAPE_SERIES = {"up"}

# Grafana's variables, replaced by a value of the right kind before promtool parses a query.
_GRAFANA_VALUES = {"$__range": "1h", "$__rate_interval": "5m", "$__interval": "1m"}
_GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MODIFIER = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_WORD = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*")
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan",
}


def exported_series() -> set[str]:
    """Returns every series name the agent's registry exposes to Prometheus, whether or not it has a sample yet."""
    execution_metrics(REGISTRY)  # what the daemon's executor registers in the same registry when it starts
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in _SERIES_SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def metric_names(expr: str) -> set[str]:
    """Returns the metric names a PromQL expression selects: every bare identifier that is not a function call,
    a keyword, a label name (inside `{}` or `by (…)`), a string or a duration. Grafana variables are removed."""
    text = _GRAFANA_VARIABLE.sub(" ", expr)
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = _MODIFIER.sub(" ", text)
    names = set()
    for match in _WORD.finditer(text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def grafana_query_metric_names(query: str) -> set[str]:
    """Returns the metric names of a Grafana Prometheus template query (`label_values(selector, label)`,
    `query_result(expr)`, or plain PromQL)."""
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    if label_values:
        return metric_names(label_values.group(1))
    if re.fullmatch(r"\s*(label_values|label_names|metrics)\(.*\)\s*", query):
        return set()  # label_values(label) or a metric-name regex: no series selected
    query_result = re.fullmatch(r"\s*query_result\((.*)\)\s*", query)
    return metric_names(query_result.group(1) if query_result else query)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside collapsed rows


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Returns (where, PromQL) for every panel target and every query variable of the dashboard."""
    queries = [
        (f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"])
        for panel in _panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else query or variable.get("definition", "")
            queries.append((f"variable {variable['name']}", f"__grafana_query__:{text}"))
    return queries


def unknown_metrics(queries: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Returns, for each query that selects a metric the agent does not export, those metric names."""
    known = exported_series() | _SCRAPE_SERIES
    problems = {}
    for where, expr in queries:
        if expr.startswith("__grafana_query__:"):
            names = grafana_query_metric_names(expr.removeprefix("__grafana_query__:"))
        else:
            names = metric_names(expr)
        if names - known:
            problems[where] = names - known
    return problems


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def alert_queries() -> list[tuple[str, str]]:
    groups = YAML(typ="safe").load(ALERTS.read_text())["groups"]
    return [(f"alert {rule.get('alert') or rule.get('record')}", rule["expr"]) for g in groups for rule in g["rules"]]


def used_metrics(queries: list[tuple[str, str]]) -> set[str]:
    return {name for _where, expr in queries if not expr.startswith("__grafana") for name in metric_names(expr)}


def test_the_registry_exports_the_documented_series() -> None:
    assert {
        "ballast_health_factor", "ballast_band", "ballast_rpc_requests_total", "ballast_build_info",
        "ballast_cycle_duration_seconds_bucket", "ballast_cycle_duration_seconds_count",
    } <= exported_series()
    assert "ballast_rpc_requests" not in exported_series()  # a counter is only ever seen with `_total`


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (portfolio, kind) (increase(ballast_actions_total{portfolio=~"$portfolio"}[$__range]))',
         {"ballast_actions_total"}),
        ('ballast_health_factor < on (portfolio) group_left () 1.05 * ballast_band{metric="health_factor"}',
         {"ballast_health_factor", "ballast_band"}),
        ("histogram_quantile(0.95, sum by (le) (rate(ballast_cycle_duration_seconds_bucket[5m]))) > 1e3",
         {"ballast_cycle_duration_seconds_bucket"}),
        ('time() - max_over_time(ballast_x[1h:5m] offset 5m) and up{job="ballast"} unless absent(y)', {
            "ballast_x", "up", "y"}),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_dashboard_query_uses_only_exported_metrics() -> None:
    queries = dashboard_queries(load_dashboard())
    assert len(queries) >= 20
    assert unknown_metrics(queries) == {}


def test_every_alert_uses_only_exported_metrics() -> None:
    queries = alert_queries()
    assert queries
    assert unknown_metrics(queries) == {}


def test_a_panel_or_variable_with_an_unknown_metric_is_reported() -> None:
    # given the dashboard with one more panel and one more variable on metrics the agent does not export
    dashboard = copy.deepcopy(load_dashboard())
    dashboard["panels"].append({
        "type": "timeseries", "title": "Typo", "targets": [{"refId": "A", "expr": "rate(ballast_cycle_total[5m])"}],
    })
    dashboard["templating"]["list"].append(
        {"name": "chain", "type": "query", "query": {"query": "label_values(ballast_chain_info, chain)"}}
    )
    # when checked, then both are named
    problems = unknown_metrics(dashboard_queries(dashboard))
    assert problems["panel 'Typo' target A"] == {"ballast_cycle_total"}
    assert problems["variable chain"] == {"ballast_chain_info"}


def test_the_dashboard_shows_what_operators_need() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "ballast-overview"
    used = used_metrics(dashboard_queries(dashboard))
    assert {
        "ballast_health_factor", "ballast_band", "ballast_liquidation_distance_ratio", "ballast_greek_usd",
        "ballast_actions_total", "ballast_action_cost_usd_total", "ballast_intents_unresolved",
        "ballast_intents_finished_total", "ballast_transactions_total", "ballast_guard_refusals_total",
        "ballast_rpc_requests_total", "ballast_oracle_age_seconds", "ballast_cycle_duration_seconds_bucket",
        "ballast_last_successful_cycle_timestamp_seconds", "ballast_kill_switch_engaged", "ballast_portfolio_paused",
    } <= used
    # health factor and each Greek are drawn against their bands
    exprs = [expr for _where, expr in dashboard_queries(dashboard)]
    for metric in ("health_factor", "delta_usd", "gamma_usd_1pct", "vega_usd_1vol"):
        assert any("ballast_band" in e and f'metric="{metric}"' in e for e in exprs), metric
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_the_alerts_watch_what_the_issue_asks() -> None:
    assert {
        "ballast_health_factor", "ballast_band", "ballast_liquidation_distance_ratio", "up",
        "ballast_last_successful_cycle_timestamp_seconds", "ballast_intents_unresolved",
        "ballast_intents_finished_total", "ballast_oracle_stale", "ballast_kill_switch_engaged",
        "ballast_portfolio_paused",
    } <= used_metrics(alert_queries())


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # given every panel query as a recording rule, Grafana's variables replaced by values of their kind
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool not found: install the Debian package `prometheus` (make deps) or set PROMTOOL")
    rules = []
    for index, (_where, expr) in enumerate(dashboard_queries(load_dashboard())):
        if expr.startswith("__grafana_query__:"):
            continue
        for variable, value in _GRAFANA_VALUES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{index}", "expr": _GRAFANA_VARIABLE.sub(".*", expr)})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    # when promtool parses them, then all are valid
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
