"""Alembic migrations of the journal; `Journal` runs them to the head revision whenever it opens a database."""
