"""A private PostgreSQL cluster for the tests: a real server, never a mock.

``initdb`` into a temporary folder, started on a free loopback port with its unix socket
in that folder (fsync on, as in production), stopped and removed at the end of the
session.  Each test gets a database of its own (``CREATE DATABASE … TEMPLATE``), so tests
never see each other's rows.  ``initdb`` refuses to run as root: when the tests do, the
cluster runs as the ``postgres`` system user (Debian's package creates it).

Skipped, with the reason, where no PostgreSQL binaries are installed (``.ci/run``
installs Debian's ``postgresql``).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PgCluster", "find_pg_bin", "own_pg_cluster", "pg_cluster", "pg_url"]

SUPERUSER = "correo"


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` (Debian), else ``initdb`` on PATH."""

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """One ``postgres`` server process owning a temporary data folder."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="correo-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._names = itertools.count(1)
        self._schema_ready = False
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                pytest.skip("running as root and there is no 'postgres' user for initdb")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [*self._as, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",  # loopback and the private socket folder only (below)
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
            "--no-sync",  # initdb's own files; the server runs with fsync on (below)
        )
        for _attempt in range(5):  # a free port can be taken before the server binds it
            self.port = _free_port()
            try:
                self.start_server()
                return
            except RuntimeError:
                continue
        log = (self.root / "server.log").read_text(errors="replace")
        raise RuntimeError(f"postgres did not start:\n{log[-3000:]}")

    def start_server(self) -> None:
        """Start the server process on ``self.port`` (again, after :meth:`stop_server`)."""
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=on",
                "-c synchronous_commit=on",
                "-c max_connections=300",
                "-c shared_buffers=64MB",
                f"-c port={self.port}",
            ]
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server process, keeping its data: ``fast`` ends every session (what a
        restart or fail-over does to clients), ``immediate`` is a crash (recovery on start).
        """
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def stop(self) -> None:
        try:
            # immediate: no shutdown checkpoint, the cluster is thrown away; a test may
            # have left it stopped already
            with contextlib.suppress(RuntimeError):
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """One statement in autocommit (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement.encode())

    def new_database(self, *, schema: bool = False) -> str:
        """A fresh database, empty or (``schema``) with correo's schema; returns its URL.

        A copy of a template: with the schema made once, in ``correo_schema``, a test
        does not pay for creating it again.
        """
        template = "template0"
        if schema:
            if not self._schema_ready:
                self._make_schema_template()
            template = "correo_schema"
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def _make_schema_template(self) -> None:
        import asyncio

        import psycopg

        from correo.store.postgres_schema import migrate

        self.sql("CREATE DATABASE correo_schema TEMPLATE template0")

        async def create() -> None:
            conn = await psycopg.AsyncConnection.connect(self.url("correo_schema"), autocommit=True)
            try:
                await migrate(conn)
            finally:
                await conn.close()

        asyncio.run(create())
        self._schema_ready = True


def _private_cluster() -> Iterator[PgCluster]:
    """Start a cluster of its own, or skip when PostgreSQL or psycopg is missing."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'correo[postgresql]')")
    cluster = PgCluster(bin_dir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    yield from _private_cluster()


@pytest.fixture
def own_pg_cluster() -> Iterator[PgCluster]:
    """A cluster for one test alone: one that stops and restarts it disturbs no other."""
    yield from _private_cluster()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A database of the test's own on the private cluster."""
    return pg_cluster.new_database()
