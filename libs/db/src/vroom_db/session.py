"""Engine and sessions. SQLite gets foreign keys and WAL so readers never block the writer."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from vroom_db.migrate import migrate


def make_engine(database_url: str) -> Engine:
    """An engine for the URL; creates the SQLite file's folder when needed."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if url.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA foreign_keys=ON")
            # WAL is a property of the file, kept once set: switch only when it is not,
            # and a connection that meets another one switching it (SQLite refuses at
            # once rather than wait) works in whatever mode that one leaves.
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                with contextlib.suppress(sqlite3.OperationalError):
                    cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def one_off_session(database_url: str) -> Iterator[Session]:
    """A session on a short-lived engine: the schema migrated, the engine disposed
    afterwards. For a command's or a test's one read; services keep a session factory."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()
