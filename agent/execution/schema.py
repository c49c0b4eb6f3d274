"""The journal's tables as SQLAlchemy Core sees them (`migrations/` creates and changes them with Alembic), and
their rows as the executor sees them: `Intent` and `StoredTx`."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from agent.model import INTENT_STATES, TxRecord

metadata = sa.MetaData()
intents = sa.Table(
    "intents", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("portfolio", sa.String(64)), sa.Column("plan_id", sa.String(64)), sa.Column("chain", sa.String(64)),
    sa.Column("chain_id", sa.BigInteger), sa.Column("account", sa.String(42)), sa.Column("action_index", sa.Integer),
    sa.Column("step", sa.Integer), sa.Column("kind", sa.String(32)), sa.Column("mode", sa.String(16)),
    sa.Column("state", sa.String(16)), sa.Column("to_address", sa.String(42)), sa.Column("data", sa.Text),
    sa.Column("value_wei", sa.String(80)), sa.Column("description", sa.Text), sa.Column("notional_usd", sa.Float),
    sa.Column("snapshot_block", sa.Integer), sa.Column("plan_reason", sa.Text), sa.Column("action_reason", sa.Text),
    sa.Column("error", sa.Text), sa.Column("gas_limit", sa.Integer), sa.Column("nonce", sa.Integer),
    sa.Column("bumps", sa.Integer), sa.Column("tx_hash", sa.String(66)), sa.Column("block_number", sa.Integer),
    sa.Column("created_at", sa.Float), sa.Column("updated_at", sa.Float), sa.Column("signed_at", sa.Float),
    sa.Column("sent_at", sa.Float), sa.Column("last_sent_at", sa.Float),
    sa.Column("stuck_at", sa.Float), sa.Column("calls", sa.Text),
)
transactions = sa.Table(
    "transactions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("intent_id", sa.String(64)), sa.Column("chain_id", sa.BigInteger), sa.Column("account", sa.String(42)),
    sa.Column("nonce", sa.Integer), sa.Column("tx_hash", sa.String(66)), sa.Column("kind", sa.String(16)),
    sa.Column("state", sa.String(16)), sa.Column("raw_tx", sa.Text), sa.Column("max_fee_per_gas_wei", sa.BigInteger),
    sa.Column("max_priority_fee_per_gas_wei", sa.BigInteger), sa.Column("gas_limit", sa.Integer),
    sa.Column("block_number", sa.Integer), sa.Column("status", sa.Integer), sa.Column("created_at", sa.Float),
    sa.Column("sent_at", sa.Float), sa.Column("lease_epoch", sa.BigInteger),
)
nonces = sa.Table(
    "nonces", metadata,
    sa.Column("chain_id", sa.BigInteger, primary_key=True), sa.Column("account", sa.String(42), primary_key=True),
    sa.Column("next_nonce", sa.Integer), sa.Column("updated_at", sa.Float),
)
events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True), sa.Column("at", sa.Float),
    sa.Column("portfolio", sa.String(64)), sa.Column("intent_id", sa.String(64)), sa.Column("kind", sa.String(32)),
    sa.Column("detail", sa.Text),
)
portfolios = sa.Table(
    "portfolios", metadata,
    sa.Column("name", sa.String(64), primary_key=True), sa.Column("paused", sa.Boolean),
    sa.Column("reason", sa.Text), sa.Column("updated_at", sa.Float),
)
leases = sa.Table(
    "leases", metadata,
    sa.Column("account", sa.String(42), primary_key=True), sa.Column("epoch", sa.BigInteger),
    sa.Column("host", sa.String(255)), sa.Column("pid", sa.Integer), sa.Column("since", sa.Float),
)


# Which state may follow which; a terminal state has no successor.
NEXT_STATES: dict[str, frozenset[str]] = {
    "planned": frozenset({"simulated", "failed", "expired", "cancelled"}),
    "simulated": frozenset({"signed", "failed", "expired", "cancelled"}),
    # A receipt found already deep enough (after a restart, or with one confirmation) skips the states between.
    "signed": frozenset({"sent", "mined", "confirmed", "failed", "cancelled", "unknown"}),
    "sent": frozenset({"mined", "confirmed", "failed", "cancelled", "unknown"}),
    "mined": frozenset({"confirmed", "sent", "failed", "cancelled", "unknown"}),  # back to sent: a reorg
}
TERMINAL_STATES = frozenset(INTENT_STATES) - frozenset(NEXT_STATES)


@dataclass(frozen=True, slots=True)
class Intent:
    """One transaction-to-be of a plan and where it stands: a recipe (kind "recipe": all of the plan's calls on one
    chain, through the keeper module, listed in `calls`), or one call of a direct account (an action, or the
    approval it needs: `step` 0, 1 …).

    Times are unix seconds; `notional_usd` is the action's (the recipe's sum); `error` holds a refusal or revert
    reason; `stuck_at` when the daemon found it stuck.
    """

    id: str
    portfolio: str
    plan_id: str
    chain: str
    chain_id: int
    account: str
    action_index: int
    step: int
    kind: str
    mode: str
    state: str
    to_address: str
    data: str
    value_wei: str
    description: str
    notional_usd: float
    snapshot_block: int
    plan_reason: str
    action_reason: str
    error: str | None
    gas_limit: int | None
    nonce: int | None
    bumps: int
    tx_hash: str | None
    block_number: int | None
    created_at: float
    updated_at: float
    signed_at: float | None
    sent_at: float | None
    last_sent_at: float | None
    stuck_at: float | None
    calls: str | None = None  # a recipe's calls, JSON

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def data_bytes(self) -> bytes:
        return bytes.fromhex(self.data.removeprefix("0x"))

    def recipe_calls(self) -> list[dict[str, Any]]:
        """Returns a recipe's calls as journaled (action, kind, to, data, description); empty for a plain call."""
        return list(json.loads(self.calls)) if self.calls else []


@dataclass(frozen=True, slots=True)
class StoredTx:
    """A transaction row: the `TxRecord` plus its raw signed bytes (0x hex) and times."""

    record: TxRecord
    raw_tx: str
    created_at: float
    sent_at: float | None


def intent_row(row: Any) -> Intent:
    """Returns an `intents` row as an Intent."""
    return Intent(**{f.name: getattr(row, f.name) for f in fields(Intent)})


def stored_tx(row: Any) -> StoredTx:
    """Returns a `transactions` row (joined with its intent's chain) as a StoredTx."""
    record = TxRecord(row.intent_id, row.chain, row.nonce, row.tx_hash, row.kind, row.state, row.max_fee_per_gas_wei,
                      row.max_priority_fee_per_gas_wei, row.gas_limit, row.block_number, row.status)
    return StoredTx(record, row.raw_tx, row.created_at, row.sent_at)
