"""Password hashing for directory accounts (argon2id via argon2-cffi).

Parameters: argon2id with m=19 MiB, t=2, p=1 — the OWASP password-storage
baseline — pinned explicitly rather than taken from the library default. A mail
server verifies passwords far more often than a web site (every POP3 poll, every
submission), and unauthenticated clients choose when: RFC 9106's 64 MiB profile
measured 0.35 CPU s and 64 MiB per login here, which turns a burst of bad logins
into a memory and CPU exhaustion attack. Pinning means a future change of library
default shows up as ``needs_rehash`` deliberately, not by accident. Hashes carry
their parameters, so changing them later only costs a transparent rehash on the
next successful login.

Passwords are never logged, stored in attributes or put into messages.
"""

from __future__ import annotations

import secrets
import threading

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "DEFAULT_PARAMETERS",
    "MAX_PASSWORD_BYTES",
    "PasswordError",
    "PasswordScheme",
    "check_password",
]

DEFAULT_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19 * 1024,  # KiB
    parallelism=1,
)
MAX_PASSWORD_BYTES = 1024  # far above any passphrase; bounds work done on hostile input


class PasswordError(ValueError):
    """A password is unacceptable; the message never contains the password."""


def check_password(password: str) -> None:
    """Raise PasswordError unless ``password`` is non-empty, NUL-free and short enough."""
    if not password:
        raise PasswordError("password must not be empty")
    if "\x00" in password:  # RFC 4616 §2: NUL separates SASL PLAIN fields
        raise PasswordError("password must not contain NUL characters")
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        raise PasswordError("password is not valid Unicode text") from None
    if size > MAX_PASSWORD_BYTES:
        raise PasswordError(f"password is longer than {MAX_PASSWORD_BYTES} bytes")


class PasswordScheme:
    """Hash, verify and rehash passwords with one set of argon2id parameters."""

    __slots__ = ("_dummy", "_hasher", "_lock")

    def __init__(self, parameters: argon2.Parameters = DEFAULT_PARAMETERS) -> None:
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)
        self._dummy: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        h = self._hasher
        return f"PasswordScheme(t={h.time_cost}, m={h.memory_cost}, p={h.parallelism})"

    def hash(self, password: str) -> str:
        check_password(password)
        return str(self._hasher.hash(password))

    def verify(self, encoded_hash: str, password: str) -> bool:
        """True if ``password`` matches; False for a mismatch, bad input or a corrupt hash."""
        try:
            check_password(password)
        except PasswordError:
            return False
        try:
            return bool(self._hasher.verify(encoded_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, encoded_hash: str) -> bool:
        try:
            return bool(self._hasher.check_needs_rehash(encoded_hash))
        except (InvalidHashError, ValueError):
            return True

    def dummy_verify(self, password: str) -> None:
        """Spend the time of one verify, so unknown users cost what known ones do."""
        self.verify(self._dummy_hash(), password)

    def _dummy_hash(self) -> str:
        # Lazily: the CLI opens the directory often and rarely verifies.
        with self._lock:
            if self._dummy is None:
                self._dummy = str(self._hasher.hash(secrets.token_urlsafe(24)))
            return self._dummy
