"""The first journal schema: intents, their transactions (every hash sent at a nonce), the durable nonce of each
(chain, account), events (refusals, pauses, deferrals) and each portfolio's pause flag.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("portfolio", sa.String(64), nullable=False, index=True),
        sa.Column("plan_id", sa.String(64), nullable=False, index=True),
        sa.Column("chain", sa.String(64), nullable=False),
        sa.Column("chain_id", sa.Integer, nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("action_index", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("value_wei", sa.String(80), nullable=False, server_default="0"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("notional_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("snapshot_block", sa.Integer, nullable=False),
        sa.Column("plan_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("action_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("error", sa.Text),
        sa.Column("gas_limit", sa.Integer),
        sa.Column("nonce", sa.Integer),
        sa.Column("bumps", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tx_hash", sa.String(66)),
        sa.Column("block_number", sa.Integer),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("signed_at", sa.Float),
        sa.Column("sent_at", sa.Float),
        sa.Column("last_sent_at", sa.Float),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("intent_id", sa.String(64), sa.ForeignKey("intents.id"), nullable=False, index=True),
        sa.Column("chain_id", sa.Integer, nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("nonce", sa.Integer, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("raw_tx", sa.Text, nullable=False),
        sa.Column("max_fee_per_gas_wei", sa.Integer, nullable=False),
        sa.Column("max_priority_fee_per_gas_wei", sa.Integer, nullable=False),
        sa.Column("gas_limit", sa.Integer, nullable=False),
        sa.Column("block_number", sa.Integer),
        sa.Column("status", sa.Integer),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
    )
    op.create_index("transactions_by_nonce", "transactions", ["chain_id", "account", "nonce"])
    op.create_table(
        "nonces",
        sa.Column("chain_id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("next_nonce", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("portfolio", sa.String(64), nullable=False, index=True),
        sa.Column("intent_id", sa.String(64)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "portfolios",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("portfolios", "events", "nonces", "transactions", "intents"):
        op.drop_table(table)
