"""The directory API: what the servers and the CLI ask of accounts, domains and aliases.

Two implementations: :class:`~correo.directory.sqlite.SqliteDirectory` (DATA/directory.db,
one node) and :class:`~correo.directory.postgres.PostgresDirectory` (the database named
by ``[store] url``, shared by every node); :func:`correo.directory.factory.open_directory`
picks one.  One contract suite (tests/directory/test_contract.py) runs against both.

Lookups (``resolve``, ``is_local_domain``, ``may_send_as``…) sit on hot paths — every
RCPT, every login — and are called on the event loop: both implementations answer them
from an in-memory snapshot, never waiting on I/O.  ``verify_password`` is slow on purpose
(argon2) and runs in a worker thread, where the shared implementation may also ask the
database whether the snapshot is current.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from correo.mailauth.keys import KeyStore
from correo.sasl.scram import ScramVerifier

__all__ = [
    "Directory",
    "DirectoryError",
    "LoginCounter",
    "LoginCounters",
    "Resolution",
]

T = TypeVar("T")


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


@dataclass(slots=True)
class LoginCounter:
    """Failed logins of one key (a client network or an account), see server/throttle.py.

    ``last`` and ``locked_until`` are seconds on the throttle's clock; ``pending`` counts
    attempts begun and not yet ended.
    """

    failures: int = 0
    pending: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginCounters(Protocol):
    """Where failed-login counters live when every node must share them.

    :meth:`update` loads the counters of ``keys`` (counters idle for ``idle`` seconds are
    gone), lets ``step`` change, add or delete entries of that dict, and stores the
    result, atomically with respect to every other node's update of the same keys.
    It blocks on I/O (call it from a worker thread) and raises :class:`DirectoryError`
    when the shared storage cannot be reached.
    """

    def update(
        self,
        keys: tuple[str, ...],
        now: float,
        idle: float,
        step: Callable[[dict[str, LoginCounter]], T],
    ) -> T: ...


class Directory(Protocol):
    """Accounts, domains, aliases, password hashes and DKIM keys.

    Safe to share between threads.  Writes check their preconditions against the
    database itself, so two writers (two CLI runs, two nodes) cannot race; every
    method that takes an address canonicalises it (IDNA, case) first.
    """

    @property
    def generation(self) -> int:
        """Moves whenever the snapshot is reloaded: facts cached per account name elsewhere
        (an active Sieve script) are stale after it, the name may now be a new account."""
        ...

    @property
    def dkim(self) -> KeyStore:
        """The DKIM keys of the local domains (files, or the shared database)."""
        ...

    def login_counters(self) -> LoginCounters | None:
        """Failed-login counters every node shares, or None: each process keeps its own."""
        ...

    def close(self) -> None: ...

    def one_look(self) -> AbstractContextManager[None]:
        """Lookups inside (on this thread) see one view: one look for other writers'
        changes instead of one per lookup; the next look is at the next call."""
        ...

    def __enter__(self) -> Directory: ...

    def __exit__(self, *exc_info: object) -> None: ...

    # -- domains ---------------------------------------------------------------------

    def add_domain(self, domain: str) -> None: ...

    def del_domain(self, domain: str) -> None:
        """Refused while the domain still has users or aliases."""
        ...

    def domains(self) -> list[str]: ...

    def is_local_domain(self, domain: str) -> bool: ...

    # -- users -----------------------------------------------------------------------

    def add_user(self, address: str, password: str) -> None: ...

    def set_password(self, address: str, password: str) -> None: ...

    def del_user(self, address: str) -> None: ...

    def users(self) -> list[str]: ...

    def account_name(self, address: str) -> str:
        """The name ``address`` has as an account (in the store too), user or not yet."""
        ...

    def user_exists(self, address: str) -> bool: ...

    def is_admin(self, address: str) -> bool:
        """Whether the user may use the web admin page (``correo user admin``)."""
        ...

    def set_admin(self, address: str, on: bool) -> None:
        """Mark the user as an administrator, or no longer; DirectoryError if unknown."""
        ...

    def verify_password(self, address: str, password: str) -> str | None:
        """The canonical account if the password is right, else None.

        Blocks for one argon2 verification whether or not the user exists (timing reveals
        no accounts): call it from a worker thread.  A change made on another node
        (a new user, a new password, a removed user) counts at once.
        """
        ...

    def scram_verifier(self, address: str, family: str) -> ScramVerifier | None:
        """The SCRAM verifier ("SCRAM-SHA-1", "SCRAM-SHA-256") kept for the user, or None
        (no such user, or none computed yet: they appear at the next password login).
        Answered from the snapshot: safe on the event loop."""
        ...

    # -- aliases ---------------------------------------------------------------------

    def add_alias(self, alias: str, target: str) -> None:
        """Map ``alias`` (or "@domain", a catch-all) to one target address."""
        ...

    def del_alias(self, alias: str) -> None: ...

    def aliases(self) -> list[tuple[str, str]]: ...

    # -- lookups (hot paths, never wait on I/O) --------------------------------------

    def resolve(self, address: str) -> Resolution | None:
        """Where mail for ``address`` goes, or None if nobody here takes it."""
        ...

    def owned_addresses(self, account: str) -> frozenset[str]:
        """The account's address plus every alias resolving to it ("@d" = catch-all)."""
        ...

    def may_send_as(self, account: str, address: str) -> bool:
        """True if mail to ``address`` (any case, +tag allowed) reaches ``account``."""
        ...
