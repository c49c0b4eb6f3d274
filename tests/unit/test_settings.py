"""Runtime settings from BALLAST_* environment variables and a .env file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.errors import SettingsError
from agent.settings import load_settings, policy_variables

KEY = "0x" + "ab" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BALLAST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_those_of_design() -> None:
    settings = load_settings()

    assert settings.db == "./ballast.sqlite"
    assert settings.metrics_addr == "127.0.0.1:9108"
    assert settings.kill_switch == Path("KILL")
    assert settings.state_dir == Path(".state")
    assert (settings.log_format, settings.log_level) == ("auto", "info")
    assert settings.private_key is None and settings.keystore is None


def test_environment_variables_with_the_prefix_set_the_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_METRICS_ADDR", "0.0.0.0:9200")
    monkeypatch.setenv("BALLAST_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("BALLAST_KEYSTORE", "/run/secrets/key.json")

    settings = load_settings()

    assert settings.metrics_addr == "0.0.0.0:9200"
    assert settings.log_level == "debug"
    assert settings.keystore == Path("/run/secrets/key.json")


def test_dotenv_file_sets_fields_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("BALLAST_DB=./from-file.sqlite\nBALLAST_LOG_FORMAT=json\nMAINNET_RPC_URL=https://x\n")
    monkeypatch.setenv("BALLAST_LOG_FORMAT", "console")

    settings = load_settings()

    assert settings.db == "./from-file.sqlite"
    assert settings.log_format == "console"


def test_private_key_never_appears_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_PRIVATE_KEY", KEY)

    settings = load_settings()

    assert settings.private_key is not None and settings.private_key.get_secret_value() == KEY
    assert "ab" * 32 not in repr(settings) + str(settings)


def test_malformed_private_key_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_PRIVATE_KEY", "0xnotakey-but-secret")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert raised.value.lines() == [
        "BALLAST_PRIVATE_KEY: expected 32 bytes of hex (64 hex digits, optionally after 0x), or several such keys "
        "separated by commas"
    ]


def test_each_portfolio_account_signs_with_its_own_key_of_several(monkeypatch: pytest.MonkeyPatch) -> None:
    from eth_account import Account

    from agent.chain.signer import SignerError, load_signer

    keys = ["0x" + f"{i:064x}" for i in (11, 12)]
    monkeypatch.setenv("BALLAST_PRIVATE_KEY", ",".join(keys))
    settings = load_settings()
    second = Account.from_key(keys[1]).address

    assert load_signer(settings, 31337, second).address == second
    with pytest.raises(SignerError, match="no key of account"):
        load_signer(settings, 31337, Account.from_key("0x" + "13".rjust(64, "0")).address)


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_PRIVATE_KEY", "")

    assert load_settings().private_key is None


@pytest.mark.parametrize("addr", ["9108", "localhost:", "localhost:http", "127.0.0.1:70000"])
def test_metrics_addr_must_be_host_and_port(monkeypatch: pytest.MonkeyPatch, addr: str) -> None:
    monkeypatch.setenv("BALLAST_METRICS_ADDR", addr)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    expected = f"BALLAST_METRICS_ADDR: expected host:port, e.g. 127.0.0.1:9108 (got {addr!r})"
    assert raised.value.lines() == [expected]


def test_every_invalid_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_LOG_FORMAT", "xml")
    monkeypatch.setenv("BALLAST_LOG_LEVEL", "loud")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert [line.split(":")[0] for line in raised.value.lines()] == ["BALLAST_LOG_FORMAT", "BALLAST_LOG_LEVEL"]


def test_policy_variables_come_from_dotenv_overridden_by_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("MAINNET_RPC_URL=https://from-file\nARCHIVE_RPC_URL=https://archive\n")
    monkeypatch.setenv("MAINNET_RPC_URL", "https://from-env")

    env = policy_variables()

    assert (env["MAINNET_RPC_URL"], env["ARCHIVE_RPC_URL"]) == ("https://from-env", "https://archive")
