"""Alembic's entry point, run by `tiergate.feedback.migrate` with an open connection in
`config.attributes["connection"]` (never a URL from a file: the caller's URL, credentials included,
stays in memory)."""

from __future__ import annotations

from alembic import context

from tiergate.feedback.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
