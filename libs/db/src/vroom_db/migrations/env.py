"""Alembic's environment: run on the connection ``vroom_db.migrate`` hands over.

There is no ``alembic.ini``; ``migrate()`` builds the config, takes the migration lock
and passes its open connection in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context

from vroom_db.models import Base

connection = context.config.attributes["connection"]
# Batch mode: SQLite alters a table by copying it, so one migration runs on both.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
