"""DKIM keys: per domain, a few selectors with their private keys.

This is the one service-side module of ``mailauth``; where the keys live is a seam
(:class:`KeyStore`): files in the data folder (:class:`FileKeyStore`,
DATA/dkim/<domain>/<selector>.key, PEM, mode 0600) on a single node, or the database that
every node of a cluster shares (``correo.directory.postgres``), so that every node signs
with the same selector.  The selector name carries the algorithm and the creation month
(``ed202501``, ``rsa202501``), so a rotation adds new selectors while the old ones stay
published until removed (:func:`rotate_keys`).  A retired key stays in ``correo dns``
output but no longer signs (on disk: a ``<selector>.retired`` marker).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from correo.mailauth.signing import DkimSigner, SigningKey

__all__ = [
    "DomainKey",
    "FileKeyStore",
    "KeyStore",
    "StoredKey",
    "dns_record",
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


def _domain_name(domain: str) -> str:
    name = domain.lower().rstrip(".")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad domain {domain!r}")
    return name


class FileKeyStore:
    """Keys as files: DATA/dkim/<domain>/<selector>.key, PEM, mode 0600.

    A key's creation time is its file's modification time; a ``<selector>.retired``
    file beside it marks it retired.
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "dkim"

    def __repr__(self) -> str:
        return f"FileKeyStore({str(self.root)!r})"

    def folder(self, domain: str) -> Path:
        return self.root / _domain_name(domain)

    def stored_keys(self, domain: str) -> list[StoredKey]:
        folder = self.folder(domain)
        if not folder.is_dir():
            return []
        return [
            StoredKey(
                path.stem,
                path.read_bytes(),
                path.stat().st_mtime,
                path.with_suffix(".retired").exists(),
            )
            for path in folder.glob("*.key")
        ]

    def rotate(self, domain: str, new: Sequence[StoredKey], retire: Sequence[str]) -> None:
        folder = self.folder(domain)
        for key in new:
            path = folder / f"{key.selector}.key"
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.pem)
            os.utime(tmp, (key.created, key.created))
            os.replace(tmp, path)
        for selector in retire:
            marker = folder / f"{selector}.retired"
            if not marker.exists():
                marker.write_text("retired: published until its selector is removed\n")

    def version(self) -> object:
        """The folders' modification times: adding a key or a marker changes them."""
        try:
            return tuple(
                (p.name, p.stat().st_mtime_ns) for p in sorted(self.root.iterdir()) if p.is_dir()
            )
        except OSError:
            return ()

    def path(self, domain: str, selector: str) -> Path:
        return self.folder(domain) / f"{selector}.key"


def _store(where: Path | KeyStore) -> KeyStore:
    """A data folder stands for its key files (callers that predate the seam)."""
    return FileKeyStore(where) if isinstance(where, Path) else where


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


def load_domain_keys(where: Path | KeyStore, domain: str) -> list[DomainKey]:
    """Every key of a domain, newest first."""
    store = _store(where)
    name = _domain_name(domain)
    keys = []
    stored = sorted(store.stored_keys(name), key=lambda k: (k.created, k.selector), reverse=True)
    for item in stored:
        key = serialization.load_pem_private_key(item.pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            continue
        path = store.path(name, item.selector) if isinstance(store, FileKeyStore) else None
        keys.append(DomainKey(name, item.selector, key, path, item.retired))
    return keys


def ensure_domain_keys(
    where: Path | KeyStore, domain: str, now: float | None = None
) -> list[DomainKey]:
    """Create an ed25519 and an rsa-2048 key for ``domain`` unless it has keys already."""
    existing = load_domain_keys(where, domain)
    if existing:
        return existing
    return rotate_keys(where, domain, now)


def rotate_keys(where: Path | KeyStore, domain: str, now: float | None = None) -> list[DomainKey]:
    """Add a new ed25519 + rsa-2048 pair; older keys are retired (still published)."""
    store = _store(where)
    name = _domain_name(domain)
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


def load_signer(where: Path | KeyStore, domains: list[str]) -> dict[str, DkimSigner]:
    """A signer per local domain that has active keys (for the submission service)."""
    signers = {}
    for domain in domains:
        active = [k.signing_key for k in load_domain_keys(where, domain) if not k.retired]
        if active:
            signers[domain.lower()] = DkimSigner(active)
    return signers
