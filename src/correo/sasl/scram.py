"""Server side of SCRAM (RFC 5802, RFC 7677), with and without channel binding, sans-I/O.

The server never sees the password during a SCRAM exchange: it holds, per account and
hash, a salt, an iteration count, StoredKey and ServerKey (RFC 5802 §3), computed when
the password is set (:func:`make_verifier`).  The mechanism asks a synchronous ``lookup``
for them (the directory answers from memory) and checks the client's proof itself: a
few HMACs, cheap enough for the event loop.  The verdict goes back to the shell inside
:class:`~correo.sasl.mechanisms.Credentials` (``proof``) so the shell's throttle counts
it like a password; only after that does the shell send the server-final message, as a
last challenge answered by an empty response (RFC 4422 §5; RFC 5802 §5).

Channel binding: one type per connection, chosen by the shell: ``tls-exporter`` on
TLS 1.3 (RFC 9266; tls-unique is undefined there, §3), ``tls-unique`` on TLS 1.2 (RFC 5929
§3, RFC 5802 §6's default); ``-PLUS`` is offered only where the binding can be checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from correo.sasl.mechanisms import Challenge, Credentials, Failed, ScramProof, Step, Success
from correo.sasl.saslprep import saslprep

__all__ = [
    "HASHES",
    "MAX_ITERATIONS",
    "MIN_ITERATIONS",
    "SCRAM_MECHANISMS",
    "ChannelBinding",
    "ScramContext",
    "ScramMechanism",
    "ScramVerifier",
    "make_verifier",
    "parse_verifiers",
]

#: Mechanism family -> hashlib name (RFC 5802 §4 SCRAM-SHA-1, RFC 7677 SCRAM-SHA-256).
HASHES: Final[dict[str, str]] = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
SCRAM_MECHANISMS: Final = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1")
MIN_ITERATIONS: Final = 4096  # RFC 5802 §5.1 / RFC 7677 §4: at least 4096
MAX_ITERATIONS: Final = 10_000_000  # bounds the work a setting can ask of every client
_MAX_MESSAGE: Final = 4096  # octets of one client message; real ones are ~100-200
_MAX_NONCE: Final = 256


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """What the server keeps for one account and hash (RFC 5802 §3)."""

    family: str  # "SCRAM-SHA-1" or "SCRAM-SHA-256"
    iterations: int
    salt: bytes
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def encode(self) -> str:
        """RFC 5803 §3 style: ``FAMILY$iter:salt$StoredKey:ServerKey``, base64 fields."""
        b64 = base64.b64encode
        return (
            f"{self.family}${self.iterations}:{b64(self.salt).decode()}"
            f"${b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )


def make_verifier(
    family: str, password: str, iterations: int, salt: bytes | None = None
) -> ScramVerifier:
    """Compute the verifier of ``password`` (PBKDF2: slow on purpose, call it off the loop).

    Raises :class:`~correo.sasl.saslprep.SaslprepError` when the password has no SASLprep
    form (RFC 5802 §2.2): such an account logs in with PLAIN only.
    """
    digest = HASHES[family]
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac(digest, saslprep(password).encode(), salt, iterations)  # Hi()
    client_key = hmac.digest(salted, b"Client Key", digest)
    stored_key = hashlib.new(digest, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", digest)
    return ScramVerifier(family, iterations, salt, stored_key, server_key)


def parse_verifiers(text: str) -> dict[str, ScramVerifier]:
    """The verifiers of a stored string (several, space-separated); damaged ones are left out."""
    found: dict[str, ScramVerifier] = {}
    for item in text.split():
        try:
            family, params, keys = item.split("$")
            iters, salt = params.split(":")
            stored, server = keys.split(":")
            size = hashlib.new(HASHES[family]).digest_size
            verifier = ScramVerifier(
                family,
                int(iters),
                base64.b64decode(salt, validate=True),
                base64.b64decode(stored, validate=True),
                base64.b64decode(server, validate=True),
            )
        except (ValueError, KeyError, binascii.Error):
            continue
        if len(verifier.stored_key) == size == len(verifier.server_key):
            found[family] = verifier
    return found


@dataclass(frozen=True, slots=True)
class ChannelBinding:
    """The binding this connection can check: its type name and data (RFC 5056)."""

    kind: str  # "tls-exporter" (RFC 9266) or "tls-unique" (RFC 5929 §3)
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ScramContext:
    """What a shell tells a SCRAM mechanism about its connection and accounts.

    ``lookup(user, family)``: the verifier, or None (no such account, or none computed);
    ``binding``: the channel binding of this connection, None when -PLUS is not offered;
    ``secret``: a per-process key for the made-up salt of unknown users (RFC 5802 §9);
    ``iterations``: the count a made-up answer claims, per family.
    """

    lookup: Callable[[str, str], ScramVerifier | None]
    binding: ChannelBinding | None
    secret: bytes = field(repr=False)
    iterations: dict[str, int]


def _saslname(raw: str) -> str | None:
    """Decode RFC 5802 §7 saslname: "=2C" is ",", "=3D" is "="; any other "=" is invalid."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "=":
            code = raw[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                return None
            i += 3
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _extensions(fields: list[str]) -> bool:
    """RFC 5802 §7 extensions: each ``attr-val`` (ALPHA "=" value); their content is ignored."""
    return all(len(f) >= 2 and f[1] == "=" and f[0].isascii() and f[0].isalpha() for f in fields)


def _printable_nonce(nonce: str) -> bool:
    # RFC 5802 §7: printable = %x21-2B / %x2D-7E (no comma)
    return 0 < len(nonce) <= _MAX_NONCE and all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)


class ScramMechanism:
    """One SCRAM exchange; ``name`` is a member of :data:`SCRAM_MECHANISMS`."""

    def __init__(self, name: str, context: ScramContext) -> None:
        self.name = name
        self.plus = name.endswith("-PLUS")
        self._family = name.removesuffix("-PLUS")
        self._digest = HASHES[self._family]
        self._ctx = context
        self._state = "new"
        self._gs2 = b""
        self._bare = ""
        self._server_first = ""
        self._nonce = ""
        self._authzid = ""
        self._user = ""
        self._verifier: ScramVerifier | None = None

    # -- Mechanism protocol -----------------------------------------------------------

    def start(self, initial: bytes | None) -> Step:
        if self._state != "new":
            return self._fail("Exchange already started")
        self._state = "first"
        if initial is None:
            return Challenge(b"")  # RFC 4422 §5 item 2a: ask for the client-first message
        return self._client_first(initial)

    def step(self, response: bytes) -> Step:
        match self._state:
            case "first":
                return self._client_first(response)
            case "final":
                return self._client_final(response)
            case "ack":
                self._state = "done"
                if response:  # RFC 5802 §5: nothing follows server-final but an empty reply
                    return Failed("Unexpected data after the server's final message")
                return Success()
            case _:
                return self._fail("Authentication exchange already finished")

    # -- the messages -------------------------------------------------------------------

    def _fail(self, reason: str) -> Failed:
        self._state = "done"
        return Failed(reason)

    def _client_first(self, raw: bytes) -> Step:
        if len(raw) > _MAX_MESSAGE:
            return self._fail("SCRAM message too long")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail("SCRAM messages are UTF-8")
        parts = text.split(",", 2)
        if len(parts) != 3 or "\x00" in text:
            return self._fail("Malformed client-first message")
        flag, authzid, bare = parts
        binding = self._ctx.binding
        if flag.startswith("p="):  # RFC 5802 §6: the client wants channel binding
            if not self.plus:
                return self._fail("Channel binding needs a -PLUS mechanism")
            if binding is None or flag[2:] != binding.kind:
                return self._fail("Unsupported channel binding type")
        elif self.plus:
            return self._fail("A -PLUS mechanism needs channel binding")
        elif flag == "y":
            if binding is not None:  # RFC 5802 §6: the server does bind: a downgrade
                return self._fail("The server supports channel binding")
        elif flag != "n":
            return self._fail("Malformed channel binding flag")
        if authzid:
            if not authzid.startswith("a="):
                return self._fail("Malformed authorization identity")
            name = _saslname(authzid[2:])
            if not name:
                return self._fail("Malformed authorization identity")
            self._authzid = name
        fields = bare.split(",")
        if len(fields) < 2 or fields[0].startswith("m="):  # RFC 5802 §5.1: m= must fail
            return self._fail("Malformed client-first message")
        if not fields[0].startswith("n=") or not fields[1].startswith("r="):
            return self._fail("Malformed client-first message")
        if not _extensions(fields[2:]):
            return self._fail("Malformed client-first message")
        user = _saslname(fields[0][2:])
        if not user:
            return self._fail("Malformed user name")
        nonce = fields[1][2:]
        if not _printable_nonce(nonce):
            return self._fail("Malformed nonce")
        self._gs2 = f"{flag},{authzid},".encode()
        self._bare = bare
        self._user = user
        self._verifier = self._ctx.lookup(user, self._family)
        salt, iterations = self._salt()
        self._nonce = nonce + secrets.token_urlsafe(18)
        self._server_first = f"r={self._nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        self._state = "final"
        return Challenge(self._server_first.encode())

    def _salt(self) -> tuple[bytes, int]:
        if self._verifier is not None:
            return self._verifier.salt, self._verifier.iterations
        # RFC 5802 §9: an unknown user gets a stable made-up salt, so the answer does not
        # tell who has an account.
        made_up = hmac.digest(self._ctx.secret, f"{self._family}\0{self._user}".encode(), "sha256")
        return made_up[:16], self._ctx.iterations.get(self._family, MIN_ITERATIONS)

    def _client_final(self, raw: bytes) -> Step:
        if len(raw) > _MAX_MESSAGE:
            return self._fail("SCRAM message too long")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return self._fail("Malformed client-final message")
        without_proof, sep, proof_field = text.rpartition(",p=")
        fields = without_proof.split(",")
        if not sep or len(fields) < 2:
            return self._fail("Malformed client-final message")
        if not fields[0].startswith("c=") or not fields[1].startswith("r="):
            return self._fail("Malformed client-final message")
        if not _extensions(fields[2:]):
            return self._fail("Malformed client-final message")
        try:
            cbind = base64.b64decode(fields[0][2:], validate=True)
            proof = base64.b64decode(proof_field, validate=True)
        except binascii.Error:
            return self._fail("Malformed base64 in client-final message")
        if fields[1][2:] != self._nonce:
            return self._fail("Nonce mismatch")
        expected = self._gs2
        if self.plus:
            assert self._ctx.binding is not None  # checked in client-first
            expected += self._ctx.binding.data
        # RFC 5802 §5.1 "c=": the header and binding data must be what we saw and hold.
        bound = hmac.compare_digest(cbind, expected)
        auth_message = f"{self._bare},{self._server_first},{without_proof}".encode()
        valid = False
        server_final = b""
        verifier = self._verifier
        if verifier is not None and len(proof) == len(verifier.stored_key):
            signature = hmac.digest(verifier.stored_key, auth_message, self._digest)
            client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
            valid = bound and hmac.compare_digest(
                hashlib.new(self._digest, client_key).digest(), verifier.stored_key
            )
            server_signature = hmac.digest(verifier.server_key, auth_message, self._digest)
            server_final = b"v=" + base64.b64encode(server_signature)
        self._state = "ack" if valid else "done"
        return Credentials(
            self._authzid, self._user, "", proof=ScramProof(valid, server_final if valid else b"")
        )
