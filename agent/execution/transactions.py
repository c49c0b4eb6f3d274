"""A signed transaction's life, from signature to settlement: sign and journal (one database transaction, before
any broadcast), broadcast (the stored bytes, never a new signature), follow (re-broadcast, replace with bumped fees
when stuck, cancel by a same-nonce no-op past the deadline) and settle (receipts of every hash sent at the nonce).

The sender is the address whose key signs: the portfolio's account for a direct account, the keeper for a Safe
(whose calls go through its keeper module).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from agent.adapters.encode import Venues
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
from agent.chain.signer import Signer
from agent.errors import ChainUnavailable
from agent.execution.guard import Guard
from agent.execution.journal import Intent, Journal, StoredTx
from agent.execution.metrics import ExecutionMetrics
from agent.execution.nonce import NonceAllocator
from agent.execution.reverts import revert_reason
from agent.model import TxRecord
from agent.policy import Chain, Policy

log = structlog.get_logger("agent.execution.executor")

# What nodes answer when they already hold this transaction (or a better one at its nonce): it was sent.
ALREADY_SENT = ("already known", "already imported")
# A replacement the node refused: not sent, and its bump timer keeps running (the next bump goes higher).
UNDERPRICED = ("replacement transaction underpriced", "replacement underpriced")
NONCE_TOO_LOW = ("nonce too low", "nonce is too low")
HOPELESS = ("insufficient funds", "intrinsic gas too low", "exceeds block gas limit")

Checkpoint = Callable[[str], None]
"""Called at named points of a transaction's life ("signed", "broadcast"): tests stop the process there."""


@dataclass
class ChainContext:
    """One chain of the policy: its connection and the contracts and tokens the account acts through."""

    chain: Chain
    w3: Web3
    venues: Venues


class PortfolioSender:
    """What the executor's parts share that act for one portfolio from one sender: its policy, journal and guard."""

    def __init__(self, policy: Policy, journal: Journal, guard: Guard, sender: str) -> None:
        self.policy = policy
        self.portfolio = policy.portfolio.name
        self.journal = journal
        self.guard = guard
        self.sender = sender


class Transactions(PortfolioSender):
    """Signs, broadcasts, follows and settles the transactions of one portfolio's intents, from one sender."""

    def __init__(self, policy: Policy, journal: Journal, signer: Signer | None, sender: str, guard: Guard,
                 metrics: ExecutionMetrics, clock: Callable[[], float], checkpoint: Checkpoint | None) -> None:
        super().__init__(policy, journal, guard, sender)
        self.signer = signer
        self.metrics = metrics
        self.clock = clock
        self.checkpoint = checkpoint or (lambda _name: None)
        self.nonces = NonceAllocator(journal)
        self.health_factor: float | None = None  # the lowest of the last snapshot: it lifts the gas cap near 1

    def fees(self, context: ChainContext, capped: bool = True) -> Fees | None:
        """Returns the fees to pay now (None above the policy's gas cap, which is lifted near liquidation)."""
        try:
            return suggest_fees(context.w3, self.policy.limits, self.health_factor if capped else 0.0)
        except FeeCapExceeded:
            return None

    def finished(self, id: str, state: str) -> None:
        self.metrics.intents.labels(self.portfolio, state).inc()

    # --- signing and broadcast ------------------------------------------------------------------------------------

    def sign(self, intent: Intent, context: ChainContext, fees: Fees, kind: str, gas: int) -> StoredTx:
        """Signs and journals (one database transaction, before any broadcast) a transaction of `intent`: a new
        nonce for its first signature, the same nonce for a replacement or cancellation."""
        assert self.signer is not None
        chain_id = context.chain.chain_id
        if kind == "cancel":
            to, data, value = self.sender, b"", 0
        else:
            to, data, value = intent.to_address, intent.data_bytes, int(intent.value_wei)
        with self.journal.begin() as connection:
            intent = self.journal.intent(intent.id, connection) or intent  # its nonce as journaled, never a stale copy
            nonce = intent.nonce if intent.nonce is not None else self.nonces.peek(chain_id, self.sender, connection)
            signed = self.signer.sign({
                "type": 2, "chainId": chain_id, "nonce": nonce, "to": Web3.to_checksum_address(to), "data": data,
                "value": value, "gas": gas, "maxFeePerGas": fees.max_fee_per_gas_wei,
                "maxPriorityFeePerGas": fees.max_priority_fee_per_gas_wei,
            })
            record = TxRecord(intent.id, intent.chain, nonce, signed.tx_hash, kind, "signed", fees.max_fee_per_gas_wei,
                              fees.max_priority_fee_per_gas_wei, gas)
            self.journal.add_tx(connection, record, signed.raw, chain_id, self.sender)
            if intent.nonce is None:
                self.nonces.commit(connection, chain_id, self.sender, nonce)
                self.journal.transition(intent.id, "signed", connection, nonce=nonce, signed_at=self.clock())
            else:
                bumps = intent.bumps + (kind != "action")
                self.journal.transition(intent.id, intent.state, connection, bumps=bumps)
        log.info("transaction signed", portfolio=self.portfolio, intent=intent.id[:12], nonce=nonce,
                 tx_hash=signed.tx_hash, kind=kind)
        self.checkpoint("signed")
        return StoredTx(record, "0x" + signed.raw.hex(), self.clock(), None)

    def broadcast(self, id: str, context: ChainContext, stored: StoredTx) -> None:
        """Sends the stored bytes, inside a database transaction in which the sender's lease is current (raises
        LeaseLost otherwise); a node that already has them counts as sent; an underpriced replacement is not sent (the
        next bump goes higher); a hopeless refusal fails the intent; anything else is retried later, same bytes."""
        if self.guard.sending_refusal() is not None:
            return
        record = stored.record
        try:
            with self.nonces.fenced(self.sender) as fence:  # a process that lost the lease never broadcasts
                context.w3.eth.send_raw_transaction(HexStr(stored.raw_tx))
                self.journal.update_tx(record.tx_hash, fence, state="sent", sent_at=self.clock())
        except (Web3RPCError, ValueError) as error:
            if self._refused(id, context, record, str(error).lower()):
                return
        except ChainUnavailable as error:
            log.warning("broadcast failed; will retry the same bytes", intent=id[:12], error=str(error))
            return
        now = self.clock()
        self.journal.update_tx(record.tx_hash, state="sent", sent_at=now)
        intent = self.journal.intent(id)
        if intent is not None:
            # The bump timer runs from the first send of these bytes: re-broadcasts to a node that forgot them
            # (an evicting mempool, a load-balanced endpoint) must not postpone the replacement for ever.
            values: dict[str, Any] = {} if stored.sent_at is not None else {"last_sent_at": now}
            if intent.sent_at is None:
                values["sent_at"] = now
            self.journal.transition(id, "sent" if intent.state == "signed" else intent.state, **values)
        self.metrics.transactions.labels(context.chain.name, record.kind).inc()
        log.info("transaction sent", portfolio=self.portfolio, intent=id[:12], nonce=record.nonce,
                 tx_hash=record.tx_hash, kind=record.kind)
        self.checkpoint("broadcast")

    def _refused(self, id: str, context: ChainContext, record: TxRecord, message: str) -> bool:
        """Handles a node's refusal of a broadcast; returns False when the node already has the transaction."""
        if any(text in message for text in ALREADY_SENT):
            log.info("node already has the transaction", intent=id[:12], tx_hash=record.tx_hash)
            return False
        if any(text in message for text in UNDERPRICED):
            log.warning("replacement underpriced: not sent", intent=id[:12], tx_hash=record.tx_hash)
        elif any(text in message for text in NONCE_TOO_LOW):
            log.warning("nonce too low: reconciling", intent=id[:12], nonce=record.nonce)
            intent = self.journal.intent(id)
            if intent is not None:
                self.settle(intent, context)
            self.nonces.reconcile(context.w3, context.chain.chain_id, self.sender)
        elif any(text in message for text in HOPELESS):
            intent = self.journal.intent(id)
            if intent is not None and record.kind == "action" and intent.state == "signed":
                self.journal.transition(id, "failed", error=f"refused by the node: {_short(message)}")
                self.finished(id, "failed")
                self.nonces.reconcile(context.w3, context.chain.chain_id, self.sender)
            log.error("broadcast refused", intent=id[:12], error=_short(message))
        else:
            log.warning("broadcast failed; will retry the same bytes", intent=id[:12], error=_short(message))
        return True

    # --- following ------------------------------------------------------------------------------------------------

    def follow(self, intent: Intent, context: ChainContext) -> None:
        """Settles a sent intent, or re-broadcasts it, replaces it with bumped fees when stuck, cancels it past its
        deadline."""
        if self.settle(intent, context):
            return
        intent = self.journal.intent(intent.id) or intent
        txs = self.journal.txs(intent.id)
        newest = txs[-1]
        now = self.clock()
        started = intent.signed_at or intent.created_at
        cancelling = newest.record.kind == "cancel"
        execution = self.policy.execution
        # The deadline comes before any re-broadcast: bytes signed before a crash or a kill switch would otherwise
        # go out hours late. Past it, a same-nonce no-op takes the nonce instead (nothing while the switch is on).
        if not cancelling and now - started >= execution.deadline_s:
            self.cancel(intent, context, newest, "past its deadline")
            return
        if newest.record.state == "signed" or not _node_has(context, newest.record.tx_hash):
            self.broadcast(intent.id, context, newest)  # the same bytes, never a new signature
            intent = self.journal.intent(intent.id) or intent
        if intent.state == "mined":
            return
        if now - (intent.last_sent_at or started) < execution.replace_after_s:
            return
        previous = Fees(newest.record.max_fee_per_gas_wei, newest.record.max_priority_fee_per_gas_wei)
        current = self.fees(context, capped=not cancelling)
        if cancelling:  # its own budget: a stuck nonce blocks everything after it (the daemon escalates past it)
            cancels = sum(t.record.kind == "cancel" for t in txs) - 1
            fees = cancellation_bump(previous, current, cancels, self.policy.limits)
        else:
            cap = gas_cap_wei(self.policy.limits, self.health_factor)
            fees = replacement_fees(previous, current, intent.bumps, cap)
        if fees is None or self.guard.sending_refusal() is not None:
            return  # no more bumps allowed: the deadline's cancellation takes over, or the stuck escalation
        kind = "cancel" if cancelling else "replacement"
        stored = self.sign(intent, context, fees, kind, newest.record.gas_limit)
        log.info("stuck transaction replaced", portfolio=self.portfolio, intent=intent.id[:12], nonce=intent.nonce,
                 max_fee_per_gas=fees.max_fee_per_gas_wei, kind=kind)
        self.broadcast(intent.id, context, stored)

    def cancel(self, intent: Intent, context: ChainContext, newest: StoredTx, why: str) -> None:
        """Signs and sends a zero-value transfer to the sender at the intent's nonce, with fees above the last."""
        if self.guard.sending_refusal() is not None:
            return
        previous = Fees(newest.record.max_fee_per_gas_wei, newest.record.max_priority_fee_per_gas_wei)
        fees = cancellation_fees(previous, self.fees(context, capped=False))
        stored = self.sign(intent, context, fees, "cancel", CANCEL_GAS)
        self.journal.record_event(self.portfolio, "cancelling", f"nonce {intent.nonce} {why}", intent.id)
        log.warning("cancelling intent", portfolio=self.portfolio, intent=intent.id[:12], nonce=intent.nonce, why=why)
        self.broadcast(intent.id, context, stored)

    # --- settling -------------------------------------------------------------------------------------------------

    def settle(self, intent: Intent, context: ChainContext) -> bool:
        """Checks the receipts of every hash sent at the intent's nonce; moves it to mined, confirmed, failed,
        cancelled or unknown. Returns True when no further action is needed this pass."""
        w3 = context.w3
        txs = self.journal.txs(intent.id)
        if not txs:
            return False
        mined_count = int(w3.eth.get_transaction_count(Web3.to_checksum_address(self.sender), "latest"))
        receipt, winner = _receipt(w3, txs)
        if receipt is None and intent.nonce is not None and mined_count > intent.nonce:
            receipt, winner = _receipt(w3, txs)  # it may have been mined between the two reads
            if receipt is None:
                self._unknown(intent)
                return True
        if receipt is None or winner is None:
            if intent.state == "mined":  # its block was reorganised away: back to waiting, same bytes
                self.journal.transition(intent.id, "sent", tx_hash=None, block_number=None)
                log.warning("mined transaction lost in a reorg", intent=intent.id[:12])
            return False
        self._settled(intent, context, txs, winner, receipt)
        return True

    def _unknown(self, intent: Intent) -> None:
        """The intent's nonce went to a transaction the journal does not know: the mark of a second signer, whose
        effect no snapshot can be trusted to explain yet. The portfolio pauses (with the outcome, in one database
        transaction) until an operator has looked and resumes it."""
        reason = f"nonce {intent.nonce} was used by a transaction not in the journal"
        with self.journal.begin() as connection:
            self.journal.transition(intent.id, "unknown", connection, error=reason)
            self.journal.pause(self.portfolio, f"intent {intent.id[:12]}: {reason} (another signer uses "
                               f"{self.sender}?)", connection)
        self.finished(intent.id, "unknown")
        self.metrics.paused.labels(self.portfolio).set(1)
        log.error("intent outcome unknown: portfolio paused", portfolio=self.portfolio, intent=intent.id[:12],
                  reason=reason)

    def _settled(self, intent: Intent, context: ChainContext, txs: Sequence[StoredTx], winner: StoredTx,
                 receipt: Any) -> None:
        block, status = int(receipt["blockNumber"]), int(receipt["status"])
        for tx in txs:
            if tx.record.tx_hash == winner.record.tx_hash:
                self.journal.update_tx(tx.record.tx_hash, state="mined", block_number=block, status=status)
            elif tx.record.state != "replaced":
                self.journal.update_tx(tx.record.tx_hash, state="replaced")
        depth = int(context.w3.eth.block_number) - block + 1
        confirmed = depth >= self.policy.execution.confirmations
        values: dict[str, Any] = {"tx_hash": winner.record.tx_hash, "block_number": block}
        if winner.record.kind == "cancel":
            end = "cancelled" if confirmed else "mined"
            error = f"cancelled by a no-op at nonce {intent.nonce}" if confirmed else None
            self.journal.transition(intent.id, end, error=error, **values)
        elif status != 1:
            why = self._onchain_reason(intent, context, winner, block)
            self.journal.transition(intent.id, "failed", error=f"reverted on chain in block {block}{why}", **values)
            end = "failed"
        else:
            end = "confirmed" if confirmed else "mined"
            self.journal.transition(intent.id, end, **values)
        if end in ("confirmed", "failed", "cancelled"):
            self.finished(intent.id, end)
            log.info("intent finished", portfolio=self.portfolio, intent=intent.id[:12], state=end,
                     tx_hash=winner.record.tx_hash, block=block)

    def _onchain_reason(self, intent: Intent, context: ChainContext, winner: StoredTx, block: int) -> str:
        """Returns ": <reason>" of a transaction that reverted in `block`, from the same call replayed on the state
        that block left (the reverted transaction changed nothing), or "" when the replay does not revert."""
        call: Any = {"from": self.sender, "to": intent.to_address, "data": intent.data,
                     "gas": winner.record.gas_limit}
        try:
            context.w3.eth.call(call, block_identifier=block)
        except (ContractLogicError, Web3RPCError) as error:
            return f": {revert_reason(error)}"
        return ""


def _receipt(w3: Web3, txs: Sequence[StoredTx]) -> tuple[Any, StoredTx | None]:
    for tx in reversed(txs):
        try:
            receipt = w3.eth.get_transaction_receipt(tx.record.tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            continue
        if receipt is not None and receipt.get("blockNumber") is not None:
            return receipt, tx
    return None, None


def _node_has(context: ChainContext, tx_hash: str) -> bool:
    try:
        return context.w3.eth.get_transaction(tx_hash) is not None  # type: ignore[arg-type]
    except TransactionNotFound:
        return False


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:199] + "…"
