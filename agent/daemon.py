"""The daemon: one scheduled cycle per portfolio (read → assess → plan → guard → execute → record), a fast watch
that runs a cycle early when the underlying moves, the health endpoints, and a lifecycle that survives months:
crash-only start (reconcile the journal first), SIGHUP reloads policies, SIGTERM/SIGINT drain and exit 0.

A portfolio executes only while this process holds its account's lease (the journal grants it to one executor at a
time): otherwise it is on standby — read, assessed and recorded, never signed for — and takes the lease over at the
next cycle its holder is gone (several replicas on one PostgreSQL journal). An intent still open once its fee bumps
and its cancellation's budget are spent is marked stuck: `/healthz` fails and `ballast_intents_stuck` rises.

This is the only module that knows about time and scheduling."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import make_wsgi_app

from agent import telemetry
from agent.chain.fees import stuck_after_s
from agent.chain.reader import PortfolioReader
from agent.cycle import CycleResult, decide
from agent.errors import BallastError, UserInputError
from agent.execution.executor import ExecutionReport, Executor, open_executor
from agent.execution.journal import Journal, plan_id
from agent.execution.lease import LeaseHeld, LeaseLost
from agent.planner import HedgeState
from agent.planner.bands import band_readings
from agent.policy import Policy, load_policy
from agent.settings import Settings, policy_variables

log = structlog.get_logger("agent.daemon")

HEALTHY_INTERVALS = 3  # /healthz fails once the last successful cycle is older than this many intervals
WATCH_INTERVAL_S = 1.0


def policy_files(paths: Iterable[Path]) -> list[Path]:
    """Return the policy files named by `paths`: files as given, directories as their *.yaml / *.yml files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    if not files:
        raise UserInputError("run: no policy files found (expected --policy FILE or a directory of *.yaml)")
    return files


def load_policies(paths: Iterable[Path]) -> dict[Path, Policy]:
    """Return every policy, validated; raises the first file's `PolicyError`, or a `UserInputError` when two
    files name the same portfolio."""
    policies: dict[Path, Policy] = {}
    names: dict[str, Path] = {}
    for path in policy_files(paths):
        policy = load_policy(path, env=policy_variables())
        name = policy.portfolio.name
        if name in names:
            raise UserInputError(f"{path}: portfolio {name!r} is already defined in {names[name]}")
        names[name] = path
        policies[path] = policy
    return policies


@dataclass
class Portfolio:
    """One managed portfolio: its policy, reader, executor and what the planner remembers between cycles."""

    path: Path
    policy: Policy
    reader: PortfolioReader
    executor: Executor
    hedge_state: HedgeState = field(default_factory=HedgeState)
    last_success_s: float | None = None
    last_spot_usd: float | None = None
    standby: str | None = None  # why this process does not execute it (another holds the lease), None: it does
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.policy.portfolio.name


class Daemon:
    """Runs every portfolio of `policies` on its own schedule until `stop()`; see the module docstring."""

    def __init__(
        self,
        policies: dict[Path, Policy],
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.journal = Journal(settings.db, clock)
        self.portfolios: dict[str, Portfolio] = {}
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.stopping = threading.Event()
        self.ready = False
        self._server: WSGIServer | None = None
        for path, policy in policies.items():
            self._add(path, policy)

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve the endpoints and schedule the cycles (each executor reconciled its journal when it was opened:
        startup and crash recovery are one code path)."""
        self._server = serve_endpoints(self.settings.metrics_addr, self)
        for portfolio in self.portfolios.values():
            self._schedule(portfolio)
        self.scheduler.add_job(self._watch, "interval", seconds=WATCH_INTERVAL_S, id="watch", max_instances=1,
                               coalesce=True)
        self.scheduler.start()
        self.ready = True
        log.info("daemon started", portfolios=sorted(self.portfolios), metrics=self.settings.metrics_addr)

    def stop(self, drain_s: float = 60.0) -> None:
        """Stop scheduling, let the cycle in flight finish, track sent transactions for up to `drain_s`, close."""
        self.stopping.set()
        self.ready = False
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        for portfolio in self.portfolios.values():
            settled = portfolio.standby is not None or portfolio.executor.wait(drain_s)
            if not settled:
                log.warning("open intents at shutdown", portfolio=portfolio.name,
                            intents=[i.id for i in self.journal.unresolved(portfolio.name)])
            portfolio.reader.close()
        self.journal.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        log.info("daemon stopped")

    def reload(self, paths: Sequence[Path]) -> None:
        """Re-read the policies (SIGHUP). A set that does not validate is refused whole and the old one kept."""
        try:
            policies = load_policies(paths)
        except BallastError as error:
            log.error("policy reload refused; keeping the running policies", problems=error.lines())
            return
        for portfolio in list(self.portfolios.values()):
            if portfolio.path not in policies:
                self.scheduler.remove_job(portfolio.name)
                self._retire(portfolio)
                del self.portfolios[portfolio.name]
        for path, policy in policies.items():
            current = self.portfolios.get(policy.portfolio.name)
            if current is not None and current.policy == policy:
                continue
            if current is not None:
                self.scheduler.remove_job(current.name)
                self._retire(current)
            self._schedule(self._add(path, policy))
        log.info("policies reloaded", portfolios=sorted(self.portfolios))

    def _add(self, path: Path, policy: Policy) -> Portfolio:
        executor = open_executor(policy, self.settings, clock=self.clock, journal=self.journal, start=False)
        portfolio = Portfolio(path, policy, PortfolioReader(policy), executor)
        self.portfolios[portfolio.name] = portfolio
        publish_bands(policy)
        self._take_lease(portfolio)  # and reconcile: startup and crash recovery are one code path
        return portfolio

    def _retire(self, portfolio: Portfolio) -> None:
        """Hands a replaced portfolio's lease over once its cycle in flight is done (the new executor takes it)."""
        with portfolio.lock:
            portfolio.executor.close()
            portfolio.reader.close()

    def _take_lease(self, portfolio: Portfolio) -> bool:
        """Starts the portfolio's executor, which takes its account's lease; returns whether this process holds it
        (False: on standby, with the holder named in `portfolio.standby`)."""
        metrics = portfolio.executor.metrics
        try:
            portfolio.executor.start()
        except LeaseHeld as held:
            if portfolio.standby != str(held):
                log.warning("standby: the account is leased elsewhere", portfolio=portfolio.name, holder=str(held))
            portfolio.standby = str(held)
            metrics.lease.labels(portfolio.name).set(0)
            return False
        if portfolio.standby is not None:
            log.info("lease taken over", portfolio=portfolio.name)
        portfolio.standby = None
        metrics.lease.labels(portfolio.name).set(1)
        return True

    def _schedule(self, portfolio: Portfolio) -> None:
        interval = portfolio.policy.triggers.interval_s
        self.scheduler.add_job(self.cycle, "interval", args=[portfolio.name], seconds=interval, id=portfolio.name,
                               max_instances=1, coalesce=True, misfire_grace_time=max(1, int(interval)),
                               next_run_time=_now_datetime())

    # --- the cycle ------------------------------------------------------------------------------------------------

    def cycle(self, name: str) -> CycleResult | None:
        """Run one cycle of portfolio `name`; errors are logged and counted, never raised into the scheduler."""
        portfolio = self.portfolios.get(name)
        if portfolio is None or self.stopping.is_set():
            return None
        with portfolio.lock:
            started = time.monotonic()
            try:
                result = decide(portfolio.reader.read(), portfolio.policy, portfolio.hedge_state, log_decision=False)
                if portfolio.standby is None or self._take_lease(portfolio):
                    report = portfolio.executor.execute_plan(result.plan, result.snapshot)
                    portfolio.executor.advance()
                    self._escalate(portfolio)
                else:
                    report = ExecutionReport(name, plan_id(result.plan), portfolio.policy.execution.mode,
                                             deferred=f"standby: {portfolio.standby}")
            except LeaseLost as lost:  # another process took the account over: this one stops signing for it
                portfolio.standby = str(lost)
                portfolio.executor.metrics.lease.labels(name).set(0)
                log.error("lease lost: standby", portfolio=name, problems=lost.lines())
                return None
            except Exception as error:  # a failed cycle is recorded and retried on the next tick
                telemetry.CYCLES.labels(name, "failed").inc()
                lines = error.lines() if isinstance(error, BallastError) else [type(error).__name__]
                log.error("cycle failed", portfolio=name, problems=lines, exc_info=not isinstance(error, BallastError))
                return None
            duration = time.monotonic() - started
            if not report.refusals and not report.deferred:  # only an accepted plan counts as the last hedge
                portfolio.hedge_state = result.state
            portfolio.last_success_s = self.clock()
            portfolio.last_spot_usd = result.report.spot_usd
            record(result, portfolio.policy, report, duration, self.clock())
            return result

    def _watch(self) -> None:
        """Run a portfolio's cycle now when its underlying moved more than `price_move_pct` since its last cycle."""
        for portfolio in list(self.portfolios.values()):
            if portfolio.last_spot_usd is None or portfolio.lock.locked():
                continue
            spot = portfolio.reader.underlying_price_usd()
            if spot is None:
                continue
            moved_pct = abs(spot / portfolio.last_spot_usd - 1) * 100
            if moved_pct > portfolio.policy.triggers.price_move_pct:
                log.info("price move", portfolio=portfolio.name, moved_pct=round(moved_pct, 3))
                portfolio.last_spot_usd = spot  # one early cycle per move
                self.scheduler.modify_job(portfolio.name, next_run_time=_now_datetime())

    def _escalate(self, portfolio: Portfolio) -> None:
        """Marks stuck every unresolved intent signed longer ago than its bumps and cancellation can take, and
        publishes how many the portfolio has."""
        execution = portfolio.policy.execution
        limit_s = stuck_after_s(execution.deadline_s, execution.replace_after_s)
        now = self.clock()
        for intent in self.journal.unresolved(portfolio.name):
            if intent.signed_at is not None and now - intent.signed_at > limit_s and intent.stuck_at is None:
                reason = (f"nonce {intent.nonce} open {now - intent.signed_at:.0f}s after signing: its fee bumps and "
                          "its cancellation's budget are spent; the account's later transactions wait behind it")
                if self.journal.mark_stuck(intent.id, reason):
                    log.error("intent stuck", portfolio=portfolio.name, intent=intent.id[:12], reason=reason)
        portfolio.executor.metrics.stuck.labels(portfolio.name).set(len(self.journal.stuck(portfolio.name)))

    # --- health ---------------------------------------------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        """Whether every portfolio's last successful cycle is younger than 3 of its intervals and none has a stuck
        intent, and why not."""
        now = self.clock()
        for portfolio in self.portfolios.values():
            limit = HEALTHY_INTERVALS * portfolio.policy.triggers.interval_s
            if portfolio.last_success_s is None or now - portfolio.last_success_s > limit:
                return False, f"{portfolio.name}: no successful cycle in the last {limit:g}s"
            stuck = self.journal.stuck(portfolio.name)
            if stuck:
                return False, (f"{portfolio.name}: intent {stuck[0].id[:12]} (nonce {stuck[0].nonce}) is stuck: "
                               "its cancellation did not mine within its fee budget")
        return True, "ok"


def record(result: CycleResult, policy: Policy, execution: ExecutionReport, duration_s: float, now_s: float) -> None:
    """Update the metrics and write the one log line of a cycle."""
    name = result.plan.portfolio
    report = result.report
    telemetry.CYCLES.labels(name, "ok").inc()
    telemetry.CYCLE_DURATION.labels(name).observe(duration_s)
    telemetry.LAST_SUCCESSFUL_CYCLE.labels(name).set(now_s)
    for account in report.accounts:
        telemetry.HEALTH_FACTOR.labels(name, account.chain).set(account.health_factor)
    telemetry.LIQUIDATION_DISTANCE.labels(name, "down").set(report.liquidation_distance_down_pct / 100)
    telemetry.LIQUIDATION_DISTANCE.labels(name, "up").set(report.liquidation_distance_up_pct / 100)
    for greek in ("delta_usd", "gamma_usd_1pct", "vega_usd_1vol", "theta_usd_1d", "rho_usd_1pct"):
        telemetry.GREEK.labels(name, greek).set(getattr(report.total, greek))
    for chain in result.snapshot.chains:
        for price in chain.prices:
            telemetry.ORACLE_AGE.labels(chain.chain, price.symbol).set(price.age_s)
            telemetry.ORACLE_STALE.labels(chain.chain, price.symbol).set(int(price.stale))
    for band in band_readings(report, policy):
        if not band.inside:
            telemetry.BAND_BREACHES.labels(name, band.name).inc()
    # A plan seen again (same snapshot block) reports its journaled intents, refused ones as failed.
    intents = execution.intents
    refused = bool(execution.refusals) or (bool(intents) and all(i.state == "failed" for i in intents))
    approved = not refused and not execution.deferred
    if approved:
        for action in result.plan.actions:
            telemetry.ACTIONS.labels(name, action.kind).inc()
            telemetry.ACTION_COST.labels(name, action.kind).inc(action.cost_usd)
    health = min((a.health_factor for a in report.accounts), default=math.inf)
    log.info(
        "cycle",
        portfolio=name,
        blocks=[f"{chain}:{block}" for chain, block in result.plan.blocks],
        health_factor=round(health, 6) if math.isfinite(health) else "inf",
        delta_usd=round(report.total.delta_usd, 2),
        gamma_usd_1pct=round(report.total.gamma_usd_1pct, 2),
        vega_usd_1vol=round(report.total.vega_usd_1vol, 2),
        decision=("act" if approved else "refused" if refused else "deferred") if result.plan.actions else "none",
        reason=result.plan.reason,
        actions=[f"{a.kind} {a.asset}" for a in result.plan.actions],
        refusals=[str(r) for r in execution.refusals] or None,
        deferred=execution.deferred or None,
        intents=[i.id[:12] for i in execution.intents] or None,
        mode=execution.mode,
        duration_s=round(duration_s, 3),
    )


def publish_bands(policy: Policy) -> None:
    """Export the policy's bands, so that dashboards draw each figure against its own band."""
    name = policy.portfolio.name
    for metric in policy.bands.names():
        band = getattr(policy.bands, metric)
        for bound in ("min", "target", "max"):
            telemetry.BAND.labels(name, metric, bound).set(getattr(band, bound))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
        pass


def serve_endpoints(addr: str, daemon: Daemon) -> WSGIServer:
    """Serve /metrics, /healthz and /readyz on `addr` (host:port) from a daemon thread; return the server."""
    metrics = make_wsgi_app(telemetry.REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ready = (daemon.ready, "ready" if daemon.ready else "starting")
            ok, why = daemon.healthy() if path == "/healthz" else ready
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [why.encode() + b"\n"]
        return metrics(environ, start_response)

    host, port = telemetry.split_host_port(addr)
    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="endpoints", daemon=True).start()
    return server


def run(paths: Sequence[Path], settings: Settings, drain_s: float = 60.0) -> None:
    """`ballast run`: start the daemon and block until SIGTERM or SIGINT; SIGHUP reloads the policies."""
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run would drown the cycle lines
    daemon = Daemon(load_policies(paths), settings)
    stop = threading.Event()
    hup = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: hup.set())
    daemon.start()
    while not stop.wait(0.2):
        if hup.is_set():
            hup.clear()
            daemon.reload(paths)
    log.info("stopping", reason="signal")
    daemon.stop(drain_s)


def _now_datetime() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)

