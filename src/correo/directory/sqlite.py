"""The account directory: domains, users, aliases and password hashes in SQLite.

The CLI writes and the running server reads, many times a second. Reads are
served from an in-memory snapshot (plain dicts); each call costs one
``PRAGMA data_version`` (which changes when *another* connection commits), and
the snapshot is reloaded only when it moved, so the server sees CLI changes
without a restart and lookups cost microseconds.

Writes run in ``BEGIN IMMEDIATE`` transactions and check their preconditions
against the database itself, not the snapshot, so two writers cannot race.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from correo.directory.addresses import AddressError, AddressNormalizer, ParsedAddress
from correo.directory.passwords import PasswordError, PasswordScheme, check_password

__all__ = ["MAX_ALIAS_DEPTH", "SCHEMA_VERSION", "Directory", "DirectoryError", "Resolution"]

SCHEMA_VERSION = 1
MAX_ALIAS_DEPTH = 10  # alias hops followed before giving up (like a loop)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS users ("
    " address TEXT PRIMARY KEY NOT NULL,"
    " domain TEXT NOT NULL REFERENCES domains(name),"
    " password_hash TEXT NOT NULL) WITHOUT ROWID",
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


class DirectoryError(Exception):
    """A directory operation failed; the message is meant for the administrator."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail for an address goes.

    ``account``: the local account that receives it (``detail`` is the
    subaddress tag, for delivery into a folder), or None; ``forward``: remote
    addresses to relay it to.
    """

    account: str | None
    forward: tuple[str, ...]
    detail: str | None


class _Snapshot:
    """One consistent read of the three tables, plus a lazily built owner index."""

    __slots__ = ("aliases", "domains", "owned", "users")

    def __init__(
        self, domains: frozenset[str], users: Mapping[str, str], aliases: Mapping[str, str]
    ) -> None:
        self.domains = domains
        self.users = users  # address -> password hash
        self.aliases = aliases  # alias ("x@d" or "@d") -> target
        self.owned: dict[str, frozenset[str]] | None = None


def _resolve(snap: _Snapshot, norm: AddressNormalizer, address: str) -> Resolution | None:
    """Follow aliases from ``address`` to a local account or a remote target."""
    try:
        parsed: ParsedAddress = norm.parse(address)
    except AddressError:
        return None
    if parsed.domain not in snap.domains:
        return None
    detail = parsed.detail
    seen: set[str] = set()
    for _ in range(MAX_ALIAS_DEPTH + 1):
        full, base = parsed.address, parsed.base_address
        if full in snap.users:
            return Resolution(full, (), None if full != base else detail)
        if base in snap.users:
            return Resolution(base, (), detail)
        if full in snap.aliases:
            key, detail = full, (None if full != base else detail)
        elif base in snap.aliases:
            key = base
        else:
            key, detail = "@" + parsed.domain, None  # catch-all
            if key not in snap.aliases:
                return None
        if key in seen:
            return None  # alias cycle
        seen.add(key)
        target = snap.aliases[key]
        try:
            parsed = norm.parse(target)
        except AddressError:
            return None
        if parsed.domain not in snap.domains:
            return Resolution(None, (target,), None)
        if parsed.detail is not None:
            detail = parsed.detail  # the alias names its own tag: it wins
    return None  # deeper than MAX_ALIAS_DEPTH


class _RememberedLogins:
    """Recently verified (account, password) pairs, so reconnecting clients skip argon2.

    A phone or desktop client opens several connections and reopens them all day; each
    argon2id verification costs tens of milliseconds and ~19 MiB. Only successes are
    kept, for ``ttl`` seconds, as keyed hashes (a per-process random key, never the
    password); the stored hash is part of the key, so a password change ends them.
    """

    _MAX = 50_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._key = secrets.token_bytes(32)
        self._until: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, name: str, password: str, encoded: str) -> bytes:
        material = "\0".join((name, password, encoded)).encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, material, "sha256")

    def knows(self, name: str, password: str, encoded: str) -> bool:
        if self.ttl <= 0:
            return False
        digest = self._digest(name, password, encoded)
        with self._lock:
            until = self._until.get(digest)
            if until is None:
                return False
            if until < time.monotonic():
                del self._until[digest]
                return False
            return True

    def remember(self, name: str, password: str, encoded: str) -> None:
        if self.ttl <= 0:
            return
        digest = self._digest(name, password, encoded)
        with self._lock:
            self._until[digest] = time.monotonic() + self.ttl
            self._until.move_to_end(digest)
            while len(self._until) > self._MAX:
                self._until.popitem(last=False)


class Directory:
    """Accounts, domains and aliases, stored in an SQLite file.

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
    ) -> None:
        self._path = Path(path)
        self._logins = _RememberedLogins(remember_logins)
        self._recheck = recheck  # seconds between looks for other processes' writes
        self._norm = AddressNormalizer(recipient_delimiter)
        self._passwords = passwords if passwords is not None else PasswordScheme()
        self._lock = threading.RLock()
        self._snap: _Snapshot | None = None
        self._version = -1
        self._checked = 0.0
        self._stale = True
        #: Bumped at each reload of the snapshot. Facts cached per account name elsewhere
        #: (an active Sieve script) are stale after it: the name may now be a new account.
        self.generation = 0
        self._conn: sqlite3.Connection | None = self._open()

    def __repr__(self) -> str:
        return f"Directory({str(self._path)!r})"

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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

    def _snapshot(self) -> _Snapshot:
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
                    self.generation += 1
            except sqlite3.Error as exc:
                if self._snap is not None:
                    return self._snap  # keep serving the last good view
                raise DirectoryError(f"cannot read directory database: {exc}") from None
            return self._snap

    @staticmethod
    def _load(conn: sqlite3.Connection) -> _Snapshot:
        conn.execute("BEGIN")  # one read transaction: the three tables agree
        try:
            domains = frozenset(r[0] for r in conn.execute("SELECT name FROM domains"))
            users = dict(conn.execute("SELECT address, password_hash FROM users").fetchall())
            aliases = dict(conn.execute("SELECT alias, target FROM aliases").fetchall())
        finally:
            conn.execute("COMMIT")
        return _Snapshot(domains, users, aliases)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise DirectoryError(f"directory database is busy or read-only: {exc}") from None
            try:
                yield conn
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

    def _domain(self, domain: str) -> str:
        try:
            return self._norm.domain(domain)
        except AddressError as exc:
            raise DirectoryError(str(exc)) from None

    def _new_address(self, address: str, what: str) -> ParsedAddress:
        try:
            parsed = self._norm.parse(address, strict=True)
        except AddressError as exc:
            raise DirectoryError(f"invalid {what} address: {exc}") from None
        if parsed.detail is not None or parsed.local != parsed.base:
            raise DirectoryError(
                f"{what} address {address!r} contains the recipient delimiter "
                f"{self._norm.recipient_delimiter!r} (reserved for +tags)"
            )
        return parsed

    def _existing(self, address: str) -> str:
        try:
            return self._norm.canonical(address)
        except AddressError as exc:
            raise DirectoryError(f"invalid address: {exc}") from None

    @staticmethod
    def _require_local_domain(conn: sqlite3.Connection, domain: str, address: str) -> None:
        if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is None:
            raise DirectoryError(
                f"{address}: domain {domain} is not a local domain (add the domain first)"
            )

    @staticmethod
    def _check_password(password: str) -> None:
        try:
            check_password(password)
        except PasswordError as exc:
            raise DirectoryError(str(exc)) from None

    # ---- domains -----------------------------------------------------------

    def add_domain(self, domain: str) -> None:
        name = self._domain(domain)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                raise DirectoryError(f"domain {name} already exists")
            conn.execute("INSERT INTO domains (name) VALUES (?)", (name,))

    def del_domain(self, domain: str) -> None:
        name = self._domain(domain)
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                raise DirectoryError(f"domain {name} does not exist")
            (users,) = conn.execute(
                "SELECT count(*) FROM users WHERE domain = ?", (name,)
            ).fetchone()
            (aliases,) = conn.execute(
                "SELECT count(*) FROM aliases WHERE domain = ?", (name,)
            ).fetchone()
            if users or aliases:
                raise DirectoryError(
                    f"domain {name} still has {users} user(s) and {aliases} alias(es); "
                    "delete them first"
                )
            conn.execute("DELETE FROM domains WHERE name = ?", (name,))

    def domains(self) -> list[str]:
        return sorted(self._snapshot().domains)

    def is_local_domain(self, domain: str) -> bool:
        try:
            name = self._norm.domain(domain)
        except AddressError:
            return False
        return name in self._snapshot().domains

    # ---- users -------------------------------------------------------------

    def add_user(self, address: str, password: str) -> None:
        parsed = self._new_address(address, "user")
        self._check_password(password)
        encoded = self._passwords.hash(password)  # slow: before taking the write lock
        name = parsed.address
        with self._write() as conn:
            self._require_local_domain(conn, parsed.domain, name)
            if conn.execute("SELECT 1 FROM users WHERE address = ?", (name,)).fetchone():
                raise DirectoryError(f"user {name} already exists")
            if conn.execute("SELECT 1 FROM aliases WHERE alias = ?", (name,)).fetchone():
                raise DirectoryError(f"{name} is already an alias; delete the alias first")
            conn.execute(
                "INSERT INTO users (address, domain, password_hash) VALUES (?, ?, ?)",
                (name, parsed.domain, encoded),
            )

    def set_password(self, address: str, password: str) -> None:
        name = self._existing(address)
        self._check_password(password)
        encoded = self._passwords.hash(password)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE users SET password_hash = ? WHERE address = ?", (encoded, name)
            )
            if cur.rowcount == 0:
                raise DirectoryError(f"user {name} does not exist")

    def del_user(self, address: str) -> None:
        name = self._existing(address)
        with self._write() as conn:
            if conn.execute("DELETE FROM users WHERE address = ?", (name,)).rowcount == 0:
                raise DirectoryError(f"user {name} does not exist")

    def users(self) -> list[str]:
        return sorted(self._snapshot().users)

    def account_name(self, address: str) -> str:
        """The name ``address`` has as an account (in the store too), user or not yet."""
        return self._existing(address)

    def user_exists(self, address: str) -> bool:
        try:
            name = self._norm.canonical(address)
        except AddressError:
            return False
        return name in self._snapshot().users

    def verify_password(self, address: str, password: str) -> str | None:
        """Return the canonical account address if the password is right, else None.

        Blocks for one argon2 verify (tens of milliseconds) whether or not the
        user exists, so timing does not reveal which accounts exist.
        """
        snap = self._snapshot()
        try:
            name: str | None = self._norm.canonical(address)
        except AddressError:
            name = None
        encoded = snap.users.get(name) if name is not None else None
        if name is None or encoded is None:
            self._passwords.dummy_verify(password)
            return None
        if self._logins.knows(name, password, encoded):
            return name
        if not self._passwords.verify(encoded, password):
            return None
        if self._passwords.needs_rehash(encoded):
            self._rehash(name, encoded, password)
        self._logins.remember(name, password, encoded)
        return name

    def _rehash(self, name: str, old: str, password: str) -> None:
        """Upgrade a hash to current parameters; best effort, login succeeds anyway."""
        new = self._passwords.hash(password)
        with contextlib.suppress(DirectoryError), self._write() as conn:
            # Only if unchanged: a concurrent set_password must win.
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE address = ? AND password_hash = ?",
                (new, name, old),
            )

    # ---- aliases -----------------------------------------------------------

    def add_alias(self, alias: str, target: str) -> None:
        """Map ``alias`` (or "@domain", a catch-all) to one target address."""
        if alias.startswith("@"):
            domain = self._domain(alias[1:])
            key = "@" + domain
        else:
            parsed = self._new_address(alias, "alias")
            domain, key = parsed.domain, parsed.address
        try:
            dest = self._norm.parse(target)
        except AddressError as exc:
            raise DirectoryError(f"invalid alias target: {exc}") from None
        with self._write() as conn:
            self._require_local_domain(conn, domain, key)
            local_target = conn.execute(
                "SELECT 1 FROM domains WHERE name = ?", (dest.domain,)
            ).fetchone()
            # Remote local parts may be case-sensitive (RFC 5321 §2.4): keep them as given.
            stored = (
                dest.address if local_target else f"{target[: target.rfind('@')]}@{dest.domain}"
            )
            if stored == key:
                raise DirectoryError(f"alias {key} cannot point to itself")
            if conn.execute("SELECT 1 FROM aliases WHERE alias = ?", (key,)).fetchone():
                raise DirectoryError(f"alias {key} already exists; delete it first")
            if conn.execute("SELECT 1 FROM users WHERE address = ?", (key,)).fetchone():
                raise DirectoryError(f"{key} is a user; an alias cannot shadow it")
            conn.execute(
                "INSERT INTO aliases (alias, domain, target) VALUES (?, ?, ?)",
                (key, domain, stored),
            )

    def del_alias(self, alias: str) -> None:
        key = "@" + self._domain(alias[1:]) if alias.startswith("@") else self._existing(alias)
        with self._write() as conn:
            if conn.execute("DELETE FROM aliases WHERE alias = ?", (key,)).rowcount == 0:
                raise DirectoryError(f"alias {key} does not exist")

    def aliases(self) -> list[tuple[str, str]]:
        return sorted(self._snapshot().aliases.items())

    # ---- lookups -----------------------------------------------------------

    def resolve(self, address: str) -> Resolution | None:
        """Where mail for ``address`` goes, or None if nobody here takes it."""
        return _resolve(self._snapshot(), self._norm, address)

    def owned_addresses(self, account: str) -> frozenset[str]:
        """The account's address plus every alias resolving to it ("@d" = catch-all)."""
        snap = self._snapshot()
        try:
            name = self._norm.canonical(account)
        except AddressError:
            return frozenset()
        if name not in snap.users:
            return frozenset()
        with self._lock:
            if snap.owned is None:
                owners: dict[str, set[str]] = {}
                for key, target in snap.aliases.items():
                    # A catch-all owns what its target resolves to; others resolve as themselves.
                    res = _resolve(snap, self._norm, target if key[0] == "@" else key)
                    if res is not None and res.account is not None:
                        owners.setdefault(res.account, set()).add(key)
                snap.owned = {acct: frozenset(keys) for acct, keys in owners.items()}
            return snap.owned.get(name, frozenset()) | {name}

    def may_send_as(self, account: str, address: str) -> bool:
        """True if mail to ``address`` (any case, +tag allowed) reaches ``account``."""
        try:
            name = self._norm.canonical(account)
        except AddressError:
            return False
        res = self.resolve(address)
        return res is not None and res.account == name
