"""Alembic environment: always run programmatically by ``hearth.store.sql.migrate``
on a connection it passes in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from hearth.store.sql.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
