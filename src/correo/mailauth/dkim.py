"""DKIM signatures (RFC 6376, RFC 8463 ed25519, RFC 8301 algorithm rules): verify and sign.

Verification is split in two so that a streaming SMTP session can use it: the header
section is parsed first (:class:`DkimVerifier` builds one :class:`BodyHasher` per distinct
canonicalization/hash/l= triple), the body is fed chunk by chunk, and at end of data
:meth:`DkimVerifier.verify` fetches the keys and checks each signature.  Key operations use
the ``cryptography`` package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from correo.dns.api import DnsError, DnsNoData, DnsNotFound, Resolver
from correo.mailauth.canon import (
    BodyHasher,
    HeaderField,
    TagError,
    canon_header,
    parse_tags,
    split_fields,
    strip_b_value,
)

__all__ = [
    "DkimKeyRecord",
    "DkimResult",
    "DkimSignature",
    "DkimStatus",
    "DkimVerifier",
    "PrivateKey",
    "PublicKey",
    "SignatureError",
    "check_signature",
    "fetch_key",
    "header_hash_input",
    "parse_key_record",
    "parse_signature",
    "sign_digest_input",
    "verify_signature_bytes",
]

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

MAX_SIGNATURES = 10  # verify at most this many: each costs a DNS lookup and a key operation
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: smaller keys MUST NOT be considered valid
ALGORITHMS = {
    "rsa-sha256": ("rsa", "sha256"),
    "rsa-sha1": ("rsa", "sha1"),  # RFC 8301 §3.1: verified, but reported as policy
    "ed25519-sha256": ("ed25519", "sha256"),  # RFC 8463 §3
}


class DkimStatus(StrEnum):
    """RFC 8601 §2.7.1 dkim results."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    POLICY = "policy"
    NEUTRAL = "neutral"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class SignatureError(ValueError):
    """A DKIM-Signature field that cannot be used (RFC 6376 §6.1.1: PERMFAIL)."""


@dataclass(frozen=True, slots=True)
class DkimSignature:
    """A parsed DKIM-Signature (or ARC-Message-Signature) field."""

    raw: bytes
    tags: dict[str, str]
    algorithm: str
    key_type: str
    hash_name: str
    signature: bytes
    body_hash: bytes
    header_relaxed: bool
    body_relaxed: bool
    domain: str
    selector: str
    headers: tuple[str, ...]
    identity: str
    length: int | None
    timestamp: int | None
    expires: int | None

    @property
    def hasher_key(self) -> tuple[bool, str, int | None]:
        return (self.body_relaxed, self.hash_name, self.length)


@dataclass(frozen=True, slots=True)
class DkimKeyRecord:
    """A key record at selector._domainkey.domain (RFC 6376 §3.6.1)."""

    key: PublicKey | None  # None: revoked (empty p=)
    key_type: str
    hashes: tuple[str, ...]
    testing: bool
    strict: bool
    services: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DkimResult:
    """One signature's verdict, ready for Authentication-Results (RFC 8601 §2.7.1)."""

    status: DkimStatus
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    identity: str = ""
    header_b: str = ""  # the first characters of b=, to tell signatures apart (RFC 6008)
    reason: str = ""
    testing: bool = False


def _b64(value: str) -> bytes:
    cleaned = "".join(value.split())
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("bad base64") from None


def _int_tag(tags: dict[str, str], name: str) -> int | None:
    value = tags.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 76:  # RFC 6376 §3.5: 1*76DIGIT
        raise SignatureError(f"bad {name}= tag")
    return int(value)


def parse_signature(raw: bytes, *, arc: bool = False) -> DkimSignature:
    """Parse and check one signature field (RFC 6376 §3.5, §6.1.1); raises SignatureError."""
    value = raw.partition(b":")[2].decode("utf-8", "replace")
    try:
        tags = parse_tags(value)
    except TagError as exc:
        raise SignatureError(str(exc)) from None
    required = ("a", "b", "bh", "d", "h", "s") if arc else ("v", "a", "b", "bh", "d", "h", "s")
    for name in required:
        if name not in tags:
            raise SignatureError(f"missing {name}= tag")  # RFC 6376 §6.1.1
    if not arc and tags["v"] != "1":
        raise SignatureError("unsupported version")  # RFC 6376 §3.5 v=
    algorithm = tags["a"].lower()
    if algorithm not in ALGORITHMS:
        raise SignatureError(f"unknown algorithm {algorithm}")
    key_type, hash_name = ALGORITHMS[algorithm]
    canon = tags.get("c", "simple/simple").lower()
    head_c, _, body_c = canon.partition("/")
    body_c = body_c or "simple"  # RFC 6376 §3.5 c=: body defaults to simple
    if head_c not in ("simple", "relaxed") or body_c not in ("simple", "relaxed"):
        raise SignatureError(f"unknown canonicalization {canon}")
    domain = tags["d"].lower().rstrip(".")
    if not domain or ("." not in domain and not arc):
        raise SignatureError("bad d= tag")
    headers = tuple(h.strip(" \t\r\n").lower() for h in tags["h"].split(":"))
    if "from" not in headers and not arc:
        raise SignatureError("From is not signed")  # RFC 6376 §5.4
    identity = "" if arc else tags.get("i", "@" + domain)
    if identity:
        idom = identity.rpartition("@")[2].lower().rstrip(".")
        if idom != domain and not idom.endswith("." + domain):
            raise SignatureError("i= is not within d=")  # RFC 6376 §3.5 i=
    if tags.get("q", "dns/txt").lower().split(":")[0] != "dns/txt":
        raise SignatureError("unsupported q= method")
    timestamp = _int_tag(tags, "t")
    expires = _int_tag(tags, "x")
    if timestamp is not None and expires is not None and expires < timestamp:
        raise SignatureError("x= before t=")  # RFC 6376 §3.5 x=
    return DkimSignature(
        raw=raw,
        tags=tags,
        algorithm=algorithm,
        key_type=key_type,
        hash_name=hash_name,
        signature=_b64(tags["b"]),
        body_hash=_b64(tags["bh"]),
        header_relaxed=head_c == "relaxed",
        body_relaxed=body_c == "relaxed",
        domain=domain,
        selector=tags["s"].strip(),
        headers=headers,
        identity=identity,
        length=_int_tag(tags, "l"),
        timestamp=timestamp,
        expires=expires,
    )


def _load_public_key(key_type: str, data: bytes) -> PublicKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(data)  # RFC 8463 §4: raw 32 bytes
    try:
        key = serialization.load_der_public_key(data)  # SubjectPublicKeyInfo
    except ValueError:
        pem = b"-----BEGIN RSA PUBLIC KEY-----\n"
        pem += base64.encodebytes(data) + b"-----END RSA PUBLIC KEY-----\n"
        key = serialization.load_pem_public_key(pem)  # a bare RSAPublicKey, seen in the wild
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA key")
    return key


def parse_key_record(text: bytes) -> DkimKeyRecord:
    """RFC 6376 §3.6.1; raises SignatureError for an unusable record."""
    try:
        tags = parse_tags(text.decode("ascii"))
    except (TagError, UnicodeDecodeError) as exc:
        raise SignatureError(f"bad key record: {exc}") from None
    if tags.get("v", "DKIM1") != "DKIM1":
        raise SignatureError("bad key record version")
    key_type = tags.get("k", "rsa").lower()
    if key_type not in ("rsa", "ed25519"):
        raise SignatureError(f"unknown key type {key_type}")
    if "p" not in tags:
        raise SignatureError("key record without p=")
    flags = {f.strip() for f in tags.get("t", "").split(":")}
    services = tuple(s.strip().lower() for s in tags.get("s", "*").split(":"))
    hashes_allowed = tuple(h.strip().lower() for h in tags.get("h", "").split(":") if h.strip())
    key: PublicKey | None = None
    if tags["p"].strip():
        try:
            key = _load_public_key(key_type, _b64(tags["p"]))
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"bad public key: {exc}") from None
    return DkimKeyRecord(
        key=key,
        key_type=key_type,
        hashes=hashes_allowed,
        testing="y" in flags,
        strict="s" in flags,
        services=services,
    )


async def fetch_key(resolver: Resolver, selector: str, domain: str) -> DkimKeyRecord:
    """Look up and parse a key; SignatureError (permanent) or DnsError (temporary)."""
    name = f"{selector}._domainkey.{domain}"
    try:
        records = await resolver.txt(name)
    except (DnsNotFound, DnsNoData):
        raise SignatureError(f"no key at {name}") from None  # RFC 6376 §6.1.2: PERMFAIL
    last: SignatureError | None = None
    for text in records:
        try:
            return parse_key_record(text)
        except SignatureError as exc:
            last = exc
    raise last or SignatureError(f"no key at {name}")


def header_hash_input(
    fields: Sequence[HeaderField],
    names: Iterable[str],
    signature_raw: bytes,
    relaxed: bool,
) -> bytes:
    """The header data a signature covers (RFC 6376 §3.7, §5.4.2).

    Each name in h= takes the bottom-most instance not yet used; a name with no instance
    left (oversigning) contributes nothing.  The signature field itself comes last, with
    its b= value emptied and no final CRLF.
    """
    by_name: dict[str, list[bytes]] = {}
    for name, raw in fields:
        by_name.setdefault(name, []).append(raw)
    parts: list[bytes] = []
    for name in names:
        instances = by_name.get(name)
        if instances:
            parts.append(canon_header(instances.pop(), relaxed))
    own = canon_header(strip_b_value(signature_raw) + b"\r\n", relaxed)
    parts.append(own[:-2])
    return b"".join(parts)


def verify_signature_bytes(
    key: PublicKey, key_type: str, hash_name: str, data: bytes, signature: bytes
) -> bool:
    """Check ``signature`` over ``data`` with ``key`` (RFC 6376 §3.3, RFC 8463 §3)."""
    try:
        if key_type == "ed25519":
            if not isinstance(key, ed25519.Ed25519PublicKey):
                return False
            key.verify(signature, hashlib.sha256(data).digest())  # RFC 8463 §3: sign the hash
            return True
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        algo: hashes.HashAlgorithm = hashes.SHA256() if hash_name == "sha256" else hashes.SHA1()
        key.verify(signature, data, padding.PKCS1v15(), algo)
        return True
    except InvalidSignature:
        return False


def sign_digest_input(key: PrivateKey, data: bytes) -> bytes:
    """Sign header data: rsa-sha256 or ed25519-sha256 by key type."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(hashlib.sha256(data).digest())  # RFC 8463 §3
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


class DkimVerifier:
    """Verify every DKIM-Signature of a message, fed as header section then body chunks."""

    def __init__(self, header: bytes, *, max_signatures: int = MAX_SIGNATURES) -> None:
        self.fields = split_fields(header)
        self.signatures: list[DkimSignature | DkimResult] = []
        self.hashers: dict[tuple[bool, str, int | None], BodyHasher] = {}
        for name, raw in self.fields:
            if name != "dkim-signature":
                continue
            if len(self.signatures) >= max_signatures:
                break
            try:
                sig = parse_signature(raw)
            except SignatureError as exc:
                self.signatures.append(_unparsed(raw, str(exc)))
                continue
            self.signatures.append(sig)
            self.add_hasher(sig)

    def add_hasher(self, sig: DkimSignature) -> None:
        if sig.hasher_key not in self.hashers:
            self.hashers[sig.hasher_key] = BodyHasher(sig.body_relaxed, sig.hash_name, sig.length)

    def update(self, chunk: bytes) -> None:
        """Feed body bytes; every distinct canonicalization is hashed in one pass each."""
        for hasher in self.hashers.values():
            hasher.update(chunk)

    def body_digests(self) -> dict[tuple[bool, str, int | None], tuple[bytes, int]]:
        """Finish the body: each hasher's digest and canonical body length."""
        return {key: (h.digest(), h.length) for key, h in self.hashers.items()}

    async def verify(self, resolver: Resolver, now: float | None = None) -> list[DkimResult]:
        """Results in signature order; [] when the message carries no signature."""
        digests = self.body_digests()
        now = time.time() if now is None else now
        results: list[DkimResult] = []
        for sig in self.signatures:
            if isinstance(sig, DkimResult):
                results.append(sig)
                continue
            results.append(await check_signature(resolver, sig, self.fields, digests, now))
        return results


def _unparsed(raw: bytes, reason: str) -> DkimResult:
    try:
        tags = parse_tags(raw.partition(b":")[2].decode("utf-8", "replace"))
    except TagError:
        tags = {}
    return DkimResult(
        DkimStatus.PERMERROR,
        domain=tags.get("d", "").lower(),
        selector=tags.get("s", ""),
        algorithm=tags.get("a", ""),
        header_b="".join(tags.get("b", "").split())[:8],
        reason=reason,
    )


async def check_signature(
    resolver: Resolver,
    sig: DkimSignature,
    fields: Sequence[HeaderField],
    digests: dict[tuple[bool, str, int | None], tuple[bytes, int]],
    now: float,
    *,
    arc: bool = False,
) -> DkimResult:
    """RFC 6376 §6.1: one signature, given the finished body digests."""

    def result(status: DkimStatus, reason: str = "", testing: bool = False) -> DkimResult:
        return DkimResult(
            status,
            domain=sig.domain,
            selector=sig.selector,
            algorithm=sig.algorithm,
            identity=sig.identity,
            header_b="".join(sig.tags.get("b", "").split())[:8],
            reason=reason,
            testing=testing,
        )

    if sig.expires is not None and sig.expires < now:
        return result(DkimStatus.FAIL, "signature expired")  # RFC 6376 §3.5 x=
    try:
        record = await fetch_key(resolver, sig.selector, sig.domain)
    except SignatureError as exc:
        return result(DkimStatus.PERMERROR, str(exc))
    except DnsError as exc:
        return result(DkimStatus.TEMPERROR, str(exc))  # RFC 6376 §6.1.2: TEMPFAIL
    testing = record.testing
    if record.key is None:
        return result(DkimStatus.PERMERROR, "key revoked", testing)  # RFC 6376 §3.6.1 p=
    if record.key_type != sig.key_type:
        return result(DkimStatus.PERMERROR, "key type does not match a=", testing)
    if record.hashes and sig.hash_name not in record.hashes:
        return result(DkimStatus.PERMERROR, "hash not allowed by key h=", testing)
    if "*" not in record.services and "email" not in record.services:
        return result(DkimStatus.PERMERROR, "key not for email", testing)  # RFC 6376 §3.6.1 s=
    if record.strict and not arc and sig.identity.rpartition("@")[2].lower() != sig.domain:
        return result(DkimStatus.PERMERROR, "t=s: i= must equal d=", testing)
    if isinstance(record.key, rsa.RSAPublicKey) and record.key.key_size < MIN_RSA_BITS:
        return result(DkimStatus.PERMERROR, "RSA key too short", testing)  # RFC 8301 §3.2
    digest, length = digests[sig.hasher_key]
    if sig.length is not None and sig.length > length:
        return result(DkimStatus.FAIL, "l= longer than the body", testing)
    if digest != sig.body_hash:
        return result(DkimStatus.FAIL, "body hash did not verify", testing)  # §6.1.3 step 4
    data = header_hash_input(fields, sig.headers, sig.raw, sig.header_relaxed)
    if not verify_signature_bytes(record.key, sig.key_type, sig.hash_name, data, sig.signature):
        return result(DkimStatus.FAIL, "signature did not verify", testing)
    if sig.hash_name == "sha1":
        return result(DkimStatus.POLICY, "rsa-sha1 is not accepted (RFC 8301)", testing)
    return result(DkimStatus.PASS, "", testing)
