"""Outbound DKIM signing (RFC 6376 §5, RFC 8463), streaming.

The submission session opens a :class:`SigningStream` with :meth:`DkimSigner.stream`,
feeds it the message bytes as they arrive (the same chunks it spools), and at end of data
calls :meth:`SigningStream.finish` for the DKIM-Signature fields to prepend — one per key, so a
domain can sign with ed25519 and rsa-sha256 at once (RFC 8463 §5 recommends both).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from correo.mailauth.canon import BodyHasher, HeaderField, canon_header, split_fields
from correo.mailauth.dkim import PrivateKey, sign_digest_input
from correo.message.headers import HeaderCollector

__all__ = ["SIGNED_HEADERS", "DkimSigner", "SigningKey", "SigningStream", "key_bits"]

# RFC 6376 §5.4.1: fields worth signing.  Fields that are present are signed once more
# than they occur ("oversigning", §8.15) so none can be added later without breaking it.
SIGNED_HEADERS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
_OVERSIGN = frozenset({"from", "to", "cc", "subject", "date", "reply-to", "message-id"})


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key and where its public half is published (selector._domainkey.domain)."""

    domain: str
    selector: str
    key: PrivateKey

    @property
    def algorithm(self) -> str:
        return (
            "ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else ("rsa-sha256")
        )


def _fold_tags(tags: Sequence[tuple[str, str]], width: int = 76) -> bytes:
    """Render ``DKIM-Signature: t=v; ...`` folded before tags that would pass ``width``."""
    out = "DKIM-Signature:"
    line_len = len(out)
    for i, (name, value) in enumerate(tags):
        piece = f"{name}={value}" + (";" if i < len(tags) - 1 else "")
        if line_len + 1 + len(piece) > width and line_len > 1:
            out += "\r\n\t"
            line_len = 1
        else:
            out += " "
            line_len += 1
        out += piece
        line_len += len(piece)
    return out.encode("ascii")


def _fold_b64(value: str, first: int, width: int = 76) -> str:
    """Split a long base64 value with FWS (ignored by verifiers, RFC 6376 §3.5 b=)."""
    pieces = []
    room = max(8, width - first)
    while value:
        pieces.append(value[:room])
        value = value[room:]
        room = width - 1
    return "\r\n\t".join(pieces)


class SigningStream:
    """One message being signed: feed body chunks, then :meth:`finish`."""

    def __init__(self, signer: DkimSigner, header_limit: int = 256 * 1024) -> None:
        self._signer = signer
        self._collector = HeaderCollector(header_limit)
        self._fields: list[HeaderField] | None = None
        self._hasher = BodyHasher(relaxed=True, algorithm="sha256")

    def feed(self, data: bytes) -> None:
        """Message bytes (CRLF, dot-unstuffed) in chunks of any size: header, then body."""
        if self._fields is None:
            rest = self._collector.feed(data)
            if rest is None:
                return
            self._fields = split_fields(self._collector.header)
            data = rest[2:] if rest.startswith(b"\r\n") else rest  # the blank line
        self._hasher.update(data)

    def finish(self, now: float | None = None) -> bytes:
        """The DKIM-Signature fields (with CRLFs) to put on top of the message."""
        if self._fields is None:
            self._collector.finish()
            self._fields = split_fields(self._collector.header)
        body_hash = base64.b64encode(self._hasher.digest()).decode()
        timestamp = int(time.time() if now is None else now)
        present = [name for name, _ in self._fields]
        names: list[str] = []
        for name in self._signer.headers:
            count = present.count(name)
            names += [name] * (count + (1 if name in _OVERSIGN and count else 0))
        if "from" not in names:
            names.append("from")  # RFC 6376 §5.4: From must be signed
        signed = self._signed_headers(names)  # the same for every key: canonicalized once
        out = []
        for key in self._signer.keys:
            out.append(self._sign_one(key, names, body_hash, timestamp, signed))
        return b"".join(out)

    def _signed_headers(self, names: list[str]) -> bytes:
        """The relaxed canonical form of the fields named in h=, in h= order."""
        by_name: dict[str, list[bytes]] = {}
        for name, raw in self._fields or ():
            by_name.setdefault(name, []).append(raw)
        parts = []
        for name in names:  # RFC 6376 §5.4.2: bottom-most unused instance first
            instances = by_name.get(name)
            if instances:
                parts.append(canon_header(instances.pop(), relaxed=True))
        return b"".join(parts)

    def _sign_one(
        self, key: SigningKey, names: list[str], body_hash: str, now: int, signed: bytes
    ) -> bytes:
        tags = [
            ("v", "1"),
            ("a", key.algorithm),
            ("c", "relaxed/relaxed"),
            ("d", key.domain),
            ("s", key.selector),
            ("t", str(now)),
        ]
        if self._signer.expire_after:
            tags.append(("x", str(now + self._signer.expire_after)))
        tags += [("h", ":".join(names)), ("bh", body_hash), ("b", "")]
        unsigned = _fold_tags(tags)
        own = canon_header(unsigned + b"\r\n", relaxed=True)[:-2]  # RFC 6376 §3.7
        signature = base64.b64encode(sign_digest_input(key.key, signed + own)).decode()
        last_line = unsigned.rsplit(b"\r\n", 1)[-1]
        return unsigned + _fold_b64(signature, len(last_line)).encode() + b"\r\n"


class DkimSigner:
    """Signs outbound mail with every key given (e.g. one ed25519 and one rsa-2048)."""

    def __init__(
        self,
        keys: Iterable[SigningKey],
        *,
        headers: Sequence[str] = SIGNED_HEADERS,
        expire_after: int = 0,
    ) -> None:
        self.keys = tuple(keys)
        self.headers = tuple(h.lower() for h in headers)
        self.expire_after = expire_after

    def stream(self) -> SigningStream:
        """Begin signing one message; feed it the message bytes as they arrive."""
        return SigningStream(self)

    def sign(self, message: bytes, now: float | None = None) -> bytes:
        """Sign a whole message held in memory; returns the fields to prepend."""
        stream = self.stream()
        stream.feed(message)
        return stream.finish(now)


def key_bits(key: PrivateKey) -> int:
    """Key size in bits, for reporting."""
    return key.key_size if isinstance(key, rsa.RSAPrivateKey) else 256
