"""The account directory of one node: domains, users, aliases and password hashes in SQLite.

The CLI writes and the running server reads, many times a second. Reads are
served from an in-memory snapshot (plain dicts); each call costs one
``PRAGMA data_version`` (which changes when *another* connection commits), and
the snapshot is reloaded only when it moved, so the server sees CLI changes
without a restart and lookups cost microseconds.

Writes run in ``BEGIN IMMEDIATE`` transactions and check their preconditions
against the database itself, not the snapshot, so two writers cannot race.
DKIM keys are files in the data folder (:class:`~correo.directory.dkim_files.FileKeyStore`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from correo.directory.api import DirectoryError
from correo.directory.core import MAX_ALIAS_DEPTH, DirectoryBase, Snapshot, Tx
from correo.directory.dkim_files import FileKeyStore
from correo.directory.passwords import PasswordScheme
from correo.mailauth.keys import KeyStore

__all__ = ["MAX_ALIAS_DEPTH", "SCHEMA_VERSION", "SqliteDirectory"]

SCHEMA_VERSION = 3

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS users ("
    " address TEXT PRIMARY KEY NOT NULL,"
    " domain TEXT NOT NULL REFERENCES domains(name),"
    " password_hash TEXT NOT NULL,"
    " admin INTEGER NOT NULL DEFAULT 0,"
    " scram TEXT NOT NULL DEFAULT '') WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS aliases ("
    " alias TEXT PRIMARY KEY NOT NULL,"  # "local@domain" or "@domain" (catch-all)
    " domain TEXT NOT NULL REFERENCES domains(name),"
    " target TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS users_domain ON users(domain)",
    "CREATE INDEX IF NOT EXISTS aliases_domain ON aliases(domain)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)


#: Seconds between looks for changes made by another process (the CLI); 0 = every
#: lookup, so ``correo user add`` takes effect on the very next SMTP command.
_RECHECK = 0.0


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    def run(self, sql: str, params: tuple[object, ...] = ()) -> int:
        return self.conn.execute(sql, params).rowcount


class SqliteDirectory(DirectoryBase):
    """Accounts, domains and aliases, stored in an SQLite file (DATA/directory.db).

    Safe to share between threads (``verify_password`` is slow on purpose and
    belongs in a worker thread); the argon2 work runs outside the lock.
    """

    def __init__(
        self,
        path: Path,
        *,
        recipient_delimiter: str = "+",
        passwords: PasswordScheme | None = None,
        recheck: float = _RECHECK,
        remember_logins: float = 0.0,
        scram_iterations: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(
            recipient_delimiter=recipient_delimiter,
            passwords=passwords,
            remember_logins=remember_logins,
            scram_iterations=scram_iterations,
        )
        self._path = Path(path)
        self._recheck = recheck  # seconds between looks for other processes' writes
        self._snap: Snapshot | None = None
        self._version = -1
        self._checked = 0.0
        self._stale = True
        self._keys = FileKeyStore(self._path.parent)
        self._conn: sqlite3.Connection | None = self._open()

    def __repr__(self) -> str:
        return f"SqliteDirectory({str(self._path)!r})"

    @property
    def dkim(self) -> KeyStore:
        return self._keys

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- setup -------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        path = self._path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # password hashes inside: owner-only from the start
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise DirectoryError(f"cannot create directory database {path}: {exc}") from None
        try:
            conn = sqlite3.connect(
                path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise DirectoryError(f"cannot open directory database {path}: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # readers never block the CLI writer
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise DirectoryError(f"cannot use directory database {path}: {exc}") from None
        except DirectoryError:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise DirectoryError(
                f"directory database {self._path} has schema version {version}; "
                f"this correo understands up to {SCHEMA_VERSION} (upgrade correo)"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version == 1:  # version 2: the web admin flag
                conn.execute("ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")
            if 1 <= version <= 2:  # version 3: SCRAM verifiers (RFC 5802 §3)
                conn.execute("ALTER TABLE users ADD COLUMN scram TEXT NOT NULL DEFAULT ''")
            for statement in _SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ---- plumbing ----------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DirectoryError("the directory is closed")
        return self._conn

    def _snapshot(self) -> Snapshot:
        look = self._look
        if getattr(look, "pinned", False):  # inside one_look(): one look for all
            snap = getattr(look, "snap", None)
            if snap is None or self._stale:
                snap = look.snap = self._current()
            return snap
        return self._current()

    def _current(self) -> Snapshot:
        snap = self._snap
        now = time.monotonic()
        if snap is not None and not self._stale and now - self._checked < self._recheck:
            return snap  # hot path: every RCPT and every login looks addresses up
        with self._lock:
            conn = self._connection()
            self._checked = now
            try:
                (version,) = conn.execute("PRAGMA data_version").fetchone()
                if self._snap is None or self._stale or version != self._version:
                    self._snap = self._load(conn)
                    self._version = version
                    self._stale = False
                    self._generation += 1
            except sqlite3.Error as exc:
                if self._snap is not None:
                    return self._snap  # keep serving the last good view
                raise DirectoryError(f"cannot read directory database: {exc}") from None
            return self._snap

    @staticmethod
    def _load(conn: sqlite3.Connection) -> Snapshot:
        conn.execute("BEGIN")  # one read transaction: the three tables agree
        try:
            domains = frozenset(r[0] for r in conn.execute("SELECT name FROM domains"))
            users = dict(conn.execute("SELECT address, password_hash FROM users").fetchall())
            aliases = dict(conn.execute("SELECT alias, target FROM aliases").fetchall())
            admins = frozenset(r[0] for r in conn.execute("SELECT address FROM users WHERE admin"))
            scram = dict(conn.execute("SELECT address, scram FROM users WHERE scram <> ''"))
        finally:
            conn.execute("COMMIT")
        return Snapshot(domains, users, aliases, admins=admins, scram=scram)

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise DirectoryError(f"directory database is busy or read-only: {exc}") from None
            try:
                yield _SqliteTx(conn)
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise DirectoryError(f"directory database write failed: {exc}") from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise DirectoryError(f"directory database write failed: {exc}") from None
            finally:
                self._stale = True  # our own commits do not move data_version
