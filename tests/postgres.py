"""A private PostgreSQL server for the tests: Debian's binaries, a fresh cluster in a
temporary directory, loopback on a free port, trust auth, fsync off.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres``
user the Debian package creates and the server is started through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tests.ports import free_ports

#: The superuser initdb creates.
SUPERUSER = "postgres"


def _binary(name: str) -> str:
    # Debian installs each major version under /usr/lib/postgresql/<major>/: the newest.
    installed = sorted(
        Path("/usr/lib/postgresql").glob(f"[0-9]*/bin/{name}"), key=lambda p: int(p.parts[-3])
    )
    found = shutil.which(name) or (str(installed[-1]) if installed else None)
    if found is None:
        raise RuntimeError(
            f"{name} not found: run scripts/ensure-postgres.sh (Debian 'postgresql')"
        )
    return found


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database for one test (dropped afterwards): its URL."""
        name = f"vroom_test_{uuid.uuid4().hex[:10]}"
        with self._admin() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self.url(name)
        finally:
            with self._admin() as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throw-away cluster; stop it and delete its files at the end."""
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="vroom-pg-"))
    data = root / "data"
    prefix: list[str] = []
    if as_root:
        account = pwd.getpwnam(SUPERUSER)
        os.chown(root, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", SUPERUSER, "--"]
    (port,) = free_ports(1)

    def run(*command: str) -> None:
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"{command[0]} failed: {result.stderr}{result.stdout}\n{log}")

    run(_binary("initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        _binary("pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "server.log"),
        "-o",
        options,
        "-w",
        "start",
    )
    try:
        yield PostgresServer("127.0.0.1", port)
    finally:
        run(_binary("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
