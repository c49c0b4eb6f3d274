"""Recipes: an intent may carry several calls in one transaction (a Safe's keeper module runs them atomically);
`calls` lists them as JSON (action index, kind, target, call data, description). Empty for a plain transaction.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.add_column(sa.Column("calls", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.drop_column("calls")
