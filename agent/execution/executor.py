"""The executor: a plan becomes one recipe per chain (`recipe.py`), journaled as intents, each simulated, signed,
stored, broadcast, followed until confirmed, replaced with bumped fees when stuck and cancelled by a same-nonce no-op
past its deadline (`transactions.py`).

How a recipe reaches the chain depends on the account (`portfolio.executor`):
- a Safe with the Ballast keeper module (`safe_module`): the recipe is ONE transaction from the keeper's key to the
  module (`execute`, or `executeWithFlashLoan` around a flash loan), journaled as one intent that lists its calls,
  simulated whole at the snapshot block and again at the latest block just before signing, all or nothing;
- a plain account (`direct`, the fallback): each call is its own transaction, in order (an approval before the call
  that spends it, a withdrawal before the swap of its proceeds); the first is simulated at the snapshot block,
  later ones at the latest block once the one before is confirmed.

One code path drives every intent forward — `advance()` — and startup is the same path as crash recovery: for each
unfinished intent it checks the receipts of every hash sent at its nonce and re-broadcasts the stored raw bytes,
never a new signature. While any intent of the portfolio is unresolved, new plans are deferred: the snapshot cannot
show a pending hedge yet, and hedging again would double it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from agent.adapters.safe import read_module_config
from agent.chain.fees import FeeCapExceeded, suggest_fees
from agent.chain.rpc import connect, transient
from agent.chain.signer import Signer, SignerError, load_signer
from agent.errors import BallastError, ChainUnavailable
from agent.execution.guard import Guard, Refusal
from agent.execution.intents import RECIPE, PlanIntents, discover_venues
from agent.execution.journal import Intent, Journal, plan_id
from agent.execution.metrics import execution_metrics
from agent.execution.readback import PredictionCheck, ReadBack
from agent.execution.report import ExecutionReport
from agent.execution.reverts import revert_reason
from agent.execution.transactions import ChainContext, Checkpoint, Transactions
from agent.model import Plan, Snapshot
from agent.policy import Policy
from agent.settings import Settings
from agent.telemetry import REGISTRY

log = structlog.get_logger(__name__)

GAS_MARGIN = 1.25  # interest accrues between simulation and inclusion: Aave's gas use drifts a little

__all__ = ["Checkpoint", "Executor", "PredictionCheck", "execute_plan",
           "open_executor", "revert_reason"]


class Executor:
    """Executes one portfolio's plans under its policy; `start()` first (it reconciles), then `execute_plan` and
    `advance` each cycle. Time comes from `clock` (unix seconds) so tests can move it.

    The signer is the account's own key for a direct account, and a keeper of the module (never the Safe, whose
    owners' keys Ballast does not hold) for a Safe."""

    def __init__(
        self,
        policy: Policy,
        journal: Journal,
        signer: Signer | None,
        kill_switch: Path,
        w3s: Mapping[str, Web3] | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry = REGISTRY,
        checkpoint: Checkpoint | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.policy = policy
        self.portfolio = policy.portfolio.name
        self.account = Web3.to_checksum_address(policy.portfolio.account)
        executor = policy.portfolio.executor
        self.module = Web3.to_checksum_address(executor.module) if executor.kind == "safe_module" else None
        self.journal = journal
        self.signer = signer
        self.clock = clock
        self.metrics = execution_metrics(registry)
        self.poll_s = poll_s
        self.chains: dict[str, ChainContext] = {}
        for chain in policy.portfolio.chains:
            w3 = (w3s or {}).get(chain.name) or connect(chain.name, chain.rpc)
            self.chains[chain.name] = ChainContext(chain, w3, discover_venues(chain, self.account, w3))
        self.guard = Guard(policy, journal, kill_switch, {n: c.venues for n, c in self.chains.items()}, self.metrics,
                           clock)
        self.sender = self._sender()
        self.tx = Transactions(policy, journal, signer, self.sender, self.guard, self.metrics, clock, checkpoint)
        self.intents = PlanIntents(policy, journal, self.guard, self.chains, self.account, self.module, self.sender)
        self.readback = ReadBack(policy, journal, self.metrics)
        self._started = False

    def _sender(self) -> str:
        """Returns the address whose transactions carry the plans; raises BallastError for a signer that may not."""
        if self.signer is None:
            return self.account
        signer = Web3.to_checksum_address(self.signer.address)
        if self.module is None:
            if signer != self.account:
                raise BallastError(f"the signer's account {signer} is not the portfolio's account {self.account}")
            return signer
        if signer == self.account:
            raise BallastError(f"the signer {signer} is the Safe itself: sign with a keeper of its module")
        for context in self.chains.values():
            config = read_module_config(context.w3, self.account, self.module, signer)
            if not (config.module_enabled and config.keeper_enabled):
                raise BallastError(f"{signer} is not a keeper of the module {self.module} of the Safe {self.account} "
                                   f"on {context.chain.name} (or the Safe has not enabled it)")
        return signer

    @property
    def health_factor(self) -> float | None:
        return self.tx.health_factor

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Gives the sender's lease up (taken by `start`): another executor may sign for it from now on."""
        self.tx.nonces.release(self.sender)

    def start(self) -> list[Intent]:
        """Startup and crash recovery (one code path): reconciles each chain's nonce with the chain and drives every
        unfinished intent forward — receipts of every hash sent at its nonce, re-broadcast of the stored bytes.
        Returns the intents it touched, as they stand now."""
        if self.signer is not None:
            for context in self.chains.values():
                self.tx.nonces.reconcile(context.w3, context.chain.chain_id, self.sender)
        self._started = True
        touched = self.advance()
        self.guard.kill_switch_engaged()
        self._update_gauges()
        return touched

    def execute_plan(self, plan: Plan, snapshot: Snapshot, wait_s: float = 0.0) -> ExecutionReport:
        """Guards, journals and (in live mode) starts executing `plan`; with `wait_s`, keeps driving it for up to
        that many seconds. Dry-run simulates each transaction and records it; nothing is sent.

        Returns the report: refused plans have every refusal, deferred plans the unresolved intent that blocks them.
        """
        if not self._started:
            self.start()
        self.tx.health_factor = snapshot.lowest_health_factor
        pid = plan_id(plan)
        mode = self.policy.execution.mode
        if plan.empty:
            return ExecutionReport(self.portfolio, pid, mode)
        if self.journal.intents(self.portfolio, plan=pid):  # the same plan again (a retry): continue it, never twice
            self.advance()
            return self._report(pid, mode)
        self.advance()
        reason = self._deferral(snapshot)
        if reason:
            self.journal.record_event(self.portfolio, "deferred", reason)
            log.info("plan deferred", portfolio=self.portfolio, plan_id=pid, reason=reason)
            return ExecutionReport(self.portfolio, pid, mode, deferred=reason)
        recipes, refusals = self.intents.compile(plan, snapshot)
        refusals = self.guard.check_plan(plan, snapshot) + refusals
        self.intents.record(plan, pid, mode, recipes, refusals)
        if refusals:
            for refusal in refusals:
                self.metrics.refusals.labels(self.portfolio, refusal.rule).inc()
                self.journal.record_event(self.portfolio, "refused", str(refusal))
            log.warning("plan refused", portfolio=self.portfolio, plan_id=pid, refusals=[str(r) for r in refusals])
            return self._report(pid, mode, refusals)
        if mode == "dry-run":
            self._dry_run(pid)
            return self._report(pid, mode)
        self.readback.expect(plan, snapshot)
        self.advance()
        if wait_s > 0:
            self.wait(wait_s, plan=pid)
        return self._report(pid, mode)

    def _deferral(self, snapshot: Snapshot) -> str:
        """Why a plan made from `snapshot` may not go ahead ("" when it may): an unresolved intent, whose effect the
        snapshot cannot show yet, or one mined after the snapshot's block (the plan was made without its effect: the
        next cycle re-reads and re-plans). Either way acting now could do the same thing twice."""
        blocking = self.journal.unresolved(self.portfolio)
        if blocking:
            first = blocking[0]
            return (f"intent {first.id[:12]} ({first.kind}, {first.state}"
                    f"{'' if first.nonce is None else f', nonce {first.nonce}'}) is unresolved: the snapshot does "
                    "not show its effect yet, so acting again could double it")
        for chain in snapshot.chains:
            settled = self.journal.last_settled(self.portfolio, chain.chain)
            if settled is not None and settled.block_number is not None and settled.block_number > chain.block_number:
                return (f"intent {settled.id[:12]} settled in block {settled.block_number} of {chain.chain}, after "
                        f"the snapshot's block {chain.block_number}: the plan was made without its effect; the next "
                        "cycle re-reads and re-plans")
        return ""

    def wait(self, timeout_s: float, plan: str | None = None) -> bool:
        """Drives unfinished intents (of `plan`, or all) until none is left or `timeout_s` of real time passed;
        returns whether none is left."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.advance()
            left = [i for i in self.journal.unresolved(self.portfolio) if plan is None or i.plan_id == plan]
            if not left or time.monotonic() >= deadline:
                return not left
            time.sleep(self.poll_s)

    def advance(self) -> list[Intent]:
        """One pass over the portfolio's unfinished live intents: settle receipts, send the next step of each plan,
        re-broadcast, bump stuck transactions, cancel past the deadline. Returns the intents touched, refreshed."""
        touched = []
        plans: dict[str, list[Intent]] = {}
        for intent in self.journal.unresolved(self.portfolio):
            plans.setdefault(intent.plan_id, []).append(intent)
        for pid in plans:
            steps = self.journal.intents(self.portfolio, plan=pid)
            for position, intent in enumerate(steps):
                if intent.terminal:
                    if intent.state != "confirmed":
                        self._abandon_rest(steps[position + 1:], intent)
                        break
                    continue
                self._drive(intent, first=position == 0)
                touched.append(intent.id)
                driven = self.journal.intent(intent.id)
                if driven is None or driven.state != "confirmed":
                    break  # one step of a plan at a time; a step confirmed in this pass lets the next one go now
        self._update_gauges()
        return [i for i in (self.journal.intent(t) for t in touched) if i is not None]

    # --- prediction read-back -------------------------------------------------------------------------------------

    def read_back(self, after: Snapshot) -> list[PredictionCheck]:
        """Compares `after` with the prediction of each plan this executor sent whose intents have all confirmed by
        the blocks `after` was read at (`readback.ReadBack`); a miss pauses the portfolio. Returns the checks."""
        return self.readback.due(after)

    def _dry_run(self, pid: str) -> None:
        for position, intent in enumerate(self.journal.intents(self.portfolio, plan=pid)):
            if intent.kind == RECIPE and self.signer is None:  # the module runs a recipe only for a keeper
                self.journal.transition(intent.id, "failed", error="not simulated: a recipe is simulated from a "
                                        "keeper of the module; configure its key (BALLAST_KEYSTORE or, locally, "
                                        "BALLAST_PRIVATE_KEY)")
                continue
            gas, reason = self._simulate(intent, intent.snapshot_block)
            if reason is None:
                self.journal.transition(intent.id, "simulated", gas_limit=gas)
            elif position == 0 or intent.kind == RECIPE:
                self.journal.transition(intent.id, "failed", error=f"reverted in simulation: {reason}")
            else:  # a later step may depend on an earlier one, which a dry run does not send
                self.journal.transition(intent.id, "simulated", error=f"reverts alone at the snapshot block "
                                        f"({reason}); it follows earlier steps of the plan, which were not sent")
            self.metrics.dry_run.labels(self.portfolio).inc()
            log.info("dry run: would send", portfolio=self.portfolio, intent=intent.id[:12], to=intent.to_address,
                     description=intent.description, gas=gas, revert=reason)

    def _report(self, pid: str, mode: str, refusals: Sequence[Refusal] = ()) -> ExecutionReport:
        return ExecutionReport(self.portfolio, pid, mode, tuple(self.journal.intents(self.portfolio, plan=pid)),
                               tuple(refusals))

    # --- driving one intent ---------------------------------------------------------------------------------------

    def _drive(self, intent: Intent, first: bool) -> None:
        context = self.chains[intent.chain]
        if intent.state in ("planned", "simulated"):
            self._send_new(intent, context, first)
        elif intent.state in ("signed", "sent", "mined"):
            self.tx.follow(intent, context)

    def _abandon_rest(self, rest: Sequence[Intent], failed: Intent) -> None:
        for intent in rest:
            if intent.state in ("planned", "simulated"):
                self.journal.transition(intent.id, "cancelled", error=f"not sent: step {failed.action_index}."
                                        f"{failed.step} of its plan ended {failed.state}")
                self.tx.finished(intent.id, "cancelled")

    def _send_new(self, intent: Intent, context: ChainContext, first: bool) -> None:
        if self.clock() - intent.created_at >= self.policy.execution.deadline_s:
            self.journal.transition(intent.id, "expired", error="never sent before its deadline")
            self.tx.finished(intent.id, "expired")
            return
        if self.signer is None:
            raise BallastError("live execution needs a signer: set BALLAST_KEYSTORE (or BALLAST_PRIVATE_KEY locally)")
        held = self.guard.sending_refusal() or self.guard.check_intent(intent, self.module)
        if held is not None:
            if held.rule != "kill_switch":
                self.journal.transition(intent.id, "failed", error=str(held))
                self.tx.finished(intent.id, "failed")
            log.warning("not sent", portfolio=self.portfolio, intent=intent.id[:12], reason=str(held))
            return
        # A recipe runs against the snapshot it was made from, then against the latest block, just before signing;
        # a direct account's first step against the snapshot, later ones after the step before them.
        gas, reason = self._simulate(intent, intent.snapshot_block if first or intent.kind == RECIPE else "latest")
        if reason is None and intent.kind == RECIPE:
            gas, reason = self._simulate(intent, "latest")
        if reason is not None:
            self.journal.transition(intent.id, "failed", error=f"reverted in simulation: {reason}")
            self.tx.finished(intent.id, "failed")
            log.warning("simulation reverted: not sent", portfolio=self.portfolio, intent=intent.id[:12],
                        reason=reason)
            return
        self.journal.transition(intent.id, "simulated", gas_limit=gas)
        try:
            fees = suggest_fees(context.w3, self.policy.limits, self.tx.health_factor)
        except FeeCapExceeded as error:
            self.journal.record_event(self.portfolio, "held", str(error), intent.id)
            log.warning("gas above the cap: not sent", portfolio=self.portfolio, reason=str(error))
            return
        assert gas is not None
        self.tx.broadcast(intent.id, context, self.tx.sign(intent, context, fees, "action", gas))

    def _simulate(self, intent: Intent, block: Any) -> tuple[int | None, str | None]:
        """Returns (gas limit with margin, None), or (None, revert reason) when the call reverts at `block`."""
        context = self.chains[intent.chain]
        call: Any = {"from": self.sender, "to": intent.to_address, "data": intent.data,
                     "value": int(intent.value_wei)}
        try:
            context.w3.eth.call(call, block_identifier=block)
            gas = context.w3.eth.estimate_gas(call, block_identifier=block)
        except (ContractLogicError, Web3RPCError) as error:
            if why := transient(error):  # not a revert: the intent waits for the next pass
                raise ChainUnavailable(f"chain {intent.chain}: simulation not answered now ({why})") from error
            return None, revert_reason(error)
        return math.ceil(gas * GAS_MARGIN), None

    def _update_gauges(self) -> None:
        self.metrics.unresolved.labels(self.portfolio).set(len(self.journal.unresolved(self.portfolio)))
        self.metrics.paused.labels(self.portfolio).set(1 if self.journal.paused(self.portfolio) else 0)


def load_executor_signer(policy: Policy, settings: Settings) -> Signer:
    """Returns the key that signs for `policy`: the account's own (direct), or the first configured key that is a
    keeper of the Safe's module (read on the policy's first chain). Raises SignerError when there is none."""
    chain = policy.portfolio.chains[0]
    executor = policy.portfolio.executor
    if executor.kind != "safe_module":
        return load_signer(settings, chain.chain_id, policy.portfolio.account)
    w3 = connect(chain.name, chain.rpc)

    def keeper(address: str) -> bool:
        return read_module_config(w3, policy.portfolio.account, executor.module, address).keeper_enabled

    return load_signer(settings, chain.chain_id, accept=keeper)


def open_executor(
    policy: Policy, settings: Settings, clock: Callable[[], float] = time.time,
    registry: CollectorRegistry = REGISTRY, journal: Journal | None = None, start: bool = True,
) -> Executor:
    """Returns an executor for `policy` with the journal, kill switch and key the settings name, started unless
    `start` is False (starting takes the sender's lease). In dry-run no key is loaded, except a Safe's keeper key
    when one is configured: the module simulates recipes only for a keeper."""
    journal = journal or Journal(settings.db, clock)
    signer = None
    if policy.execution.mode == "live":
        signer = load_executor_signer(policy, settings)
    elif policy.portfolio.executor.kind == "safe_module":
        try:
            signer = load_executor_signer(policy, settings)
        except SignerError:
            signer = None
    executor = Executor(policy, journal, signer, settings.kill_switch, clock=clock, registry=registry)
    if start:
        executor.start()
    return executor


def execute_plan(
    policy: Policy, plan: Plan, snapshot: Snapshot, settings: Settings, wait_s: float = 60.0,
    executor: Executor | None = None,
) -> ExecutionReport:
    """The entry point of `ballast once --execute`: reconciles, then guards, journals and executes `plan` (live
    mode sends; dry-run records what it would send), waiting up to `wait_s` for its transactions."""
    executor = executor or open_executor(policy, settings)
    return executor.execute_plan(plan, snapshot, wait_s=wait_s)
