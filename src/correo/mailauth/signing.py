"""Outbound DKIM signing (RFC 6376 §5, RFC 8463), streaming.

The submission session opens a :class:`SigningStream` with :meth:`DkimSigner.stream`,
feeds it the message bytes as they arrive (the same chunks it spools), and at end of data
calls :meth:`SigningStream.finish` for the DKIM-Signature fields to prepend — one per key, so a
domain can sign with ed25519 and rsa-sha256 at once (RFC 8463 §5 recommends both).

Both algorithms sign the SHA-256 of the header data, so the private-key operation is a
function of a 32-byte digest (:func:`sign_digest`).  A signer built with ``sign=`` hands
those digests to that callable (a server's pool of worker processes: an RSA-2048
signature is about 0.3 ms and holds the GIL) from :meth:`SigningStream.finish_async`.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from correo.mailauth.canon import BodyHasher, HeaderField, canon_header, split_fields
from correo.mailauth.dkim import PrivateKey
from correo.message.headers import HeaderCollector

__all__ = [
    "SIGNED_HEADERS",
    "DkimSigner",
    "SignDigests",
    "SigningKey",
    "SigningStream",
    "key_bits",
    "sign_digest",
]

#: Signs each (key, SHA-256 digest) pair; answers the signatures in the same order.
SignDigests = Callable[[Sequence[tuple[PrivateKey, bytes]]], Awaitable[list[bytes]]]

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


def sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """The signature over the SHA-256 ``digest`` of the header data, by key type."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(digest)  # RFC 8463 §3: Ed25519 signs the SHA-256 hash itself
    # RFC 6376 §3.3.1: RSASSA-PKCS1-v1_5 with SHA-256, the hash already taken
    return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


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
        unsigned = self._prepare(now)
        return self._assemble(unsigned, [sign_digest(k.key, d) for k, (_, d) in unsigned])

    async def finish_async(self, now: float | None = None) -> bytes:
        """:meth:`finish`, the private-key operations made by the signer's ``sign``."""
        sign = self._signer.sign_digests
        if sign is None:
            return self.finish(now)
        unsigned = self._prepare(now)
        signatures = await sign([(k.key, d) for k, (_, d) in unsigned])
        return self._assemble(unsigned, signatures)

    def _prepare(self, now: float | None) -> list[tuple[SigningKey, tuple[bytes, bytes]]]:
        """Per key: the field without its b= value, and the digest its signature is over."""
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
        return [
            (key, self._unsigned(key, names, body_hash, timestamp, signed))
            for key in self._signer.keys
        ]

    @staticmethod
    def _assemble(
        unsigned: list[tuple[SigningKey, tuple[bytes, bytes]]], signatures: list[bytes]
    ) -> bytes:
        out = []
        for (_, (field, _digest)), raw in zip(unsigned, signatures, strict=True):
            signature = base64.b64encode(raw).decode()
            last_line = field.rsplit(b"\r\n", 1)[-1]
            out.append(field + _fold_b64(signature, len(last_line)).encode() + b"\r\n")
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

    def _unsigned(
        self, key: SigningKey, names: list[str], body_hash: str, now: int, signed: bytes
    ) -> tuple[bytes, bytes]:
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
        return unsigned, hashlib.sha256(signed + own).digest()


class DkimSigner:
    """Signs outbound mail with every key given (e.g. one ed25519 and one rsa-2048)."""

    def __init__(
        self,
        keys: Iterable[SigningKey],
        *,
        headers: Sequence[str] = SIGNED_HEADERS,
        expire_after: int = 0,
        sign: SignDigests | None = None,
    ) -> None:
        self.keys = tuple(keys)
        self.headers = tuple(h.lower() for h in headers)
        self.expire_after = expire_after
        #: Where :meth:`SigningStream.finish_async` has the digests signed (None: here).
        self.sign_digests = sign

    def using(self, sign: SignDigests | None) -> DkimSigner:
        """The same signer, its private-key operations made by ``sign``."""
        return DkimSigner(
            self.keys, headers=self.headers, expire_after=self.expire_after, sign=sign
        )

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
