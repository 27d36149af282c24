"""DKIM keys: per domain, a few selectors with their private keys.

Pure: key generation, records, selector naming and rotation rules. Where the keys
live is a seam (:class:`KeyStore`) owned by the services: files in the data folder
(:class:`correo.directory.dkim_files.FileKeyStore`, DATA/dkim/<domain>/<selector>.key,
PEM, mode 0600) on a single node, or the database that every node of a cluster shares
(``correo.directory.postgres``), so that every node signs with the same selector.
The selector name carries the algorithm and the creation month (``ed202501``,
``rsa202501``), so a rotation adds new selectors while the old ones stay published
until removed (:func:`rotate_keys`).  A retired key stays in ``correo dns``
output but no longer signs (on disk: a ``<selector>.retired`` marker).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from correo.mailauth.signing import DkimSigner, SigningKey

__all__ = [
    "DomainKey",
    "KeyFiles",
    "KeyStore",
    "StoredKey",
    "dns_record",
    "domain_name",
    "ensure_domain_keys",
    "generate_key",
    "load_domain_keys",
    "load_signer",
    "rotate_keys",
]

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
ALGORITHMS = ("ed25519", "rsa")


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One key as a :class:`KeyStore` keeps it."""

    selector: str
    pem: bytes  # PKCS#8, unencrypted
    created: float  # seconds since the epoch: newest signs first
    retired: bool  # published, no longer used for signing


class KeyStore(Protocol):
    """Where DKIM keys live.  Domains are passed lower case, without a trailing dot."""

    def stored_keys(self, domain: str) -> list[StoredKey]:
        """Every key of ``domain``, in any order."""
        ...

    def rotate(self, domain: str, new: Sequence[StoredKey], retire: Sequence[str]) -> None:
        """Keep ``new`` keys (selectors new for the domain) and stop signing with the keys
        ``retire`` names (they stay published), as one change, durable on return."""
        ...

    def version(self) -> object:
        """Changes whenever a key is added or retired (a server reloads its signers)."""
        ...


@dataclass(frozen=True, slots=True)
class DomainKey:
    domain: str
    selector: str
    key: PrivateKey
    path: Path | None  # the key file, when the keys are files
    retired: bool  # published, no longer used for signing

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.domain, self.selector, self.key)


def generate_key(algorithm: str) -> PrivateKey:
    """A new ed25519 key or a 2048-bit RSA key (RFC 8301 §3.2: at least 1024, 2048 advised)."""
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown DKIM key algorithm {algorithm!r}")


def dns_record(key: PrivateKey) -> str:
    """The TXT record text for selector._domainkey.domain (RFC 6376 §3.6.1, RFC 8463 §4)."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def domain_name(domain: str) -> str:
    """A domain as key stores name it: lower case, no trailing dot, no path tricks."""
    name = domain.lower().rstrip(".")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad domain {domain!r}")
    return name


@runtime_checkable
class KeyFiles(Protocol):
    """A :class:`KeyStore` whose keys are files: a key can say where it lives."""

    def path(self, domain: str, selector: str) -> Path: ...


def _pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_selectors(taken: set[str], stamp: str) -> list[tuple[str, str]]:
    out = []
    for algorithm in ALGORITHMS:
        prefix = "ed" if algorithm == "ed25519" else "rsa"
        selector = f"{prefix}{stamp}"
        n = 1
        while selector in taken:
            n += 1
            selector = f"{prefix}{stamp}n{n}"
        out.append((algorithm, selector))
    return out


def load_domain_keys(store: KeyStore, domain: str) -> list[DomainKey]:
    """Every key of a domain, newest first."""
    name = domain_name(domain)
    keys = []
    stored = sorted(store.stored_keys(name), key=lambda k: (k.created, k.selector), reverse=True)
    for item in stored:
        key = serialization.load_pem_private_key(item.pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            continue
        path = store.path(name, item.selector) if isinstance(store, KeyFiles) else None
        keys.append(DomainKey(name, item.selector, key, path, item.retired))
    return keys


def ensure_domain_keys(store: KeyStore, domain: str, now: float | None = None) -> list[DomainKey]:
    """Create an ed25519 and an rsa-2048 key for ``domain`` unless it has keys already."""
    existing = load_domain_keys(store, domain)
    if existing:
        return existing
    return rotate_keys(store, domain, now)


def rotate_keys(store: KeyStore, domain: str, now: float | None = None) -> list[DomainKey]:
    """Add a new ed25519 + rsa-2048 pair; older keys are retired (still published)."""
    name = domain_name(domain)
    old = store.stored_keys(name)
    when = time.time() if now is None else now
    stamp = time.strftime("%Y%m", time.gmtime(when))
    created = max([when, *(k.created + 1e-3 for k in old)])  # newer than every older key
    new = [
        StoredKey(selector, _pem(generate_key(algorithm)), created, False)
        for algorithm, selector in _new_selectors({k.selector for k in old}, stamp)
    ]
    store.rotate(name, new, [k.selector for k in old if not k.retired])
    return load_domain_keys(store, name)


def load_signer(store: KeyStore, domains: list[str]) -> dict[str, DkimSigner]:
    """A signer per local domain that has active keys (for the submission service)."""
    signers = {}
    for domain in domains:
        active = [k.signing_key for k in load_domain_keys(store, domain) if not k.retired]
        if active:
            signers[domain.lower()] = DkimSigner(active)
    return signers
