"""The `ballast` command line.

Every error the user can cause becomes one line per problem on stderr (with `--json`, one JSON object on
stdout) and a documented exit code, never a traceback. `user_errors` does it for every command:

| code | meaning |
|---|---|
| 0 | success |
| 1 | unexpected error: its traceback goes to the log, one line to the user |
| 2 | bad input: an invalid policy, settings or arguments (`agent.errors.UserInputError`) |
| 3 | chain unavailable: no RPC endpoint of a chain answers (`agent.errors.ChainUnavailable`) |
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import structlog
import typer

from agent import __version__
from agent.console import make_console, native_stdout_to_stderr, progress
from agent.errors import BallastError, ExitCode, UserInputError
from agent.policy import Policy, load_policy, policy_json_schema_text
from agent.settings import load_settings, policy_variables
from agent.telemetry import configure_logging

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Ballast: keeps an on-chain portfolio in its risk bands."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ballast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Ballast command line."""


@contextmanager
def user_errors(as_json: bool = False) -> Iterator[None]:
    """Runs the block; turns what it raises into output and an exit code (see the module docstring).

    A BallastError becomes its lines on stderr (with `as_json`, one JSON object on stdout) and its exit code;
    any other exception is logged with its traceback and becomes one line and exit code 1.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise  # Typer's own control flow and usage errors
    except BallastError as error:
        _fail(error.lines(), error.to_json(), error.exit_code, as_json)
    except Exception as error:
        if not structlog.is_configured():
            configure_logging()
        structlog.get_logger(__name__).exception("unexpected error")
        # The exception's text may hold a secret (a URL with a key); only its type is shown here.
        line = f"error: unexpected {type(error).__name__}; the traceback is in the log"
        _fail([line], {"problems": [line]}, ExitCode.UNEXPECTED, as_json)


def _fail(lines: list[str], details: dict[str, Any], code: ExitCode, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"ok": False, "exit_code": int(code), **details}))
    else:
        for line in lines:
            typer.echo(line, err=True)
    raise typer.Exit(int(code))


localnet_app = typer.Typer(no_args_is_help=True, help="The local chain with real Aave v3 and Uniswap v3.")
app.add_typer(localnet_app, name="localnet")

STATE_DIR_OPTION = typer.Option(
    None, "--state-dir", help="Where localnet.json and policies/ are written (default: BALLAST_STATE_DIR, ./.state)."
)


@localnet_app.command("up")
def localnet_up(
    state_dir: Path | None = STATE_DIR_OPTION,
    port: int = typer.Option(0, "--port", help="Port for anvil (0: a free one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object once ready."),
) -> None:
    """Start anvil, deploy the local world, seed both demo portfolios, and run until Ctrl-C or SIGTERM."""
    from agent.localnet.demo import serve

    with user_errors():
        serve(make_console(stderr=as_json), state_dir or load_settings().state_dir, port, as_json)


@app.command("demo")
def demo(state_dir: Path | None = STATE_DIR_OPTION) -> None:
    """Start the local chain, seed the demo portfolios, print their status read from the chain, and stop."""
    from agent.localnet.demo import run_demo

    with user_errors():
        run_demo(make_console(), state_dir or load_settings().state_dir)


@app.command("check-policy")
def check_policy(
    file: Annotated[
        Path | None, typer.Argument(metavar="FILE", help="The policy YAML file.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    write_schema: Annotated[
        Path | None, typer.Option(metavar="PATH", help="First write the policy JSON schema to PATH.")
    ] = None,
) -> None:
    """Validate a policy file: `ok: …` and exit 0, or one line per problem and exit 2."""
    with user_errors(as_json):
        result: dict[str, Any] = {"ok": True}
        if write_schema is not None:
            try:
                write_schema.write_text(policy_json_schema_text(), encoding="utf-8")
            except OSError as error:
                raise UserInputError(f"{write_schema}: cannot write ({error.strerror})") from None
            result["schema"] = str(write_schema)
        if file is None and write_schema is None:
            raise UserInputError("check-policy: expected a policy FILE or --write-schema PATH")
        if file is not None:
            policy = load_policy(file, env=policy_variables())
            result |= _summary(file, policy)
        if as_json:
            typer.echo(json.dumps(result))
        elif file is not None:
            chains, bands = result["chains"], ", ".join(result["bands"])
            typer.echo(f"ok: {result['portfolio']} ({len(chains)} chain{'s' * (len(chains) != 1)}, bands: {bands})")
        else:
            typer.echo(f"wrote {write_schema}")


def _summary(file: Path, policy: Policy) -> dict[str, Any]:
    return {
        "file": str(file),
        "portfolio": policy.portfolio.name,
        "chains": [
            {"name": chain.name, "chain_id": chain.chain_id, "protocols": chain.protocols.names()}
            for chain in policy.portfolio.chains
        ],
        "bands": policy.bands.names(),
        "mode": policy.execution.mode,
    }


@app.command("run")
def run(
    policies: Annotated[list[Path], typer.Option("--policy", metavar="FILE|DIR", help="A policy file or a directory "
                                                 "of them; repeat for several portfolios.")],
    drain_s: Annotated[float, typer.Option("--drain-s", help="On SIGTERM, how long to keep tracking sent "
                                           "transactions before exiting.")] = 60.0,
) -> None:
    """Run the daemon: every portfolio on its schedule until SIGTERM or SIGINT (SIGHUP reloads the policies)."""
    from agent import daemon

    with user_errors():
        settings = load_settings()
        configure_logging(settings.log_format, settings.log_level)
        daemon.run(policies, settings, drain_s)


@app.command("status")
def status(
    policy_file: Annotated[Path, typer.Option("--policy", metavar="FILE", help="The policy YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Read the portfolio's snapshot from its chains and print positions, prices and their age, health factors, and
    whether the journal at BALLAST_DB holds it paused."""
    from agent.chain.reader import PortfolioReader
    from agent.cycle import assess, jsonable
    from agent.execution.listing import journal_pause
    from agent.status import risk_tables, snapshot_json, snapshot_tables

    with user_errors(as_json):
        policy = load_policy(policy_file, env=policy_variables())
        paused = journal_pause(load_settings().db, policy.portfolio.name)
        reader = PortfolioReader(policy)
        try:
            snapshot = reader.read()
        finally:
            reader.close()
        report = assess(snapshot, policy)
        if as_json:
            typer.echo(json.dumps({**snapshot_json(snapshot), "risk": jsonable(dataclasses.asdict(report)),
                                   "paused": paused}))
            return
        make_console().print(snapshot_tables(snapshot), risk_tables(report))
        if paused is not None:
            make_console().print(f"paused: {paused} (resume: ballast journal --resume {policy.portfolio.name})")


@app.command("journal")
def journal(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many intents and events.")] = 20,
    portfolio: Annotated[str | None, typer.Option("--portfolio", help="Only this portfolio.")] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", metavar="PORTFOLIO", help="First lift the pause of PORTFOLIO.")
    ] = None,
) -> None:
    """List recent intents with their transactions, and recent events (refusals, deferrals, pauses), from the
    journal at BALLAST_DB."""
    from agent.execution.journal import Journal
    from agent.execution.listing import journal_json, journal_tables
    from agent.settings import load_settings

    with user_errors(as_json):
        settings = load_settings()
        store = Journal(settings.db)
        try:
            if resume is not None:
                store.resume(resume)
            data = journal_json(store, portfolio, limit)
        finally:
            store.close()
        if as_json:
            typer.echo(json.dumps(data))
        else:
            make_console().print(journal_tables(data))


@app.command("once")
def once(
    policy_file: Annotated[Path, typer.Option("--policy", metavar="FILE", help="The policy YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    execute: Annotated[
        bool, typer.Option("--execute", help="Execute the plan for real (the policy must be in live mode).")
    ] = False,
) -> None:
    """Run one read → assess → plan cycle and print the risk report and the plan; nothing is sent without
    --execute."""
    from agent.chain.reader import PortfolioReader
    from agent.cycle import cycle_json, cycle_tables, run_cycle

    with user_errors(as_json):
        policy = load_policy(policy_file, env=policy_variables())
        settings = load_settings()
        configure_logging(settings.log_format, settings.log_level)
        if execute and policy.execution.mode != "live":
            raise UserInputError(f"once --execute: {policy_file} has execution.mode {policy.execution.mode}; "
                                 "set it to live to send transactions")
        reader = PortfolioReader(policy)
        execution = None
        try:
            result = run_cycle(policy, reader)
            if execute:
                from agent.execution.executor import open_executor

                executor = open_executor(policy, settings)
                execution = executor.execute_plan(result.plan, result.snapshot, wait_s=60.0)
                if execution.intents and all(i.state == "confirmed" for i in execution.intents):
                    executor.read_back(reader.read())  # a miss pauses the portfolio
        finally:
            reader.close()
        if as_json:
            output = cycle_json(result)
            if execution is not None:
                output["execution"] = execution.to_json()
            typer.echo(json.dumps(output))
        else:
            make_console().print(cycle_tables(result))
            if execution is not None:
                states = ", ".join(f"{i.kind} {i.state}" for i in execution.intents) or "nothing to send"
                make_console().print(execution.deferred or "; ".join(str(r) for r in execution.refusals) or states)


def _window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    from agent.sim.market import parse_date

    return (parse_date(start, "--from") if start else None, parse_date(end, "--to") if end else None)


@app.command("backtest")
def backtest(
    policy_file: Annotated[Path, typer.Option("--policy", metavar="FILE", help="The policy YAML file.")],
    portfolio_file: Annotated[Path, typer.Option("--portfolio", metavar="FILE", help="The starting portfolio "
                                                 "(e.g. config/portfolio.leveraged-long.yaml).")],
    prices: Annotated[Path, typer.Option("--prices", metavar="CSV", help="Hourly OHLCV of the underlying.")],
    start: Annotated[str | None, typer.Option("--from", metavar="DATE", help="First bar (UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="DATE", help="Last bar or day (UTC).")] = None,
    alt_policies: Annotated[list[Path] | None, typer.Option("--alt-policy", metavar="FILE",
                                                            help="An alternative policy; repeatable.")] = None,
    alt_delta_bands: Annotated[list[float] | None, typer.Option(
        "--alt-delta-band", metavar="USD", help="The policy with its delta band at target ± USD; repeatable.")] = None,
    sweeps: Annotated[list[str] | None, typer.Option(
        "--sweep", metavar="FIELD=V1,V2", help="Run the policy with FIELD at each value (a band: its half-width) "
        "and draw the cost versus tracking-error frontier; repeatable.")] = None,
    gas_file: Annotated[Path | None, typer.Option("--gas", metavar="CSV", help="Gas prices (columns unix, gwei); "
                                                  "default: the portfolio file's gas model.")] = None,
    vol_file: Annotated[Path | None, typer.Option("--implied-vol", metavar="CSV", help="Daily implied vol "
                                                  "(columns date, dvol: Deribit DVOL) for option marks.")] = None,
    periodic_hours: Annotated[float, typer.Option("--periodic-hours", help="The periodic baseline's interval.")]
    = 24.0,
    periodic_move_pct: Annotated[float, typer.Option("--periodic-move-pct", help="The periodic baseline's price "
                                                     "move trigger, %.")] = 5.0,
    report_dir: Annotated[Path | None, typer.Option("--report", metavar="DIR",
                                                    help="Write PNG charts and index.html here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the portfolio along the price path in a simulated market: unmanaged, under the hf_only and periodic
    baselines, managed by the policy, and under each alternative and sweep variant, side by side."""
    from agent.sim.backtest import FIXED, alternative_label, parse_sweep, run_backtest, with_delta_band
    from agent.sim.conditions import conditions
    from agent.sim.market import load_prices
    from agent.sim.portfolio import load_portfolio

    with user_errors(as_json):
        policy = load_policy(policy_file, env=policy_variables())
        spec = load_portfolio(portfolio_file)
        path = load_prices(prices, *_window(start, end))
        if periodic_hours <= 0 or periodic_move_pct <= 0:
            raise UserInputError("--periodic-hours and --periodic-move-pct: expected positive numbers")
        for text in sweeps or []:
            parse_sweep(text)
        market = conditions(path, spec.market, gas_file, vol_file)
        alternatives: dict[str, Policy] = {}
        for file in alt_policies or []:
            alternatives[alternative_label(file, {*FIXED, *alternatives})] = load_policy(file, env=policy_variables())
        for width in alt_delta_bands or []:
            alternatives[f"delta ±{width:g}"] = with_delta_band(policy, width)
        with native_stdout_to_stderr(), progress(make_console(stderr=True), not as_json) as bar:
            task = bar.add_task("backtest", total=None)

            def on_run(label: str, done: int, total: int) -> None:
                bar.update(task, description=f"backtest: {label}", completed=done, total=total)

            result = run_backtest(spec, path, policy, alternatives, sweeps or (), market,
                                  (periodic_hours, periodic_move_pct), on_run)
        _print_runs(result, policy, report_dir, as_json)


def _print_runs(result: Any, policy: Policy, report_dir: Path | None, as_json: bool) -> None:
    """Print a backtest's or a replay's runs as a table or one JSON object, and write the report if asked."""
    from agent.sim.charts import write_report
    from agent.sim.report import table

    output = result.to_json()
    if report_dir is not None:
        frontier = result.frontier() if hasattr(result, "frontier") else None
        output["report"] = str(write_report(report_dir, result.title(), result.runs, policy, result.figures(),
                                            result.notes(), frontier))
    if as_json:
        typer.echo(json.dumps(output))
    else:
        make_console().print(table(result.title(), result.figures()))
        if report_dir is not None:
            make_console().print(f"report: {output['report']}")


@app.command("replay")
def replay(
    policy_file: Annotated[Path, typer.Option("--policy", metavar="FILE", help="The policy YAML file (its "
                                              "portfolio names the demo portfolio to replay).")],
    prices: Annotated[Path, typer.Option("--prices", metavar="CSV", help="Hourly OHLCV of the underlying.")],
    start: Annotated[str, typer.Option("--from", metavar="DATE", help="First bar (UTC).")],
    end: Annotated[str, typer.Option("--to", metavar="DATE", help="Last bar or day (UTC).")],
    report_dir: Annotated[Path | None, typer.Option("--report", metavar="DIR",
                                                    help="Write PNG charts and index.html here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Replay the price path on a fresh local chain with the real Aave v3 and Uniswap v3: feeds and pools follow
    the path (rescaled to start at the demo's $2,000), a liquidator liquidates what it can, and the daemon keeps
    the demo portfolio; an unmanaged twin of it runs alongside."""
    from agent.sim.market import load_prices
    from agent.sim.replay import run_replay

    with user_errors(as_json):
        policy = load_policy(policy_file, env=policy_variables())
        path = load_prices(prices, *_window(start, end))
        # The daemon's cycle lines would drown the report: warnings and errors only, on stderr.
        configure_logging(load_settings().log_format, "warning")
        with native_stdout_to_stderr(), progress(make_console(stderr=True), not as_json) as bar:
            task = bar.add_task("replay", total=len(path))
            result = run_replay(policy, path, on_bar=lambda i, total: bar.update(task, completed=i))
        _print_runs(result, policy, report_dir, as_json)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
