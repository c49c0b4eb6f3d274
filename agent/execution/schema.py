"""The journal's tables as SQLAlchemy Core sees them; `migrations/` creates and changes them (Alembic)."""

from __future__ import annotations

import sqlalchemy as sa

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
    sa.Column("stuck_at", sa.Float),
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
