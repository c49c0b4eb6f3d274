"""`ballast check-policy`: ok line and exit 0, or one line per problem and exit 2, never a traceback."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from agent import cli
from agent.policy import policy_json_schema_text
from agent.telemetry import configure_logging

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "tests" / "data" / "policies"
EXAMPLE = ROOT / "config" / "policy.example.yaml"
MALFORMED = sorted(path.name for path in POLICIES.glob("*.yaml") if path.name != "valid-minimal.yaml")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    # A .env in the working directory would feed ${VAR} expansion: run from an empty directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BALLAST_TEST_UNSET_RPC_URL", raising=False)
    return CliRunner()


def test_example_policy_is_ok_with_exit_code_0(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["check-policy", str(EXAMPLE)])

    assert result.exit_code == 0
    assert result.stdout == (
        "ok: delta-neutral-lp (1 chain, bands: health_factor, delta_usd, stress_health_factor, gamma_usd_1pct, "
        "vega_usd_1vol)\n"
    )


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_policy_exits_2_with_file_line_problems_and_no_traceback(runner: CliRunner, name: str) -> None:
    path = POLICIES / name

    result = runner.invoke(cli.app, ["check-policy", str(path)])

    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith(f"{path}:") for line in lines)
    assert "Traceback" not in result.output


def test_missing_file_exits_2_with_one_line(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["check-policy", "absent.yaml"])

    assert (result.exit_code, result.stderr) == (2, "absent.yaml: no such file\n")


def test_json_error_lists_each_issue_with_its_line_and_field(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["check-policy", str(POLICIES / "wrong-type.yaml"), "--json"])

    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["exit_code"] == 2
    assert [(i["line"], i["field"]) for i in report["issues"]] == [(9, "portfolio.chains[0].chain_id")]


def test_json_success_summarises_the_policy(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["check-policy", str(POLICIES / "valid-minimal.yaml"), "--json"])

    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["portfolio"] == "fixture" and report["bands"] == ["health_factor"]
    assert report["chains"] == [{"name": "localnet", "chain_id": 31337, "protocols": ["aave_v3"]}]


def test_env_reference_is_expanded_from_a_dotenv_file_in_the_working_directory(runner: CliRunner) -> None:
    Path(".env").write_text("BALLAST_TEST_UNSET_RPC_URL=http://127.0.0.1:8545\n")

    result = runner.invoke(cli.app, ["check-policy", str(POLICIES / "missing-env-var.yaml")])

    assert result.exit_code == 0, result.stderr


def test_write_schema_writes_what_is_committed(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "schema.json"

    result = runner.invoke(cli.app, ["check-policy", "--write-schema", str(target)])

    assert result.exit_code == 0
    assert target.read_text() == policy_json_schema_text()


def test_no_file_and_no_schema_is_bad_input(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["check-policy"])

    assert (result.exit_code, result.stderr) == (2, "check-policy: expected a policy FILE or --write-schema PATH\n")


def test_unexpected_error_exits_1_with_one_line_and_the_traceback_in_the_log(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = io.StringIO()
    configure_logging("json", "info", stream=log)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("lost https://rpc.example/v3/SECRETKEY")

    monkeypatch.setattr(cli, "load_policy", broken)
    try:
        result = runner.invoke(cli.app, ["check-policy", str(EXAMPLE)])
    finally:
        structlog.reset_defaults()

    assert result.exit_code == 1
    assert result.stderr == "error: unexpected RuntimeError; the traceback is in the log\n"
    record = json.loads(log.getvalue())
    assert "Traceback" in record["exception"] and "SECRETKEY" not in log.getvalue()
