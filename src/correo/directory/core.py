"""What both directory implementations share: the snapshot, resolution, the write rules.

A backend supplies two things: :meth:`DirectoryBase._snapshot` (a consistent, current
enough in-memory view of the tables) and :meth:`DirectoryBase._write` (a transaction that
no other writer, on any node, interleaves with).  Everything else — address rules,
preconditions, error messages, alias resolution, remembered logins — is written once
here, so the two backends cannot drift apart.  SQL is written with ``?`` placeholders;
a backend that speaks another style translates them.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, Self

from correo.directory.addresses import AddressError, AddressNormalizer, ParsedAddress
from correo.directory.api import DirectoryError, LoginCounters, Resolution
from correo.directory.passwords import PasswordError, PasswordScheme, check_password
from correo.mailauth.keys import KeyStore, StoredKey
from correo.sasl.saslprep import SaslprepError
from correo.sasl.scram import HASHES, ScramVerifier, make_verifier, parse_verifiers

__all__ = ["DEFAULT_SCRAM_ITERATIONS", "MAX_ALIAS_DEPTH", "DirectoryBase", "Snapshot", "Tx"]

MAX_ALIAS_DEPTH = 10  # alias hops followed before giving up (like a loop)
#: PBKDF2 rounds of the SCRAM verifiers made when a password is set ([auth]
#: scram_sha1_iterations, scram_sha256_iterations): RFC 5802 §5.1 and RFC 7677 §4 ask
#: for at least 4096; SHA-256 gets twice that, still a few milliseconds per login.
DEFAULT_SCRAM_ITERATIONS: Mapping[str, int] = {"SCRAM-SHA-1": 4096, "SCRAM-SHA-256": 8192}


class Tx(Protocol):
    """One write transaction of a backend."""

    def one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        ...

    def run(self, sql: str, params: tuple[object, ...] = ()) -> int:
        """Execute a statement; the number of rows it changed."""
        ...


class Snapshot:
    """One consistent read of the three tables, plus a lazily built owner index."""

    __slots__ = ("admins", "aliases", "dkim", "domains", "owned", "scram", "serial", "users")

    def __init__(
        self,
        domains: frozenset[str],
        users: Mapping[str, str],
        aliases: Mapping[str, str],
        serial: int = 0,
        dkim: Mapping[str, tuple[StoredKey, ...]] | None = None,
        admins: frozenset[str] = frozenset(),
        scram: Mapping[str, str] | None = None,
    ) -> None:
        self.domains = domains
        self.users = users  # address -> password hash
        self.aliases = aliases  # alias ("x@d" or "@d") -> target
        self.serial = serial  # the backend's change counter when read
        self.dkim = dkim or {}  # domain -> keys, where the backend keeps them with the rest
        self.owned: dict[str, frozenset[str]] | None = None
        self.admins = admins  # users who may use the web admin page
        self.scram = scram or {}  # address -> SCRAM verifiers (RFC 5803 style), "" = none


def resolve(snap: Snapshot, norm: AddressNormalizer, address: str) -> Resolution | None:
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


class RememberedLogins:
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


class DirectoryBase:
    """The directory's rules over a backend's snapshot and write transactions."""

    def __init__(
        self,
        *,
        recipient_delimiter: str = "+",
        passwords: PasswordScheme | None = None,
        remember_logins: float = 0.0,
        scram_iterations: Mapping[str, int] | None = None,
    ) -> None:
        self._scram_iterations = dict(scram_iterations or DEFAULT_SCRAM_ITERATIONS)
        self._logins = RememberedLogins(remember_logins)
        self._norm = AddressNormalizer(recipient_delimiter)
        self._passwords = passwords if passwords is not None else PasswordScheme()
        self._lock = threading.RLock()
        self._generation = 0
        self._look = threading.local()  # one_look(): per thread, the view pinned for it

    # ---- what a backend provides --------------------------------------------------

    def _snapshot(self) -> Snapshot:
        """The current view, for lookups on the event loop: must not wait on I/O."""
        raise NotImplementedError

    def _login_snapshot(self) -> Snapshot:
        """The view a password is checked against (in a worker thread): as current as
        the backend can make it, changes of other nodes included."""
        return self._snapshot()

    def _write(self) -> contextlib.AbstractContextManager[Tx]:
        """A write transaction that no other writer interleaves with."""
        raise NotImplementedError

    @property
    def dkim(self) -> KeyStore:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def one_look(self) -> Iterator[None]:
        """The lookups inside share one look for other processes' writes.

        One SMTP command asks several questions (is the domain local, what does the
        address resolve to): they see one view, as if asked at one instant, instead of
        each reading the database's change counter. The next command looks again, so a
        deleted user is still refused from the next command on.
        """
        look = self._look
        if getattr(look, "pinned", False):
            yield  # already inside one: the outer look holds
            return
        look.pinned = True
        try:
            yield
        finally:
            look.pinned = False
            look.snap = None

    # ---- shared plumbing ----------------------------------------------------------

    @property
    def generation(self) -> int:
        return self._generation

    def login_counters(self) -> LoginCounters | None:
        return None  # one process: the throttle keeps its counters in memory

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
    def _require_local_domain(tx: Tx, domain: str, address: str) -> None:
        if tx.one("SELECT 1 FROM domains WHERE name = ?", (domain,)) is None:
            raise DirectoryError(
                f"{address}: domain {domain} is not a local domain (add the domain first)"
            )

    @staticmethod
    def _check_password(password: str) -> None:
        try:
            check_password(password)
        except PasswordError as exc:
            raise DirectoryError(str(exc)) from None

    # ---- domains ------------------------------------------------------------------

    def add_domain(self, domain: str) -> None:
        name = self._domain(domain)
        with self._write() as tx:
            if tx.one("SELECT 1 FROM domains WHERE name = ?", (name,)):
                raise DirectoryError(f"domain {name} already exists")
            tx.run("INSERT INTO domains (name) VALUES (?)", (name,))

    def del_domain(self, domain: str) -> None:
        name = self._domain(domain)
        with self._write() as tx:
            if not tx.one("SELECT 1 FROM domains WHERE name = ?", (name,)):
                raise DirectoryError(f"domain {name} does not exist")
            users = tx.one("SELECT count(*) FROM users WHERE domain = ?", (name,))
            aliases = tx.one("SELECT count(*) FROM aliases WHERE domain = ?", (name,))
            n_users = int(users[0]) if users else 0
            n_aliases = int(aliases[0]) if aliases else 0
            if n_users or n_aliases:
                raise DirectoryError(
                    f"domain {name} still has {n_users} user(s) and {n_aliases} alias(es); "
                    "delete them first"
                )
            tx.run("DELETE FROM domains WHERE name = ?", (name,))

    def domains(self) -> list[str]:
        return sorted(self._snapshot().domains)

    def is_local_domain(self, domain: str) -> bool:
        try:
            name = self._norm.domain(domain)
        except AddressError:
            return False
        return name in self._snapshot().domains

    # ---- users --------------------------------------------------------------------

    def add_user(self, address: str, password: str) -> None:
        parsed = self._new_address(address, "user")
        self._check_password(password)
        encoded = self._passwords.hash(password)  # slow: before taking the write lock
        scram = self._scram_for(password)
        name = parsed.address
        with self._write() as tx:
            self._require_local_domain(tx, parsed.domain, name)
            if tx.one("SELECT 1 FROM users WHERE address = ?", (name,)):
                raise DirectoryError(f"user {name} already exists")
            if tx.one("SELECT 1 FROM aliases WHERE alias = ?", (name,)):
                raise DirectoryError(f"{name} is already an alias; delete the alias first")
            tx.run(
                "INSERT INTO users (address, domain, password_hash, scram) VALUES (?, ?, ?, ?)",
                (name, parsed.domain, encoded, scram),
            )

    def set_password(self, address: str, password: str) -> None:
        name = self._existing(address)
        self._check_password(password)
        encoded = self._passwords.hash(password)
        scram = self._scram_for(password)
        with self._write() as tx:
            changed = tx.run(
                "UPDATE users SET password_hash = ?, scram = ? WHERE address = ?",
                (encoded, scram, name),
            )
            if changed == 0:
                raise DirectoryError(f"user {name} does not exist")

    def del_user(self, address: str) -> None:
        name = self._existing(address)
        with self._write() as tx:
            if tx.run("DELETE FROM users WHERE address = ?", (name,)) == 0:
                raise DirectoryError(f"user {name} does not exist")

    def users(self) -> list[str]:
        return sorted(self._snapshot().users)

    def is_admin(self, address: str) -> bool:
        try:
            name = self._norm.canonical(address)
        except AddressError:
            return False
        return name in self._snapshot().admins

    def set_admin(self, address: str, on: bool) -> None:
        name = self._existing(address)
        with self._write() as tx:
            if tx.run("UPDATE users SET admin = ? WHERE address = ?", (on, name)) == 0:
                raise DirectoryError(f"user {name} does not exist")

    def account_name(self, address: str) -> str:
        return self._existing(address)

    def user_exists(self, address: str) -> bool:
        try:
            name = self._norm.canonical(address)
        except AddressError:
            return False
        return name in self._snapshot().users

    def verify_password(self, address: str, password: str) -> str | None:
        snap = self._login_snapshot()
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
        elif self._scram_outdated(snap.scram.get(name, "")):
            self._add_scram(name, encoded, password)
        self._logins.remember(name, password, encoded)
        return name

    def _rehash(self, name: str, old: str, password: str) -> None:
        """Upgrade a hash to current parameters; best effort, login succeeds anyway."""
        new = self._passwords.hash(password)
        scram = self._scram_for(password)
        with contextlib.suppress(DirectoryError), self._write() as tx:
            # Only if unchanged: a concurrent set_password must win.
            tx.run(
                "UPDATE users SET password_hash = ?, scram = ?"
                " WHERE address = ? AND password_hash = ?",
                (new, scram, name, old),
            )

    # ---- SCRAM verifiers (RFC 5802 §3) -----------------------------------------------

    def _scram_for(self, password: str) -> str:
        """The verifiers of ``password`` for every SCRAM family; "" when the password has
        no SASLprep form (RFC 5802 §2.2: the account then logs in with PLAIN only)."""
        try:
            return " ".join(
                make_verifier(family, password, iterations).encode()
                for family, iterations in sorted(self._scram_iterations.items())
            )
        except SaslprepError:
            return ""

    def _scram_outdated(self, stored: str) -> bool:
        have = parse_verifiers(stored)
        return any(
            family not in have or have[family].iterations != iterations
            for family, iterations in self._scram_iterations.items()
        )

    def _add_scram(self, name: str, encoded: str, password: str) -> None:
        """Give an account made before SCRAM (or with other iteration counts) its
        verifiers at a successful password login; best effort, as for a rehash."""
        scram = self._scram_for(password)
        if not scram:
            return
        with contextlib.suppress(DirectoryError), self._write() as tx:
            tx.run(
                "UPDATE users SET scram = ? WHERE address = ? AND password_hash = ?",
                (scram, name, encoded),
            )

    def scram_verifier(self, address: str, family: str) -> ScramVerifier | None:
        """The account's ``family`` verifier from the snapshot (no I/O: the event loop
        asks), or None: no such user, or no verifier yet."""
        if family not in HASHES:
            return None
        try:
            name = self._norm.canonical(address)
        except AddressError:
            return None
        snap = self._snapshot()
        if name not in snap.users:
            return None
        return parse_verifiers(snap.scram.get(name, "")).get(family)

    # ---- aliases ------------------------------------------------------------------

    def add_alias(self, alias: str, target: str) -> None:
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
        with self._write() as tx:
            self._require_local_domain(tx, domain, key)
            local_target = tx.one("SELECT 1 FROM domains WHERE name = ?", (dest.domain,))
            # Remote local parts may be case-sensitive (RFC 5321 §2.4): keep them as given.
            stored = (
                dest.address if local_target else f"{target[: target.rfind('@')]}@{dest.domain}"
            )
            if stored == key:
                raise DirectoryError(f"alias {key} cannot point to itself")
            if tx.one("SELECT 1 FROM aliases WHERE alias = ?", (key,)):
                raise DirectoryError(f"alias {key} already exists; delete it first")
            if tx.one("SELECT 1 FROM users WHERE address = ?", (key,)):
                raise DirectoryError(f"{key} is a user; an alias cannot shadow it")
            tx.run(
                "INSERT INTO aliases (alias, domain, target) VALUES (?, ?, ?)",
                (key, domain, stored),
            )

    def del_alias(self, alias: str) -> None:
        key = "@" + self._domain(alias[1:]) if alias.startswith("@") else self._existing(alias)
        with self._write() as tx:
            if tx.run("DELETE FROM aliases WHERE alias = ?", (key,)) == 0:
                raise DirectoryError(f"alias {key} does not exist")

    def aliases(self) -> list[tuple[str, str]]:
        return sorted(self._snapshot().aliases.items())

    # ---- lookups ------------------------------------------------------------------

    def resolve(self, address: str) -> Resolution | None:
        return resolve(self._snapshot(), self._norm, address)

    def owned_addresses(self, account: str) -> frozenset[str]:
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
                    res = resolve(snap, self._norm, target if key[0] == "@" else key)
                    if res is not None and res.account is not None:
                        owners.setdefault(res.account, set()).add(key)
                snap.owned = {acct: frozenset(keys) for acct, keys in owners.items()}
            return snap.owned.get(name, frozenset()) | {name}

    def may_send_as(self, account: str, address: str) -> bool:
        try:
            name = self._norm.canonical(account)
        except AddressError:
            return False
        res = self.resolve(address)
        return res is not None and res.account == name
