"""The executor: a plan becomes journaled intents, each simulated, signed, stored, broadcast, watched until
confirmed, replaced with bumped fees when stuck, and cancelled by a same-nonce no-op past its deadline.

One code path drives every intent forward — `advance()` — and startup is the same path as crash recovery: for each
unfinished intent it checks the receipts of every hash sent at its nonce and re-broadcasts the stored raw bytes,
never a new signature. The steps of a plan go one at a time (an approval before the call that spends it; a
withdraw before the swap of its proceeds): the first is simulated at the snapshot block, later ones at the latest
block once the step before is confirmed. While any intent of the portfolio is unresolved, new plans are deferred:
the snapshot cannot show a pending hedge yet, and hedging again would double it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from eth_abi import decode as abi_decode
from eth_typing import HexStr
from prometheus_client import CollectorRegistry
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from agent.adapters.aave_v3 import AaveV3
from agent.adapters.encode import (
    EncodeError,
    Venues,
    approval_needed,
    decode_approve,
    encode_action,
    encode_approve,
    read_allowance,
)
from agent.adapters.erc20 import TokenRegistry
from agent.adapters.options import OptionsVenue, options_venue
from agent.adapters.perps import PerpVenue, perp_venue
from agent.chain.fees import (
    CANCEL_GAS,
    FeeCapExceeded,
    Fees,
    cancellation_bump,
    cancellation_fees,
    gas_cap_wei,
    replacement_fees,
    suggest_fees,
)
from agent.chain.rpc import connect, transient
from agent.chain.signer import Signer, load_signer
from agent.errors import BallastError, ChainUnavailable
from agent.execution.guard import Guard, Refusal
from agent.execution.journal import Intent, Journal, StoredTx, intent_id, plan_id
from agent.execution.metrics import execution_metrics
from agent.execution.nonce import NonceAllocator
from agent.model import Plan, Snapshot, Token, TxRecord, TxRequest
from agent.policy import Chain, Policy
from agent.settings import Settings
from agent.telemetry import REGISTRY

log = structlog.get_logger(__name__)

GAS_MARGIN = 1.25  # interest accrues between simulation and inclusion: Aave's gas use drifts a little
# What nodes answer when they already hold this transaction (or a better one at its nonce): it was sent.
ALREADY_SENT = ("already known", "already imported")
# A replacement the node refused: not sent, and its bump timer keeps running (the next bump goes higher).
UNDERPRICED = ("replacement transaction underpriced", "replacement underpriced")
NONCE_TOO_LOW = ("nonce too low", "nonce is too low")
HOPELESS = ("insufficient funds", "intrinsic gas too low", "exceeds block gas limit")
_ERROR_STRING = bytes.fromhex("08c379a0")
_PANIC = bytes.fromhex("4e487b71")

# Aave v3.0 `Errors.sol`: the pool reverts with these numbers as strings.
AAVE_ERRORS = {
    1: "CALLER_NOT_POOL_ADMIN", 9: "NOT_CONTRACT", 23: "CALLER_MUST_BE_POOL", 24: "INVALID_MINT_AMOUNT",
    25: "INVALID_BURN_AMOUNT", 26: "INVALID_AMOUNT", 27: "RESERVE_INACTIVE", 28: "RESERVE_FROZEN",
    29: "RESERVE_PAUSED", 30: "BORROWING_NOT_ENABLED", 31: "STABLE_BORROWING_NOT_ENABLED",
    32: "NOT_ENOUGH_AVAILABLE_USER_BALANCE", 33: "INVALID_INTEREST_RATE_MODE_SELECTED",
    34: "COLLATERAL_BALANCE_IS_ZERO", 35: "HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD",
    36: "COLLATERAL_CANNOT_COVER_NEW_BORROW", 37: "COLLATERAL_SAME_AS_BORROWING_CURRENCY",
    38: "AMOUNT_BIGGER_THAN_MAX_LOAN_SIZE_STABLE", 39: "NO_DEBT_OF_SELECTED_TYPE",
    40: "NO_EXPLICIT_AMOUNT_TO_REPAY_ON_BEHALF", 41: "NO_OUTSTANDING_STABLE_DEBT", 42: "NO_OUTSTANDING_VARIABLE_DEBT",
    43: "UNDERLYING_BALANCE_ZERO", 45: "HEALTH_FACTOR_NOT_BELOW_THRESHOLD", 46: "COLLATERAL_CANNOT_BE_LIQUIDATED",
    47: "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER", 48: "SAME_BLOCK_BORROW_REPAY", 50: "BORROW_CAP_EXCEEDED",
    51: "SUPPLY_CAP_EXCEEDED", 53: "DEBT_CEILING_EXCEEDED", 57: "LTV_VALIDATION_FAILED",
    58: "INCONSISTENT_EMODE_CATEGORY", 59: "PRICE_ORACLE_SENTINEL_CHECK_FAILED",
    60: "ASSET_NOT_BORROWABLE_IN_ISOLATION", 62: "USER_IN_ISOLATION_MODE_OR_LTV_ZERO", 89: "SILOED_BORROWING_VIOLATION",
    91: "FLASHLOAN_DISABLED",
}

Checkpoint = Callable[[str], None]
"""Called at named points of a transaction's life ("signed", "broadcast"): tests stop the process there."""
Recheck = Callable[[Intent], str | None]
"""Asked before each fee bump: a reason to stop pursuing the intent (it is cancelled instead), or None."""


def revert_reason(error: Exception) -> str:
    """Returns a revert's reason as text: an `Error(string)` message (Aave's numeric codes with their names), a
    panic code, or the node's message."""
    data = getattr(error, "data", None)
    reason = ""
    if isinstance(data, str) and data.startswith("0x"):
        raw = bytes.fromhex(data[2:])
        if raw[:4] == _ERROR_STRING:
            reason = str(abi_decode(["string"], raw[4:])[0])
        elif raw[:4] == _PANIC:
            reason = f"panic 0x{int(abi_decode(['uint256'], raw[4:])[0]):02x}"
    if not reason:
        message = getattr(error, "message", None) or str(error)
        reason = str(message).removeprefix("execution reverted: ").removeprefix("execution reverted")
    reason = reason.strip() or "reverted without a reason"
    if reason.isdigit() and int(reason) in AAVE_ERRORS:
        return f"{reason} ({AAVE_ERRORS[int(reason)]})"
    return reason


@dataclass(frozen=True)
class ExecutionReport:
    """What `execute_plan` did: the plan's intents as journaled now, the guard's refusals, and `deferred` (why
    nothing was done: an unresolved intent of the portfolio), empty when the plan went ahead."""

    portfolio: str
    plan_id: str
    mode: str
    intents: tuple[Intent, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    deferred: str = ""

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(i.state for i in self.intents)

    def to_json(self) -> dict[str, Any]:
        """Returns the report as a JSON-ready mapping."""
        return {
            "portfolio": self.portfolio, "plan_id": self.plan_id, "mode": self.mode, "deferred": self.deferred,
            "refusals": [str(r) for r in self.refusals],
            "intents": [{"id": i.id, "step": f"{i.action_index}.{i.step}", "kind": i.kind, "state": i.state,
                         "description": i.description, "error": i.error, "nonce": i.nonce, "tx_hash": i.tx_hash}
                        for i in self.intents],
        }


@dataclass(frozen=True)
class PredictionCheck:
    """The state read back after a plan against its prediction: `misses` lists each figure beyond tolerance."""

    predicted_health_factor: float | None
    actual_health_factor: float | None
    predicted_delta_usd: float | None
    actual_delta_usd: float | None
    misses: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.misses


@dataclass(frozen=True)
class _Step:
    action_index: int
    step: int
    kind: str  # the action's kind, or "approve"
    request: TxRequest


@dataclass
class _ChainContext:
    chain: Chain
    w3: Web3
    venues: Venues


def discover_venues(chain: Chain, account: str, w3: Web3) -> Venues:
    """Returns the contracts and tokens an account may act through on one chain: the Aave pool as its
    PoolAddressesProvider names it (with its reserves' tokens), and the policy's Uniswap router and manager."""
    protocols = chain.protocols
    pool: str | None = None
    tokens: tuple[Token, ...] = ()
    if protocols.aave_v3 is not None:
        aave = AaveV3(chain.name, account, protocols.aave_v3.pool_addresses_provider, TokenRegistry())
        aave.discover(w3)
        pool, tokens = aave.pool, aave.tokens
    uniswap = protocols.uniswap_v3
    perps, options = _derivatives_venues(chain, account, w3)
    return Venues(
        chain=chain.name, account=Web3.to_checksum_address(account), aave_pool=pool,
        swap_router=uniswap.swap_router if uniswap else None,
        position_manager=uniswap.position_manager if uniswap else None,
        tokens=tuple(tokens), perps=perps, options=options,
    )


def _derivatives_venues(chain: Chain, account: str, w3: Web3) -> tuple[PerpVenue | None, OptionsVenue | None]:
    """Returns the policy's perp and options venue adapters on one chain, discovered (None where not configured)."""
    protocols, registry = chain.protocols, TokenRegistry()
    # The underlying only labels what the venues read; the executor encodes trades, which do not need it.
    perps = options = None
    if protocols.perps is not None:
        perps = perp_venue(protocols.perps.venue, chain.name, account, protocols.perps.market, "", registry)
        perps.discover(w3)
    if protocols.options is not None:
        options = options_venue(protocols.options.venue, chain.name, account, protocols.options.market, "", registry)
        options.discover(w3)
    return perps, options


class Executor:
    """Executes one portfolio's plans under its policy; `start()` first (it reconciles), then `execute_plan` and
    `advance` each cycle. Time comes from `clock` (unix seconds) so tests can move it."""

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
        recheck: Recheck | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.policy = policy
        self.portfolio = policy.portfolio.name
        self.account = Web3.to_checksum_address(policy.portfolio.account)
        self.journal = journal
        self.signer = signer
        self.clock = clock
        self.metrics = execution_metrics(registry)
        self.checkpoint = checkpoint or (lambda _name: None)
        self.recheck = recheck
        self.poll_s = poll_s
        self.nonces = NonceAllocator(journal)
        self.health_factor: float | None = None
        self.chains: dict[str, _ChainContext] = {}
        for chain in policy.portfolio.chains:
            w3 = (w3s or {}).get(chain.name) or connect(chain.name, chain.rpc)
            self.chains[chain.name] = _ChainContext(chain, w3, discover_venues(chain, self.account, w3))
        self.guard = Guard(policy, journal, kill_switch, {n: c.venues for n, c in self.chains.items()}, self.metrics,
                           clock)
        if signer is not None and Web3.to_checksum_address(signer.address) != self.account:
            raise BallastError(f"the signer's account {signer.address} is not the portfolio's account {self.account}")
        self._started = False

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Gives the account's lease up (taken by `start`): another executor may sign for it from now on."""
        self.nonces.release(self.account)

    def start(self) -> list[Intent]:
        """Startup and crash recovery (one code path): reconciles each chain's nonce with the chain and drives every
        unfinished intent forward — receipts of every hash sent at its nonce, re-broadcast of the stored bytes.
        Returns the intents it touched, as they stand now."""
        if self.signer is not None:
            for context in self.chains.values():
                self.nonces.reconcile(context.w3, context.chain.chain_id, self.account)
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
        self.health_factor = snapshot.lowest_health_factor
        pid = plan_id(plan)
        mode = self.policy.execution.mode
        if plan.empty:
            return ExecutionReport(self.portfolio, pid, mode)
        existing = self.journal.intents(self.portfolio, plan=pid)
        if existing:  # the same plan again (a retry after a crash): continue it, never duplicate it
            self.advance()
            return self._report(pid, mode)
        self.advance()
        blocking = self.journal.unresolved(self.portfolio)
        if blocking:
            first = blocking[0]
            reason = (f"intent {first.id[:12]} ({first.kind}, {first.state}"
                      f"{'' if first.nonce is None else f', nonce {first.nonce}'}) is unresolved: the snapshot does "
                      "not show its effect yet, so acting again could double it")
            self.journal.record_event(self.portfolio, "deferred", reason, first.id)
            log.info("plan deferred", portfolio=self.portfolio, plan_id=pid, reason=reason)
            return ExecutionReport(self.portfolio, pid, mode, deferred=reason)

        steps, refusals = self._encode(plan, snapshot)
        refusals = self.guard.check_plan(plan, snapshot) + refusals
        refusals += [r for s in steps if (r := self.guard.check_tx(s.request, s.action_index)) is not None]
        self._journal_steps(plan, pid, mode, steps, refusals)
        if refusals:
            for refusal in refusals:
                self.metrics.refusals.labels(self.portfolio, refusal.rule).inc()
                self.journal.record_event(self.portfolio, "refused", str(refusal))
            log.warning("plan refused", portfolio=self.portfolio, plan_id=pid, refusals=[str(r) for r in refusals])
            return self._report(pid, mode, refusals)
        if mode == "dry-run":
            self._dry_run(pid)
            return self._report(pid, mode)
        self.advance()
        if wait_s > 0:
            self.wait(wait_s, plan=pid)
        return self._report(pid, mode)

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
                break  # one step of a plan at a time
        self._update_gauges()
        return [i for i in (self.journal.intent(t) for t in touched) if i is not None]

    # --- prediction read-back -------------------------------------------------------------------------------------

    def verify(self, plan: Plan, after: Snapshot, health_factor_tolerance: float = 0.05,
               delta_tolerance_usd: float | None = None) -> PredictionCheck:
        """Compares the state read back after `plan` (`after`, a new snapshot) with the plan's prediction: the
        lowest health factor within `health_factor_tolerance` (relative), net delta within `delta_tolerance_usd`
        (default: a quarter of the delta band's width, or `hedging.min_trade_usd`). A miss pauses the portfolio
        (journaled) and raises the `ballast_prediction_miss` alert metric."""
        predicted_hf = None
        if plan.predicted is not None and plan.predicted.accounts:
            predicted_hf = min(a.health_factor for a in plan.predicted.accounts)
        elif any(a.predicted_health_factor is not None for a in plan.actions):
            predicted_hf = [a.predicted_health_factor for a in plan.actions if a.predicted_health_factor][-1]
        actual_hf = after.lowest_health_factor
        misses = []
        if predicted_hf is not None and math.isfinite(predicted_hf) and actual_hf is not None and (
                abs(actual_hf - predicted_hf) > health_factor_tolerance * predicted_hf):
            misses.append(f"health factor {actual_hf:.4f}, predicted {predicted_hf:.4f} "
                          f"(tolerance {health_factor_tolerance:.0%})")
        predicted_delta = plan.predicted.total.delta_usd if plan.predicted is not None else None
        actual_delta = _delta_usd(after) if predicted_delta is not None else None
        if predicted_delta is not None and actual_delta is not None:
            band = self.policy.bands.delta_usd
            tolerance = delta_tolerance_usd if delta_tolerance_usd is not None else (
                (band.max - band.min) / 4 if band is not None else self.policy.hedging.min_trade_usd)
            if abs(actual_delta - predicted_delta) > tolerance:
                misses.append(f"delta {actual_delta:,.0f} USD, predicted {predicted_delta:,.0f} USD "
                              f"(tolerance {tolerance:,.0f})")
        check = PredictionCheck(predicted_hf, actual_hf, predicted_delta, actual_delta, tuple(misses))
        if misses:
            reason = f"plan {plan_id(plan)[:12]} missed its prediction: {'; '.join(misses)}"
            self.journal.pause(self.portfolio, reason)
            self.metrics.prediction_miss.labels(self.portfolio).inc()
            self.metrics.paused.labels(self.portfolio).set(1)
            log.error("prediction missed: portfolio paused", portfolio=self.portfolio, misses=list(misses))
        return check

    # --- planning into intents ------------------------------------------------------------------------------------

    def _encode(self, plan: Plan, snapshot: Snapshot) -> tuple[list[_Step], list[Refusal]]:
        """Returns every transaction of the plan in order (an action's approval before it), and a refusal for
        each action that cannot be encoded."""
        steps: list[_Step] = []
        refusals: list[Refusal] = []
        blocks = dict(plan.blocks)
        for index, action in enumerate(plan.actions):
            context = self.chains.get(action.chain)
            if context is None:
                refusals.append(Refusal("allowlist", f"chain {action.chain} is not in the policy", index))
                continue
            block = blocks.get(action.chain, 0)
            chain_time = next((c.timestamp for c in snapshot.chains if c.chain == action.chain), snapshot.timestamp)
            try:
                request = encode_action(action, context.venues, int(chain_time + self.policy.execution.deadline_s))
                approval = approval_needed(action, context.venues)
            except EncodeError as error:
                refusals.append(Refusal("encode", str(error), index))
                continue
            step = 0
            if approval is not None:
                token, spender, amount = approval
                # Approvals of earlier steps of this plan count too: they are sent before this one.
                granted = max([read_allowance(context.w3, token, self.account, spender, block or "latest")]
                              + [_approved(s.request, token, spender) for s in steps])
                if granted < amount:
                    steps.append(_Step(index, step, "approve", encode_approve(action.chain, token, spender, amount)))
                    step += 1
            steps.append(_Step(index, step, action.kind, request))
        return steps, refusals

    def _journal_steps(self, plan: Plan, pid: str, mode: str, steps: Sequence[_Step],
                       refusals: Sequence[Refusal]) -> None:
        blocks = dict(plan.blocks)
        for s in steps:
            index, step, request = s.action_index, s.step, s.request
            action = plan.actions[index]
            context = self.chains[request.chain]
            mine = [str(r) for r in refusals if r.action_index in (None, index)]
            others = [f"action {r.action_index} refused" for r in refusals if r.action_index not in (None, index)]
            errors = mine + sorted(set(others))
            block = blocks.get(request.chain, 0)
            is_approval = s.kind == "approve"
            self.journal.add_intent(
                id=intent_id(self.portfolio, pid, block, index, step), portfolio=self.portfolio, plan_id=pid,
                chain=request.chain, chain_id=context.chain.chain_id, account=self.account, action_index=index,
                step=step, kind=s.kind, mode=mode,
                state="failed" if errors else "planned", to_address=Web3.to_checksum_address(request.to),
                data="0x" + request.data.hex(), value_wei=str(request.value_wei), description=request.description,
                notional_usd=0.0 if is_approval else action.notional_usd, snapshot_block=block,
                plan_reason=plan.reason, action_reason=action.reason, error="; ".join(errors) or None,
            )
        if not steps and refusals:  # nothing encodable: the refusal still goes on record, as a failed intent
            for index, action in enumerate(plan.actions):
                known = self.chains.get(action.chain)
                self.journal.add_intent(
                    id=intent_id(self.portfolio, pid, blocks.get(action.chain, 0), index, 0), portfolio=self.portfolio,
                    plan_id=pid, chain=action.chain, chain_id=known.chain.chain_id if known else 0,
                    account=self.account, action_index=index, step=0, kind=action.kind, mode=mode, state="failed",
                    to_address="", data="0x", value_wei="0", description=f"{action.kind} {action.asset}",
                    notional_usd=action.notional_usd, snapshot_block=blocks.get(action.chain, 0),
                    plan_reason=plan.reason, action_reason=action.reason, error="; ".join(str(r) for r in refusals),
                )

    def _dry_run(self, pid: str) -> None:
        for position, intent in enumerate(self.journal.intents(self.portfolio, plan=pid)):
            gas, reason = self._simulate(intent, intent.snapshot_block)
            if reason is None:
                self.journal.transition(intent.id, "simulated", gas_limit=gas)
            elif position == 0:
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
            self._follow(intent, context)

    def _abandon_rest(self, rest: Sequence[Intent], failed: Intent) -> None:
        for intent in rest:
            if intent.state in ("planned", "simulated"):
                self.journal.transition(intent.id, "cancelled", error=f"not sent: step {failed.action_index}."
                                        f"{failed.step} of its plan ended {failed.state}")
                self._finished(intent.id, "cancelled")

    def _send_new(self, intent: Intent, context: _ChainContext, first: bool) -> None:
        now = self.clock()
        if now - intent.created_at >= self.policy.execution.deadline_s:
            self.journal.transition(intent.id, "expired", error="never sent before its deadline")
            self._finished(intent.id, "expired")
            return
        if self.signer is None:
            raise BallastError("live execution needs a signer: set BALLAST_KEYSTORE (or BALLAST_PRIVATE_KEY locally)")
        held = self.guard.sending_refusal() or self.guard.check_tx(_request(intent))
        if held is not None:
            if held.rule != "kill_switch":
                self.journal.transition(intent.id, "failed", error=str(held))
                self._finished(intent.id, "failed")
            log.warning("not sent", portfolio=self.portfolio, intent=intent.id[:12], reason=str(held))
            return
        # The first step runs against the snapshot the plan was made from; later ones after the step before it.
        gas, reason = self._simulate(intent, intent.snapshot_block if first else "latest")
        if reason is not None:
            self.journal.transition(intent.id, "failed", error=f"reverted in simulation: {reason}")
            self._finished(intent.id, "failed")
            log.warning("simulation reverted: not sent", portfolio=self.portfolio, intent=intent.id[:12],
                        reason=reason)
            return
        self.journal.transition(intent.id, "simulated", gas_limit=gas)
        try:
            fees = suggest_fees(context.w3, self.policy.limits, self.health_factor)
        except FeeCapExceeded as error:
            self.journal.record_event(self.portfolio, "held", str(error), intent.id)
            log.warning("gas above the cap: not sent", portfolio=self.portfolio, reason=str(error))
            return
        assert gas is not None
        stored = self._sign(intent, context, fees, "action", gas)
        self._broadcast(intent.id, context, stored)

    def _follow(self, intent: Intent, context: _ChainContext) -> None:
        if self._settle(intent, context):
            return
        intent = self.journal.intent(intent.id) or intent
        txs = self.journal.txs(intent.id)
        newest = txs[-1]
        if newest.record.state == "signed" or not self._node_has(context, newest.record.tx_hash):
            self._broadcast(intent.id, context, newest)  # the same bytes, never a new signature
            intent = self.journal.intent(intent.id) or intent
        if intent.state == "mined":
            return
        now = self.clock()
        started = intent.signed_at or intent.created_at
        cancelling = newest.record.kind == "cancel"
        execution = self.policy.execution
        if not cancelling and now - started >= execution.deadline_s:
            self._cancel(intent, context, newest, "past its deadline")
            return
        if now - (intent.last_sent_at or started) < execution.replace_after_s:
            return
        if not cancelling and self.recheck is not None:
            stop = self.recheck(intent)
            if stop:
                self._cancel(intent, context, newest, f"no longer wanted: {stop}")
                return
        previous = Fees(newest.record.max_fee_per_gas_wei, newest.record.max_priority_fee_per_gas_wei)
        current = self._current_fees(context, capped=not cancelling)
        if cancelling:  # its own budget: a stuck nonce blocks everything after it (the daemon escalates past it)
            fees = cancellation_bump(previous, current, sum(t.record.kind == "cancel" for t in txs) - 1,
                                     self.policy.limits)
        else:
            cap = gas_cap_wei(self.policy.limits, self.health_factor)
            fees = replacement_fees(previous, current, intent.bumps, cap)
        if fees is None:
            return  # no more bumps allowed: the deadline's cancellation takes over, or the stuck escalation
        if self.guard.sending_refusal() is not None:
            return
        kind = "cancel" if cancelling else "replacement"
        stored = self._sign(intent, context, fees, kind, newest.record.gas_limit)
        log.info("stuck transaction replaced", portfolio=self.portfolio, intent=intent.id[:12], nonce=intent.nonce,
                 max_fee_per_gas=fees.max_fee_per_gas_wei, kind=kind)
        self._broadcast(intent.id, context, stored)

    def _cancel(self, intent: Intent, context: _ChainContext, newest: StoredTx, why: str) -> None:
        if self.guard.sending_refusal() is not None:
            return
        previous = Fees(newest.record.max_fee_per_gas_wei, newest.record.max_priority_fee_per_gas_wei)
        fees = cancellation_fees(previous, self._current_fees(context, capped=False))
        stored = self._sign(intent, context, fees, "cancel", CANCEL_GAS)
        self.journal.record_event(self.portfolio, "cancelling", f"nonce {intent.nonce} {why}", intent.id)
        log.warning("cancelling intent", portfolio=self.portfolio, intent=intent.id[:12], nonce=intent.nonce, why=why)
        self._broadcast(intent.id, context, stored)

    def _current_fees(self, context: _ChainContext, capped: bool) -> Fees | None:
        try:
            return suggest_fees(context.w3, self.policy.limits, self.health_factor if capped else 0.0)
        except FeeCapExceeded:
            return None

    # --- signing, broadcasting, receipts --------------------------------------------------------------------------

    def _sign(self, intent: Intent, context: _ChainContext, fees: Fees, kind: str, gas: int) -> StoredTx:
        """Signs and journals (one database transaction, before any broadcast) a transaction of `intent`: a new
        nonce for its first signature, the same nonce for a replacement or cancellation."""
        assert self.signer is not None
        chain_id = context.chain.chain_id
        to: str
        if kind == "cancel":
            to, data, value = self.account, b"", 0
        else:
            to, data, value = intent.to_address, intent.data_bytes, int(intent.value_wei)
        with self.journal.begin() as connection:
            intent = self.journal.intent(intent.id, connection) or intent  # its nonce as journaled, never a stale copy
            nonce = intent.nonce if intent.nonce is not None else self.nonces.peek(chain_id, self.account, connection)
            signed = self.signer.sign({
                "type": 2, "chainId": chain_id, "nonce": nonce, "to": Web3.to_checksum_address(to), "data": data,
                "value": value, "gas": gas, "maxFeePerGas": fees.max_fee_per_gas_wei,
                "maxPriorityFeePerGas": fees.max_priority_fee_per_gas_wei,
            })
            record = TxRecord(intent.id, intent.chain, nonce, signed.tx_hash, kind, "signed", fees.max_fee_per_gas_wei,
                              fees.max_priority_fee_per_gas_wei, gas)
            self.journal.add_tx(connection, record, signed.raw, chain_id, self.account)
            if intent.nonce is None:
                self.nonces.commit(connection, chain_id, self.account, nonce)
                self.journal.transition(intent.id, "signed", connection, nonce=nonce, signed_at=self.clock())
            else:
                bumps = intent.bumps + (kind != "action")
                self.journal.transition(intent.id, intent.state, connection, bumps=bumps)
        log.info("transaction signed", portfolio=self.portfolio, intent=intent.id[:12], nonce=nonce,
                 tx_hash=signed.tx_hash, kind=kind)
        self.checkpoint("signed")
        return StoredTx(record, "0x" + signed.raw.hex(), self.clock(), None)

    def _broadcast(self, id: str, context: _ChainContext, stored: StoredTx) -> None:
        if self.guard.sending_refusal() is not None:
            return
        record = stored.record
        try:
            with self.nonces.fenced(self.account) as fence:  # a process that lost the lease never broadcasts
                context.w3.eth.send_raw_transaction(HexStr(stored.raw_tx))
                self.journal.update_tx(record.tx_hash, fence, state="sent", sent_at=self.clock())
        except (Web3RPCError, ValueError) as error:
            message = str(error).lower()
            if any(text in message for text in ALREADY_SENT):
                log.info("node already has the transaction", intent=id[:12], tx_hash=record.tx_hash)
            elif any(text in message for text in UNDERPRICED):
                log.warning("replacement underpriced: not sent", intent=id[:12], tx_hash=record.tx_hash)
                return
            elif any(text in message for text in NONCE_TOO_LOW):
                log.warning("nonce too low: reconciling", intent=id[:12], nonce=record.nonce)
                intent = self.journal.intent(id)
                if intent is not None:
                    self._settle(intent, context)
                self.nonces.reconcile(context.w3, context.chain.chain_id, self.account)
                return
            elif any(text in message for text in HOPELESS):
                intent = self.journal.intent(id)
                if intent is not None and record.kind == "action" and intent.state == "signed":
                    self.journal.transition(id, "failed", error=f"refused by the node: {_short(message)}")
                    self._finished(id, "failed")
                    self.nonces.reconcile(context.w3, context.chain.chain_id, self.account)
                log.error("broadcast refused", intent=id[:12], error=_short(message))
                return
            else:
                log.warning("broadcast failed; will retry the same bytes", intent=id[:12], error=_short(message))
                return
        except ChainUnavailable as error:
            log.warning("broadcast failed; will retry the same bytes", intent=id[:12], error=str(error))
            return
        now = self.clock()
        self.journal.update_tx(record.tx_hash, state="sent", sent_at=now)
        intent = self.journal.intent(id)
        if intent is not None:
            values: dict[str, Any] = {"last_sent_at": now}
            if intent.sent_at is None:
                values["sent_at"] = now
            self.journal.transition(id, "sent" if intent.state == "signed" else intent.state, **values)
        self.metrics.transactions.labels(context.chain.name, record.kind).inc()
        log.info("transaction sent", portfolio=self.portfolio, intent=id[:12], nonce=record.nonce,
                 tx_hash=record.tx_hash, kind=record.kind)
        self.checkpoint("broadcast")

    def _settle(self, intent: Intent, context: _ChainContext) -> bool:
        """Checks the receipts of every hash sent at the intent's nonce; moves it to mined, confirmed, failed,
        cancelled or unknown. Returns True when no further action is needed this pass."""
        w3 = context.w3
        txs = self.journal.txs(intent.id)
        if not txs:
            return False
        mined_count = int(w3.eth.get_transaction_count(self.account, "latest"))
        receipt, winner = self._receipt(w3, txs)
        if receipt is None and intent.nonce is not None and mined_count > intent.nonce:
            receipt, winner = self._receipt(w3, txs)  # it may have been mined between the two reads
            if receipt is None:
                reason = f"nonce {intent.nonce} was used by a transaction not in the journal"
                self.journal.transition(intent.id, "unknown", error=reason)
                self._finished(intent.id, "unknown")
                log.error("intent outcome unknown", portfolio=self.portfolio, intent=intent.id[:12], reason=reason)
                return True
        if receipt is None or winner is None:
            if intent.state == "mined":  # its block was reorganised away: back to waiting, same bytes
                self.journal.transition(intent.id, "sent", tx_hash=None, block_number=None)
                log.warning("mined transaction lost in a reorg", intent=intent.id[:12])
            return False
        block, status = int(receipt["blockNumber"]), int(receipt["status"])
        for tx in txs:
            if tx.record.tx_hash == winner.record.tx_hash:
                self.journal.update_tx(tx.record.tx_hash, state="mined", block_number=block, status=status)
            elif tx.record.state != "replaced":
                self.journal.update_tx(tx.record.tx_hash, state="replaced")
        depth = int(w3.eth.block_number) - block + 1
        confirmed = depth >= self.policy.execution.confirmations
        values: dict[str, Any] = {"tx_hash": winner.record.tx_hash, "block_number": block}
        if winner.record.kind == "cancel":
            end = "cancelled" if confirmed else "mined"
            error = f"cancelled by a no-op at nonce {intent.nonce}" if confirmed else None
            self.journal.transition(intent.id, end, error=error, **values)
        elif status != 1:
            self.journal.transition(intent.id, "failed", error=f"reverted on chain in block {block}", **values)
            end = "failed"
        else:
            end = "confirmed" if confirmed else "mined"
            self.journal.transition(intent.id, end, **values)
        if end in ("confirmed", "failed", "cancelled"):
            self._finished(intent.id, end)
            log.info("intent finished", portfolio=self.portfolio, intent=intent.id[:12], state=end,
                     tx_hash=winner.record.tx_hash, block=block)
        return True

    @staticmethod
    def _receipt(w3: Web3, txs: Sequence[StoredTx]) -> tuple[Any, StoredTx | None]:
        for tx in reversed(txs):
            try:
                receipt = w3.eth.get_transaction_receipt(tx.record.tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                continue
            if receipt is not None and receipt.get("blockNumber") is not None:
                return receipt, tx
        return None, None

    @staticmethod
    def _node_has(context: _ChainContext, tx_hash: str) -> bool:
        try:
            return context.w3.eth.get_transaction(tx_hash) is not None  # type: ignore[arg-type]
        except TransactionNotFound:
            return False

    def _simulate(self, intent: Intent, block: Any) -> tuple[int | None, str | None]:
        """Returns (gas limit with margin, None), or (None, revert reason) when the call reverts at `block`."""
        context = self.chains[intent.chain]
        call: Any = {"from": self.account, "to": intent.to_address, "data": intent.data,
                     "value": int(intent.value_wei)}
        try:
            context.w3.eth.call(call, block_identifier=block)
            gas = context.w3.eth.estimate_gas(call, block_identifier=block)
        except ContractLogicError as error:
            return None, revert_reason(error)
        except Web3RPCError as error:
            if why := transient(error):  # not a revert: the intent waits for the next pass
                raise ChainUnavailable(f"chain {intent.chain}: simulation not answered now ({why})") from error
            return None, revert_reason(error)
        return math.ceil(gas * GAS_MARGIN), None

    def _finished(self, id: str, state: str) -> None:
        self.metrics.intents.labels(self.portfolio, state).inc()

    def _update_gauges(self) -> None:
        self.metrics.unresolved.labels(self.portfolio).set(len(self.journal.unresolved(self.portfolio)))
        self.metrics.paused.labels(self.portfolio).set(1 if self.journal.paused(self.portfolio) else 0)


def _approved(request: TxRequest, token: Token, spender: str) -> int:
    approval = decode_approve(request.data)
    if approval is None or request.to.lower() != token.address.lower() or approval[0].lower() != spender.lower():
        return 0
    return approval[1]


def _request(intent: Intent) -> TxRequest:
    return TxRequest(intent.chain, intent.to_address, intent.data_bytes, int(intent.value_wei), intent.description)


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:199] + "…"


def _delta_usd(snapshot: Snapshot) -> float | None:
    """Returns the snapshot's net delta in USD from the risk model, or None without a fresh price for every asset."""
    from agent.risk.portfolio import risk_report

    prices = {p.symbol: p.price_usd for c in snapshot.chains for p in c.prices if not p.stale}
    try:
        return risk_report(snapshot.positions, snapshot.underlying, prices, snapshot.timestamp).total.delta_usd
    except KeyError:
        return None


def open_executor(
    policy: Policy, settings: Settings, clock: Callable[[], float] = time.time,
    registry: CollectorRegistry = REGISTRY, journal: Journal | None = None, start: bool = True,
) -> Executor:
    """Returns an executor for `policy` with the journal, kill switch and key the settings name (no key is loaded
    in dry-run mode), started unless `start` is False (starting takes the account's lease)."""
    journal = journal or Journal(settings.db, clock)
    signer = None
    if policy.execution.mode == "live":
        chain_ids = {chain.chain_id for chain in policy.portfolio.chains}
        signers = [load_signer(settings, chain_id, policy.portfolio.account) for chain_id in sorted(chain_ids)]
        signer = signers[0]
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
