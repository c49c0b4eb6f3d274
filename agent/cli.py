"""The `ballast` command line. Every user-caused error becomes one line on stderr and a documented exit code."""

from __future__ import annotations

import typer

from agent import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ballast: keeps an on-chain portfolio in its risk bands.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ballast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Ballast command line."""


def main() -> None:
    app()
