"""What execution records (`execution/`): the intent lifecycle's states and one signed transaction as the journal
holds it. Re-exported by `agent.model`."""

from __future__ import annotations

from dataclasses import dataclass

INTENT_STATES = ("planned", "simulated", "signed", "sent", "mined", "confirmed", "failed", "expired", "cancelled",
                 "unknown")
"""An intent's lifecycle: planned → simulated → signed → sent → mined → confirmed, or one of the ends failed
(refused, reverted in simulation or on chain), expired (never sent before its deadline), cancelled (replaced by a
no-op, or never sent because an earlier step of its plan did not succeed), unknown (its nonce was used by a
transaction the journal does not hold)."""

OPEN_INTENT_STATES = ("signed", "sent", "mined")
"""States in which a transaction may still land or be undone: the portfolio waits for them before acting again."""


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One signed transaction as the journal holds it: every hash ever sent at an intent's nonce is one record.

    `kind` is "action" (the first signature), "replacement" (same call, bumped fees) or "cancel" (a zero-value
    transfer to the sender at the same nonce); `state` is signed, sent, mined or replaced; fees in wei.
    """

    intent_id: str
    chain: str
    nonce: int
    tx_hash: str
    kind: str
    state: str
    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int
    gas_limit: int
    block_number: int | None = None
    status: int | None = None
