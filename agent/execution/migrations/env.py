"""Alembic environment of the journal: migrations run on the connection `Journal` passes in
(`config.attributes["connection"]`), online only; logging stays as the application configured it."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
# SQLite alters tables by copying them ("batch" mode); other databases ignore the flag.
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
