"""Errors the user can cause, each with the exit code the CLI turns it into.

Exit codes (the CLI's contract, also listed in `agent/cli.py`):

| code | meaning |
|---|---|
| 0 | success |
| 1 | unexpected error: traceback in the log, one line to the user |
| 2 | bad input: an invalid policy, settings or command-line argument |
| 3 | chain unavailable: no RPC endpoint of a chain answers |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes of the `ballast` command."""

    OK = 0
    UNEXPECTED = 1
    BAD_INPUT = 2
    CHAIN_UNAVAILABLE = 3


class BallastError(Exception):
    """An error the user can fix; the CLI prints `lines()` and exits with `exit_code`, never a traceback.

    Its text must never hold a secret: callers redact URLs (`agent.telemetry.redact_url`) before raising.
    """

    exit_code: ExitCode = ExitCode.UNEXPECTED

    def lines(self) -> list[str]:
        """Returns the problem as one or more self-contained lines for the terminal."""
        return [str(self)]

    def to_json(self) -> dict[str, Any]:
        """Returns the problem as a JSON-ready mapping for `--json` output."""
        return {"problems": self.lines()}


class UserInputError(BallastError):
    """Bad input from the user: a file, an argument or a setting."""

    exit_code = ExitCode.BAD_INPUT


class ChainUnavailable(BallastError):
    """No endpoint of a chain answered; retrying later may succeed."""

    exit_code = ExitCode.CHAIN_UNAVAILABLE


@dataclass(frozen=True)
class Issue:
    """One problem of an input file or of the settings, rendered as `FILE:LINE: field.path: message`."""

    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return ": ".join(part for part in (where, self.field, self.message) if part)


class IssuesError(UserInputError):
    """Bad input with one issue per problem found; all problems are reported, not just the first."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))

    def lines(self) -> list[str]:
        """Returns one line per issue, in the order found."""
        return [str(issue) for issue in self.issues]

    def to_json(self) -> dict[str, Any]:
        """Returns the rendered lines and the issues as mappings (source, line, field, message)."""
        return {"problems": self.lines(), "issues": [asdict(issue) for issue in self.issues]}


class PolicyError(IssuesError):
    """The policy file cannot be read, parsed or validated."""


class SettingsError(IssuesError):
    """The runtime settings (environment, `.env`) do not validate."""
