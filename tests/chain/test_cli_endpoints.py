"""At the CLI, an endpoint that answers malformed JSON, wrong-typed results or JSON-RPC errors is named by its index
and the next endpoint is tried; when none answers, `ballast status` and `ballast once` exit 3 with one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.localnet import Localnet
from agent.localnet.policies import render_policy
from tests.faults.proxy import Answer, Fault, FaultProxy, error, malformed, wrong_type

FAULTS: dict[str, Answer] = {
    "malformed JSON": malformed, "wrong-typed results": wrong_type,
    "method not found": error(-32601, "the method does not exist/is not available"),
    "header not found": error(-32000, "header not found"),
}


@pytest.fixture
def proxy(localnet: Localnet) -> Iterator[FaultProxy]:
    proxy = FaultProxy(localnet.rpc_url)
    try:
        yield proxy
    finally:
        proxy.close()


def policy_with(localnet: Localnet, tmp_path: Path, urls: list[str]) -> Path:
    name = "leveraged-long"
    text = render_policy(name, localnet.demo_accounts[name], localnet)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(f'rpc: ["{localnet.rpc_url}"]', "rpc: [" + ", ".join(f'"{u}"' for u in urls) + "]"))
    return path


@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_endpoint_is_named_and_the_next_one_answers(
    fault: str, localnet: Localnet, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    proxy.fault = Fault(FAULTS[fault])
    runner = CliRunner()
    for command in ("status", "once"):
        alone = runner.invoke(app, [command, "--policy", str(policy_with(localnet, tmp_path, [proxy.url])), "--json"])
        assert alone.exit_code == 3, (command, alone.output)
        assert "endpoint 0:" in alone.stdout and "unexpected" not in alone.output and "Traceback" not in alone.output
        assert proxy.url not in alone.output

        fallback = runner.invoke(app, [command, "--policy",
                                       str(policy_with(localnet, tmp_path, [proxy.url, localnet.rpc_url])), "--json"])
        assert fallback.exit_code == 0, (command, fallback.output)
