"""The daemon: per chain, a follower of new blocks that reads every portfolio on the chain in one block-pinned batch
(`agent.chain.fleet`) and runs the cycle (read → assess → plan → guard → execute → record) of each portfolio whose
figures moved, most urgent first; a timer per portfolio as the upper bound for chains without new blocks; the
health endpoints; and a lifecycle that survives months: crash-only start (reconcile the journal first), SIGHUP
reloads policies, SIGTERM/SIGINT drain and exit 0.

A portfolio executes only while this process holds its account's lease (the journal grants it to one executor at a
time): otherwise it is on standby — read, assessed and recorded, never signed for — and takes the lease over at the
next cycle its holder is gone (several replicas on one PostgreSQL journal). An intent still open once its fee bumps
and its cancellation's budget are spent is marked stuck: `/healthz` fails and `ballast_intents_stuck` rises.

This is the only module that knows about time and scheduling."""

from __future__ import annotations

import logging
import signal
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from agent import telemetry
from agent.chain.fleet import ChainFleet, ChainKey, Fleet, seconds_per_block
from agent.chain.multicall import Block, PinningLost
from agent.chain.reader import PortfolioReader
from agent.cycle import CycleResult, decide, needs_assessment, urgency
from agent.endpoints import serve_endpoints
from agent.errors import BallastError
from agent.execution.executor import open_executor
from agent.execution.journal import Journal, plan_id
from agent.execution.lease import LeaseLost
from agent.execution.report import ExecutionReport
from agent.execution.watch import mark_stuck, take_lease
from agent.model import ChainSnapshot, Snapshot
from agent.policy import Policy
from agent.policy.files import load_policies
from agent.portfolio_state import Portfolio
from agent.record import publish_bands, record
from agent.settings import Settings

log = structlog.get_logger("agent.daemon")

HEALTHY_INTERVALS = 3  # /healthz fails once the last successful cycle is older than this many intervals
BLOCK_TIMES_KEPT = 8  # block-time estimate: the median gap of the last few blocks
# A portfolio whose health factor is within 25% of its band's floor is read first at each block: a one-block move
# of the underlying rarely exceeds 20%, so the rest of the fleet can wait for the second read of the block.
NEAR_FLOOR = 1.25
SWEEP_SHARE = 0.8  # of the block time, the fleet's sweep may take before it yields to the next block


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
        self.fleet = Fleet(settings.batch_limits())
        self.portfolios: dict[str, Portfolio] = {}
        self._followers: dict[ChainKey, threading.Thread] = {}
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
        self.scheduler.start()
        self._follow_new_chains()
        self.ready = True
        log.info("daemon started", portfolios=sorted(self.portfolios), metrics=self.settings.metrics_addr)

    def stop(self, drain_s: float = 60.0) -> None:
        """Stop scheduling, let the cycle in flight finish, track sent transactions for up to `drain_s`, close."""
        self.stopping.set()
        self.ready = False
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        for follower in self._followers.values():
            follower.join(timeout=30)
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
                self._remove(portfolio)
        for path, policy in policies.items():
            current = self.portfolios.get(policy.portfolio.name)
            if current is not None and current.policy == policy:
                continue
            if current is not None:
                self.scheduler.remove_job(current.name)
                self._remove(current)
            self._schedule(self._add(path, policy))
        self._follow_new_chains()
        log.info("policies reloaded", portfolios=sorted(self.portfolios))

    def _add(self, path: Path, policy: Policy) -> Portfolio:
        executor = open_executor(policy, self.settings, clock=self.clock, journal=self.journal, start=False)
        portfolio = Portfolio(path, policy, PortfolioReader(policy, fleet=self.fleet), executor)
        self.portfolios[portfolio.name] = portfolio
        publish_bands(policy)
        self._lease(portfolio)  # and reconcile: startup and crash recovery are one code path
        return portfolio

    def _remove(self, portfolio: Portfolio) -> None:
        with portfolio.lock:  # a block in flight finishes this portfolio's cycle first
            del self.portfolios[portfolio.name]
            portfolio.executor.close()  # hands the account's lease over (to the reloaded executor, say)
            portfolio.reader.close()

    def _lease(self, portfolio: Portfolio) -> bool:
        """Takes the portfolio's lease if this process does not hold it yet; returns whether it holds it now."""
        standby = take_lease(portfolio.executor)
        if standby is not None and standby != portfolio.standby:
            log.warning("standby: the account is leased elsewhere", portfolio=portfolio.name, holder=standby)
        elif standby is None and portfolio.standby is not None:
            log.info("lease taken over", portfolio=portfolio.name)
        portfolio.standby = standby
        return standby is None

    def _schedule(self, portfolio: Portfolio) -> None:
        interval = portfolio.policy.triggers.interval_s
        self.scheduler.add_job(self.cycle, "interval", args=[portfolio.name], seconds=interval, id=portfolio.name,
                               max_instances=1, coalesce=True, misfire_grace_time=max(1, int(interval)),
                               next_run_time=_now_datetime())

    # --- the cycle ------------------------------------------------------------------------------------------------

    def cycle(self, name: str) -> CycleResult | None:
        """The timer's cycle of portfolio `name`: read it alone and run its cycle, unless a block did within its
        interval (the timer is the upper bound for chains without new blocks). Errors are logged and counted,
        never raised into the scheduler."""
        portfolio = self.portfolios.get(name)
        if portfolio is None or self.stopping.is_set():
            return None
        interval = portfolio.policy.triggers.interval_s
        if portfolio.last_success_s is not None and self.clock() - portfolio.last_success_s < interval:
            return None
        with portfolio.lock:
            try:
                snapshot = portfolio.reader.read()
            except Exception as error:  # a failed read is recorded and retried on the next tick
                self._failed(name, error)
                return None
            return self._run(portfolio, snapshot)

    def _run(self, portfolio: Portfolio, snapshot: Snapshot) -> CycleResult | None:
        """Assess, plan, execute and record one snapshot of a portfolio (its lock held)."""
        started = time.monotonic()
        try:
            result = decide(snapshot, portfolio.policy, portfolio.hedge_state, log_decision=False)
            if portfolio.standby is None or self._lease(portfolio):
                portfolio.executor.read_back(snapshot)  # plans confirmed since: a miss pauses before acting again
                report = portfolio.executor.execute_plan(result.plan, result.snapshot)
                if portfolio.open_intents or not result.plan.empty:  # nothing to drive otherwise: skip the journal
                    self._advance(portfolio)
                    for intent in mark_stuck(portfolio.executor, self.clock())[0]:
                        log.error("intent stuck", portfolio=portfolio.name, intent=intent.id[:12], nonce=intent.nonce)
            else:
                report = ExecutionReport(portfolio.name, plan_id(result.plan), portfolio.policy.execution.mode,
                                         deferred=f"standby: {portfolio.standby}")
        except LeaseLost as lost:  # another process took the account over: this one stops signing for it
            portfolio.standby = str(lost)
            portfolio.executor.metrics.lease.labels(portfolio.name).set(0)
            log.error("lease lost: standby", portfolio=portfolio.name, problems=lost.lines())
            return None
        except Exception as error:  # a failed cycle is recorded and retried on the next block or tick
            self._failed(portfolio.name, error)
            return None
        duration = time.monotonic() - started
        if not report.refusals and not report.deferred:  # only an accepted plan counts as the last hedge
            portfolio.hedge_state = result.state
        portfolio.last_success_s = self.clock()
        portfolio.last_result = result
        record(result, portfolio.policy, report, duration, self.clock())
        return result

    def _advance(self, portfolio: Portfolio) -> None:
        """Drive the portfolio's unfinished intents one pass and note whether any remain (its lock held)."""
        portfolio.executor.advance()
        portfolio.open_intents = bool(self.journal.unresolved(portfolio.name))

    def _drive_open(self, chain: ChainFleet) -> None:
        """Drive the intents of the chain's portfolios that have unfinished ones, before the block's fleet read:
        the next step of a plan (a repay after its approve) goes out as soon as the block that confirmed the
        previous one is seen."""
        for name in list(chain.readers):
            portfolio = self.portfolios.get(name)
            if portfolio is None or not portfolio.open_intents or not portfolio.lock.acquire(blocking=False):
                continue
            try:
                self._advance(portfolio)
            except Exception as error:  # recorded; the cycle after the read retries it
                self._failed(name, error)
            finally:
                portfolio.lock.release()

    @staticmethod
    def _failed(name: str, error: Exception) -> None:
        telemetry.CYCLES.labels(name, "failed").inc()
        lines = error.lines() if isinstance(error, BallastError) else [type(error).__name__]
        log.error("cycle failed", portfolio=name, problems=lines, exc_info=not isinstance(error, BallastError))

    # --- new blocks -----------------------------------------------------------------------------------------------

    def _follow_new_chains(self) -> None:
        for key, chain in self.fleet.chains.items():
            if key not in self._followers:
                thread = threading.Thread(target=self._follow, args=[chain], name=f"blocks-{chain.name}",
                                          daemon=True)
                self._followers[key] = thread
                thread.start()

    def _follow(self, chain: ChainFleet) -> None:
        """Poll the chain's head, just before each block is due once its block time is known, and run every new
        block; a block that takes longer than the block time to process makes the next poll find the newest one."""
        last: Block | None = None
        gaps: list[float] = []
        misses = 0
        while not self.stopping.is_set() and chain_key_alive(self.fleet, chain):
            try:
                block = chain.latest_block()
            except Exception as error:  # the chain is unreachable for now: the timers cover its portfolios
                log.warning("head poll failed", chain=chain.name, problem=type(error).__name__)
                self.stopping.wait(self.settings.head_poll_s)
                continue
            if last is not None and block.hash == last.hash:
                misses += 1
                gap = statistics.median(gaps) if gaps else 0
                # Known block time: retry in short steps around the due time, then fall back to the poll period.
                early = gap >= 1 and misses * gap / 20 < 2 * gap
                self.stopping.wait(gap / 20 if early else self.settings.head_poll_s)
                continue
            detected = time.monotonic()
            if last is not None and block.number > last.number:
                gaps = [*gaps[1 - BLOCK_TIMES_KEPT:], seconds_per_block(last, block)]
            gap = statistics.median(gaps) if gaps else 0
            # The fleet's sweep yields before the next block is due, so that block's urgent portfolios act in time.
            self.on_block(chain, block, until=detected + gap * SWEEP_SHARE if gap >= 1 else None)
            last, misses = block, 0
            due = detected + gap - gap / 20 if gap >= 1 else time.monotonic() + self.settings.head_poll_s
            self.stopping.wait(max(0.0, due - time.monotonic()))

    def on_block(self, chain: ChainFleet, block: Block, until: float | None = None) -> None:
        """Drive unfinished intents; read the portfolios near their health-factor floor at `block` and run their
        cycles; then read the rest of the chain's portfolios in one batch and run the cycle of each whose figures
        moved (or whose last assessment is due again), most urgent first, until the monotonic time `until`; the
        others' last assessment still holds, and those left undone are due again at the next block. The few near
        their floor thus act before the fleet's read and assessments, and a long sweep never delays them."""
        started = time.monotonic()
        self._drive_open(chain)
        urgent = [name for name, p in self.portfolios.items() if name in chain.readers and near_floor(p)]
        assessed = 0
        try:
            if urgent and len(urgent) < len(chain.readers):
                assessed += self._run_block(chain, chain.read(block, only=urgent))
                read = set(urgent)
                assessed += self._run_block(chain, chain.read(block, only=[n for n in chain.readers
                                                                           if n not in read]), until)
            else:
                assessed += self._run_block(chain, chain.read(block), until)
        except PinningLost as lost:  # a newer block is out already: the next poll reads it
            log.debug("block superseded", chain=chain.name, block=block.number, problem=str(lost),
                      after_s=round(time.monotonic() - started, 3))
            return
        except Exception as error:  # no endpoint answered: the next block or the timers retry
            log.warning("block read failed", chain=chain.name, block=block.number, problem=type(error).__name__)
            return
        telemetry.BLOCK_DURATION.labels(chain.name).observe(time.monotonic() - started)
        log.debug("block", chain=chain.name, block=block.number, portfolios=len(chain.readers), assessed=assessed,
                  urgent=len(urgent))

    def _run_block(self, chain: ChainFleet, snapshots: dict[str, ChainSnapshot | Exception],
                   until: float | None = None) -> int:
        """Run the cycle of each portfolio of `snapshots` whose figures moved, most urgent first, until the
        monotonic time `until`; return how many ran."""
        due: list[tuple[float, Portfolio, Snapshot]] = []
        for name, read in snapshots.items():
            portfolio = self.portfolios.get(name)
            if portfolio is None:
                continue
            if isinstance(read, Exception):
                self._failed(name, read)
                continue
            portfolio.chain_snapshots[chain.name] = read
            snapshot = portfolio.snapshot()
            if snapshot is None:
                continue
            if needs_assessment(portfolio.last_result, snapshot, portfolio.policy.triggers.interval_s):
                due.append((urgency(snapshot, portfolio.policy), portfolio, snapshot))
            else:
                portfolio.last_success_s = self.clock()
        ran = 0
        for _urgency, portfolio, snapshot in sorted(due, key=lambda d: d[0]):
            if self.stopping.is_set() or (until is not None and time.monotonic() > until):
                break
            if portfolio.lock.acquire(blocking=False):  # the timer's cycle holds it: that one reads anew anyway
                try:
                    self._run(portfolio, snapshot)
                    ran += 1
                finally:
                    portfolio.lock.release()
        return ran

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


def near_floor(portfolio: Portfolio) -> bool:
    """Whether the portfolio's last assessed health factor is within `NEAR_FLOOR` of its band's min (or it has
    open work): such portfolios are read and run before the rest of the fleet at each block."""
    last = portfolio.last_result
    if last is None:  # not assessed yet: read with the fleet
        return False
    return portfolio.open_intents or urgency(last.snapshot, portfolio.policy) < NEAR_FLOOR


def chain_key_alive(fleet: Fleet, chain: ChainFleet) -> bool:
    """Whether `chain` still has portfolios to read (a reload may have removed its last)."""
    return fleet.chains.get(chain.key) is chain


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

