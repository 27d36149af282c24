"""The directory in PostgreSQL: every node of a cluster shares accounts, aliases and keys.

The tables (``domains``, ``users``, ``aliases``, ``dkim_keys``) live in the database
``[store] url`` names, created by the store's migrations (``store/postgres_schema.py``).

Reads come from an in-memory snapshot, as with the embedded directory, so a lookup on
the event loop never waits on the network.  Keeping it current across nodes:

* every write bumps ``meta.directory_serial`` in its transaction (the row lock also makes
  directory writes of the whole cluster take turns, so preconditions are checked
  without races) and sends ``NOTIFY correo_directory``, delivered at commit;
* a serving node (``watch``) runs a listener thread on a connection of its own: on a
  notification, and at least every ``recheck`` seconds in case one was lost, it reads
  the serial and reloads the snapshot in that thread when it moved, then swaps it in;
  lookups on the loop see the change within milliseconds;
* ``verify_password`` (in a worker thread already) reads the serial first, so a user
  added, a password changed or a user removed through another node counts for the very
  next login;
* the node's own writes reload the snapshot before they return.

The failed-login counters of ``server/throttle.py`` are shared through
``login_failures`` (:mod:`correo.directory.postgres_counters`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from correo.directory.api import DirectoryError, LoginCounters
from correo.directory.core import DirectoryBase, Snapshot, Tx
from correo.directory.passwords import PasswordScheme
from correo.directory.postgres_counters import PgLoginCounters
from correo.mailauth.keys import KeyStore, StoredKey

__all__ = ["CHANNEL", "PostgresDirectory"]

CHANNEL: Final = "correo_directory"
_SERIAL: Final = "SELECT value FROM meta WHERE key = 'directory_serial'"
#: Seconds a login waits for a connection to ask for the serial; past it (the database
#: is away) the snapshot in memory answers.
_LOGIN_WAIT: Final = 1.0

Conn = psycopg.Connection[Any]


class _PgTx:
    """A write transaction; the shared SQL's ``?`` placeholders become ``%s``."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(
            sql.replace("?", "%s").encode(), params
        ).fetchone()
        return row

    def run(self, sql: str, params: tuple[object, ...] = ()) -> int:
        return self.conn.execute(sql.replace("?", "%s").encode(), params).rowcount


def _run_migrations(url: str) -> None:
    """The store's migrations, which create the directory's tables on a new database.

    They are written for an async connection; here they run on a loop of their own in a
    helper thread, so this works whether or not the caller is inside a running loop.
    """
    from correo.store.postgres_schema import migrate

    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="correo-migrate") as pool:
        pool.submit(asyncio.run, run()).result()


class PostgresDirectory(DirectoryBase):
    """:class:`correo.directory.api.Directory` on PostgreSQL (``url``: a libpq URI).

    ``watch``: keep the snapshot current with a listener thread (the server); without
    it (the CLI) the snapshot is read when first needed and after each write.
    ``recheck``: seconds between looks at the serial when no notification came.
    """

    def __init__(
        self,
        url: str,
        *,
        recipient_delimiter: str = "+",
        passwords: PasswordScheme | None = None,
        remember_logins: float = 0.0,
        scram_iterations: Mapping[str, int] | None = None,
        watch: bool = False,
        recheck: float = 2.0,
        pool_size: int = 8,
    ) -> None:
        super().__init__(
            recipient_delimiter=recipient_delimiter,
            passwords=passwords,
            remember_logins=remember_logins,
            scram_iterations=scram_iterations,
        )
        self.url = url
        self.node = secrets.token_hex(6)
        self._watch = watch
        self._recheck = recheck
        self._snap: Snapshot | None = None
        self._reload_lock = threading.Lock()
        self._closed = False
        self._listener: threading.Thread | None = None
        self.listening = threading.Event()  # set while the listener is subscribed
        try:
            # A wrong address or password fails here at once, with libpq's own message.
            _run_migrations(url)
        except (psycopg.Error, OSError, RuntimeError) as exc:
            raise DirectoryError(f"cannot open the directory database: {exc}") from None
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size),
            kwargs={"autocommit": True, "application_name": "correo-directory"},
            open=False,
            timeout=10.0,
            name="correo-directory",
        )
        try:
            self._pool.open(wait=True, timeout=10.0)
        except PoolTimeout as exc:
            raise DirectoryError(f"cannot open the directory database: {exc}") from None
        self._counters = PgLoginCounters(self._pool)
        self._keys = _PgKeyStore(self)
        if watch:
            try:
                self._reload()
            except DirectoryError:
                self._pool.close()
                raise
            self._listener = threading.Thread(
                target=self._listen, name="correo-directory-listen", daemon=True
            )
            self._listener.start()

    def __repr__(self) -> str:
        return "PostgresDirectory(…)"  # the URL may carry a password

    @property
    def dkim(self) -> KeyStore:
        return self._keys

    def login_counters(self) -> LoginCounters:
        return self._counters

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._listener is not None:
            # Wake the listener at once (it also wakes on its own every ``recheck``).
            with (
                contextlib.suppress(psycopg.Error, PoolTimeout),
                self._pool.connection(timeout=2.0) as conn,
            ):
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self.node}:stop"))
            self._listener.join(self._recheck + 5.0)
        self._pool.close()

    # ---- the snapshot -------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        snap = self._snap
        if snap is not None:
            return snap  # hot path: kept current by the listener or by our own writes
        if self._closed:
            raise DirectoryError("the directory is closed")
        return self._reload()

    def _login_snapshot(self) -> Snapshot:
        snap = self._snapshot()
        try:
            with self._pool.connection(timeout=_LOGIN_WAIT) as conn:
                row = conn.execute(_SERIAL).fetchone()
        except (psycopg.Error, PoolTimeout):
            return snap  # the database is away: the last good view answers
        if row is not None and int(row[0]) != snap.serial:
            with contextlib.suppress(DirectoryError):
                return self._reload()
        return snap

    def _reload(self, conn: Conn | None = None) -> Snapshot:
        """Read the tables in one snapshot transaction and swap the view in."""
        if self._closed:
            raise DirectoryError("the directory is closed")
        with self._reload_lock:
            try:
                if conn is None:
                    with self._pool.connection() as pooled:
                        snap = self._read(pooled)
                else:
                    snap = self._read(conn)
            except (psycopg.Error, PoolTimeout) as exc:
                raise DirectoryError(f"cannot read the directory: {exc}") from None
            current = self._snap
            if current is not None and snap.serial == current.serial:
                return current  # unchanged: keep the owner index already built
            self._snap = snap
            self._generation += 1
            return snap

    @staticmethod
    def _read(conn: Conn) -> Snapshot:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute(_SERIAL).fetchone()
            serial = int(row[0]) if row else 0
            domains = frozenset(r[0] for r in conn.execute("SELECT name FROM domains"))
            users = dict(conn.execute("SELECT address, password_hash FROM users").fetchall())
            aliases = dict(conn.execute("SELECT alias, target FROM aliases").fetchall())
            admins = frozenset(r[0] for r in conn.execute("SELECT address FROM users WHERE admin"))
            scram = dict(conn.execute("SELECT address, scram FROM users WHERE scram <> ''"))
            dkim: dict[str, list[StoredKey]] = {}
            for domain, selector, pem, created, retired in conn.execute(
                "SELECT domain, selector, pem, created, retired FROM dkim_keys"
            ):
                dkim.setdefault(domain, []).append(
                    StoredKey(selector, bytes(pem), float(created), bool(retired))
                )
        keys = {d: tuple(k) for d, k in dkim.items()}
        return Snapshot(domains, users, aliases, serial, keys, admins, scram)

    def _listen(self) -> None:
        """Reload when another node writes (LISTEN), or when a look at the serial says so."""
        delay = 0.2
        while not self._closed:
            try:
                conn = psycopg.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=10,
                    application_name="correo-directory-listen",
                )
            except (psycopg.Error, OSError):
                threading.Event().wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                delay = 0.2
                self.listening.set()
                while not self._closed:
                    self._catch_up(conn)  # also what was missed while not listening
                    for _note in conn.notifies(timeout=self._recheck, stop_after=1):
                        pass
            except (psycopg.Error, OSError, DirectoryError):
                self.listening.clear()
                threading.Event().wait(delay)
            finally:
                self.listening.clear()
                conn.close()

    def _catch_up(self, conn: Conn) -> None:
        if self._closed:
            return
        row = conn.execute(_SERIAL).fetchone()
        snap = self._snap
        if row is not None and (snap is None or int(row[0]) != snap.serial):
            self._reload(conn)

    # ---- writes -------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        if self._closed:
            raise DirectoryError("the directory is closed")
        try:
            with self._pool.connection() as conn:
                try:
                    with conn.transaction():
                        # Directory writes of every node take turns on this row's lock.
                        row = conn.execute(
                            "UPDATE meta SET value = value + 1"
                            " WHERE key = 'directory_serial' RETURNING value"
                        ).fetchone()
                        yield _PgTx(conn)
                        conn.execute(
                            "SELECT pg_notify(%s, %s)",
                            (CHANNEL, f"{self.node}:{row[0] if row else 0}"),
                        )
                except psycopg.Error as exc:
                    raise DirectoryError(f"directory database write failed: {exc}") from None
        except PoolTimeout as exc:
            raise DirectoryError(f"directory database is unreachable: {exc}") from None
        if self._watch:
            with contextlib.suppress(DirectoryError):
                self._reload()  # our lookups see our own write at once
        else:
            self._snap = None  # read again when next needed

    # ---- DKIM keys ----------------------------------------------------------------

    def _dkim_rows(self, domain: str) -> list[StoredKey]:
        return list(self._snapshot().dkim.get(domain, ()))

    def _rotate_keys(self, domain: str, new: Sequence[StoredKey], retire: Sequence[str]) -> None:
        with self._write() as tx:
            for key in new:
                if tx.one(
                    "SELECT 1 FROM dkim_keys WHERE domain = ? AND selector = ?",
                    (domain, key.selector),
                ):
                    raise DirectoryError(f"DKIM selector {key.selector} of {domain} already exists")
                tx.run(
                    "INSERT INTO dkim_keys (domain, selector, pem, created, retired)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (domain, key.selector, key.pem, key.created, key.retired),
                )
            if retire:
                tx.run(
                    "UPDATE dkim_keys SET retired = true WHERE domain = ? AND selector = ANY(?)",
                    (domain, sorted(set(retire))),
                )


class _PgKeyStore:
    """DKIM keys in ``dkim_keys``: one set for the whole cluster."""

    def __init__(self, directory: PostgresDirectory) -> None:
        self._directory = directory

    def stored_keys(self, domain: str) -> list[StoredKey]:
        return self._directory._dkim_rows(domain)

    def rotate(self, domain: str, new: Sequence[StoredKey], retire: Sequence[str]) -> None:
        self._directory._rotate_keys(domain, new, retire)

    def version(self) -> object:
        """Which keys there are: other directory writes (a new user) leave it alone."""
        keys = self._directory._snapshot().dkim
        return tuple(
            sorted((d, k.selector, k.retired) for d, stored in keys.items() for k in stored)
        )
