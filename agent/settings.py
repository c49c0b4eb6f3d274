"""Runtime settings from the environment (`BALLAST_` prefix) and a `.env` file; the environment wins.

What a deployment changes without touching the policy: where the journal and state live, the metrics address,
the key source, the kill switch and the logs. `config/settings.example.env` documents each setting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from dotenv import dotenv_values
from pydantic import AfterValidator, BeforeValidator, PositiveFloat, PositiveInt, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.chain.multicall import BatchLimits
from agent.errors import Issue, SettingsError
from agent.telemetry import LogFormat, LogLevel, split_host_port

ENV_PREFIX = "BALLAST_"
_PRIVATE_KEYS = re.compile(r"(0x)?[0-9a-fA-F]{64}(,(0x)?[0-9a-fA-F]{64})*")
# Never echoed back in an error, even when invalid.
_SECRET_FIELDS = frozenset({"private_key", "keystore_password"})


def _host_port(value: str) -> str:
    split_host_port(value)
    return value


def _private_key(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not _PRIVATE_KEYS.fullmatch(value.get_secret_value()):
        raise ValueError("expected 32 bytes of hex (64 hex digits, optionally after 0x), or several such keys "
                         "separated by commas")
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class Settings(BaseSettings):
    """Runtime settings; each field is read from `BALLAST_<FIELD>` (e.g. `BALLAST_METRICS_ADDR`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        # A .env file also holds the variables that policies reference (${MAINNET_RPC_URL}): not settings.
        extra="ignore",
        env_ignore_empty=True,  # `BALLAST_PRIVATE_KEY=` in a .env means unset, as in the example file
        frozen=True,
    )

    db: str = "./ballast.sqlite"
    """The journal: a SQLite file path, or a PostgreSQL URL (`postgresql://user@host:5432/db`)."""
    metrics_addr: Annotated[str, AfterValidator(_host_port)] = "127.0.0.1:9108"
    """host:port of /metrics, /healthz and /readyz."""
    keystore: Path | None = None
    """Encrypted JSON keystore of the executing account."""
    keystore_password: SecretStr | None = None
    """The keystore's password (prefer the file in production: the environment is visible to the process's user)."""
    keystore_password_file: Path | None = None
    """File holding the keystore's password."""
    private_key: Annotated[SecretStr | None, AfterValidator(_private_key)] = None
    """Raw private key, for the local chain only (the signer refuses it for any other chain id); several keys
    separated by commas when the daemon runs portfolios of several accounts (each uses the key of its account)."""
    kill_switch: Path = Path("./KILL")
    """While this file exists nothing is sent."""
    log_format: Annotated[LogFormat, BeforeValidator(_lower)] = "auto"
    """json, console, or auto (console on a terminal)."""
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = "info"
    """debug, info, warning, error or critical."""
    state_dir: Path = Path("./.state")
    """Where `ballast localnet up` writes localnet.json and policies/."""
    multicall_max_bytes: PositiveInt = 900_000
    """Call data per Multicall3 `eth_call` of the fleet's per-block batch (anvil refuses JSON bodies over 2 MB, geth
    over 5 MB); a larger batch is split."""
    multicall_max_calls: PositiveInt = 2_500
    """Calls per Multicall3 `eth_call` (a stand-in for the node's gas cap on calls: ~10k gas per call)."""
    multicall_gas: PositiveInt | None = None
    """Gas each batch `eth_call` asks for; unset, the node's default (the block gas limit on anvil)."""
    head_poll_s: PositiveFloat = 1.0
    """How often the daemon asks a chain for its newest block while it does not know the chain's block time; once it
    does, it asks just before the next block is due."""

    def batch_limits(self) -> BatchLimits:
        """Returns the size limits of one batch `eth_call`."""
        return BatchLimits(self.multicall_max_bytes, self.multicall_max_calls, self.multicall_gas)


def load_settings(env_file: Path | None = Path(".env")) -> Settings:
    """Returns the settings from the environment and `env_file` (None: environment only).

    Raises SettingsError with one `BALLAST_<FIELD>: what is expected` issue per invalid setting; a secret's
    value is never shown.
    """
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]  # pydantic-settings' init-only argument
    except ValidationError as error:
        issues = []
        for detail in error.errors():
            field = str(detail["loc"][0]) if detail["loc"] else ""
            message = detail["msg"].removeprefix("Value error, ").replace("Input should be ", "expected ")
            if field not in _SECRET_FIELDS:
                message += f" (got {detail['input']!r})"
            source = f"{ENV_PREFIX}{field.upper()}"
            issues.append(Issue(source, None, "", message))
        raise SettingsError(issues) from None


def policy_variables(env_file: Path | None = Path(".env")) -> dict[str, str]:
    """Returns the variables that `${VAR}` references in a policy expand from: `env_file`, overridden by the
    process environment (the same precedence as the settings)."""
    from_file = dotenv_values(env_file) if env_file is not None and env_file.is_file() else {}
    return {**{key: value for key, value in from_file.items() if value is not None}, **os.environ}
