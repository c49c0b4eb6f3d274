"""Leases and fencing: the `leases` table (one row per account: its current epoch and holder), the epoch each
transaction was signed under, the time an intent was found stuck, and 64-bit fee and chain-id columns (SQLite
stores every integer in 8 bytes already; PostgreSQL's INTEGER would overflow at 2.1 gwei).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_WIDENED = {"transactions": ("chain_id", "max_fee_per_gas_wei", "max_priority_fee_per_gas_wei"),
            "intents": ("chain_id",), "nonces": ("chain_id",)}


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("since", sa.Float, nullable=False),
    )
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("lease_epoch", sa.BigInteger))
    with op.batch_alter_table("intents") as batch:
        batch.add_column(sa.Column("stuck_at", sa.Float))
    if op.get_bind().dialect.name != "sqlite":
        for table, columns in _WIDENED.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.BigInteger, existing_type=sa.Integer)


def downgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.drop_column("stuck_at")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("lease_epoch")
    op.drop_table("leases")
