"""Alembic's environment for the graftmatch database: run only through
:func:`graftmatch.database.upgrade`, which passes an open connection inside its transaction."""

from __future__ import annotations

from alembic import context

from graftmatch.database.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with 'graftmatch db upgrade', not the alembic command")
context.configure(connection=connection, target_metadata=metadata, transactional_ddl=True,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
