"""The schema's one history: the Alembic migrations in ``vroom_db/migrations``.

Every process that opens the database (the gateway, the materializer, ``vroom seed``,
the chart's bootstrap Job) calls ``migrate()`` first; it brings the schema to the head
revision and is a no-op when it is there. Concurrent callers are serialized (a
PostgreSQL advisory lock; a lock file beside a SQLite database), so two gateways
starting together on one database migrate it once.

A database made before migrations existed (tables, no ``alembic_version``) is adopted:
it is stamped at the baseline revision, whose schema it has, then upgraded.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Final, NamedTuple

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError

from vroom_common.errors import DependencyUnavailable

MIGRATIONS: Final = Path(__file__).with_name("migrations")
#: The first revision: a database holding its tables but no Alembic version (made
#: before migrations existed) is stamped at it, then upgraded.
BASELINE: Final = "0001"
#: Key of the PostgreSQL advisory lock held while migrating ("vroom" in ASCII).
PG_LOCK_KEY: Final = 0x76726F6F6D

log = structlog.get_logger("vroom.db")


class Migration(NamedTuple):
    """The revisions before and after a ``migrate()`` (``None``: no schema)."""

    before: str | None
    after: str | None


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config for our migrations (no ini file), bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")  # a broken install
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None``: not migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> Migration:
    """Bring the schema to ``revision`` (default: the newest); safe to call concurrently.

    Raises:
        DependencyUnavailable: the database cannot be reached.
    """
    try:
        return _migrate(engine, revision)
    except OperationalError as exc:
        where = engine.url.render_as_string()
        raise DependencyUnavailable("the database", f"{where}: {exc.orig}") from exc


def _migrate(engine: Engine, revision: str) -> Migration:
    if revision == "head" and (current := current_revision(engine)) == head_revision():
        return Migration(current, current)  # the usual case, without loading the scripts
    with _sqlite_lock(engine.url), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        config = alembic_config(connection)
        before = MigrationContext.configure(connection).get_current_revision()
        if before is None and inspect(connection).has_table("vehicles"):
            log.info("adopting a database made before migrations", baseline=BASELINE)
            command.stamp(config, BASELINE)
            before = BASELINE
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        log.info("database migrated", url=engine.url.render_as_string(), before=before, after=after)
    return Migration(before, after)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (``base``: no tables)."""
    with _sqlite_lock(engine.url), engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def _sqlite_lock(url: URL) -> AbstractContextManager[object]:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return nullcontext()
    return _file_lock(Path(f"{url.database}.migrate.lock"))


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield
