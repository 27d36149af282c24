"""Server side of the SASL mechanisms PLAIN and LOGIN, without I/O.

RFC 4422 frames SASL as an exchange of opaque challenges and responses; the
protocol shells (SMTP, POP3, IMAP) do the base64 and the line framing, so a
mechanism here sees and returns raw bytes.  A mechanism never checks a
password: it only extracts credentials, and the shell verifies them through
the directory.  That keeps secrets and timing policy in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from correo.sasl.scram import ScramContext

__all__ = [
    "SUPPORTED",
    "Challenge",
    "Credentials",
    "Failed",
    "LocalProtocolError",
    "LoginMechanism",
    "Mechanism",
    "PlainMechanism",
    "ScramProof",
    "Step",
    "Success",
    "server_mechanism",
]

SUPPORTED: tuple[str, ...] = ("PLAIN", "LOGIN")


class LocalProtocolError(RuntimeError):
    """Raised when *our* code drives a mechanism out of order (a bug, not the peer's fault)."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` to the client and wait for its response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ScramProof:
    """A SCRAM mechanism's verdict on the client's proof (RFC 5802 §3).

    ``server_final`` (the "v=" message) is sent only after the shell's throttle has
    counted the attempt and let it through; ``valid`` is False for an unknown user too.
    """

    valid: bool
    server_final: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The exchange is complete; the shell must verify these credentials.

    With ``proof`` (SCRAM) there is no password: the mechanism checked the proof, and
    the shell counts the verdict, sends ``proof.server_final`` as a last challenge and
    ends the exchange at :class:`Success`.
    """

    authzid: str
    authcid: str
    password: str = field(repr=False)  # never let a secret reach a log line
    proof: ScramProof | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"Credentials(authzid={self.authzid!r}, authcid={self.authcid!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class Success:
    """The client took the server's final message: the (already verified) login stands."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The exchange is over and failed; ``reason`` is safe to show the client."""

    reason: str


Step = Challenge | Credentials | Failed | Success


class Mechanism(Protocol):
    """One server-side SASL exchange; create a fresh object per AUTH command."""

    @property
    def name(self) -> str:
        """The registered mechanism name, upper case."""
        ...

    def start(self, initial: bytes | None) -> Step:
        """Begin the exchange; ``initial`` is the client's initial response (RFC 4422 §3.3)."""
        ...

    def step(self, response: bytes) -> Step:
        """Feed the client's response to the last challenge."""
        ...


def _text(raw: bytes) -> str | None:
    """Decode a SASL field as UTF-8; None when invalid or holding a NUL."""
    if b"\x00" in raw:  # RFC 4616 §2: fields are UTF8-SAFE (no NUL)
        return None
    try:
        return raw.decode("utf-8")  # RFC 4616 §2: UTF-8 strings
    except UnicodeDecodeError:
        return None


class _Base:
    """Shared start/step bookkeeping so misuse by a shell is caught early."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._started = False
        self._finished = False

    def _begin(self) -> None:
        if self._started:
            raise LocalProtocolError(f"{self.name}: start() called twice")
        self._started = True

    def _check_step(self) -> Failed | None:
        if not self._started:
            raise LocalProtocolError(f"{self.name}: step() before start()")
        if self._finished:
            return Failed("Authentication exchange already finished")
        return None

    def _end(self, result: Credentials | Failed) -> Credentials | Failed:
        self._finished = True
        return result


class PlainMechanism(_Base):
    """RFC 4616 PLAIN: one message ``[authzid] NUL authcid NUL passwd``."""

    name: ClassVar[str] = "PLAIN"

    def start(self, initial: bytes | None) -> Step:
        self._begin()
        if initial is None:
            return Challenge(b"")  # RFC 4422 §5 item 2a: empty challenge asks for the response
        return self._parse(initial)

    def step(self, response: bytes) -> Step:
        done = self._check_step()
        if done is not None:
            return done
        return self._parse(response)

    def _parse(self, message: bytes) -> Credentials | Failed:
        parts = message.split(b"\x00")
        if len(parts) != 3:  # RFC 4616 §2: exactly two NUL separators
            return self._end(Failed("Malformed PLAIN message"))
        authzid, authcid, passwd = (_text(p) for p in parts)
        if authzid is None or authcid is None or passwd is None:
            return self._end(Failed("PLAIN fields must be UTF-8"))
        if not authcid or not passwd:  # RFC 4616 §2: authcid and passwd are 1*SAFE
            return self._end(Failed("Empty user name or password"))
        return self._end(Credentials(authzid, authcid, passwd))


class LoginMechanism(_Base):
    """LOGIN (draft-murchison-sasl-login): prompts for user name, then password."""

    name: ClassVar[str] = "LOGIN"

    def __init__(self) -> None:
        super().__init__()
        self._user: str | None = None

    def start(self, initial: bytes | None) -> Step:
        self._begin()
        if initial is None:
            return Challenge(b"Username:")  # draft-murchison-sasl-login §2.1
        return self._username(initial)  # initial response carries the user name

    def step(self, response: bytes) -> Step:
        done = self._check_step()
        if done is not None:
            return done
        if self._user is None:
            return self._username(response)
        password = _text(response)
        if not password:
            return self._end(Failed("Invalid password"))
        return self._end(Credentials("", self._user, password))

    def _username(self, raw: bytes) -> Step:
        user = _text(raw)
        if not user:
            return self._end(Failed("Invalid user name"))
        self._user = user
        return Challenge(b"Password:")  # draft-murchison-sasl-login §2.1


_FACTORIES: dict[str, type[PlainMechanism] | type[LoginMechanism]] = {
    "PLAIN": PlainMechanism,
    "LOGIN": LoginMechanism,
}


def server_mechanism(name: str, scram: ScramContext | None = None) -> Mechanism | None:
    """A fresh server mechanism for ``name`` (case-insensitive, RFC 4422 §3.1), or None.

    SCRAM mechanisms exist only with a ``scram`` context (the shell offers them), and
    the -PLUS ones only when it carries a channel binding.
    """
    upper = name.upper()
    factory = _FACTORIES.get(upper)
    if factory is not None:
        return factory()
    from correo.sasl.scram import SCRAM_MECHANISMS, ScramMechanism

    if scram is None or upper not in SCRAM_MECHANISMS:
        return None
    if upper.endswith("-PLUS") and scram.binding is None:
        return None
    return ScramMechanism(upper, scram)
