"""DKIM keys on disk: DATA/dkim/<domain>/<selector>.key (PEM, mode 0600).

This is the one service-side module of ``mailauth``: it reads and writes files.  The
selector name carries the algorithm and the creation month (``ed202501``, ``rsa202501``),
so a rotation adds new selectors while the old ones stay published until removed
(:func:`rotate_keys`).  A ``<selector>.retired`` marker stops signing with a key while its
record stays in ``correo dns`` output.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from correo.mailauth.signing import DkimSigner, SigningKey

__all__ = [
    "DomainKey",
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
class DomainKey:
    domain: str
    selector: str
    key: PrivateKey
    path: Path
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


def _domain_dir(data_dir: Path, domain: str) -> Path:
    name = domain.lower().rstrip(".")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad domain {domain!r}")
    return data_dir / "dkim" / name


def _write_key(path: Path, key: PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, path)


def _new_selectors(directory: Path, stamp: str) -> list[tuple[str, str]]:
    out = []
    for algorithm in ALGORITHMS:
        prefix = "ed" if algorithm == "ed25519" else "rsa"
        selector = f"{prefix}{stamp}"
        n = 1
        while (directory / f"{selector}.key").exists():
            n += 1
            selector = f"{prefix}{stamp}n{n}"
        out.append((algorithm, selector))
    return out


def load_domain_keys(data_dir: Path, domain: str) -> list[DomainKey]:
    """Every key of a domain, newest selector first."""
    directory = _domain_dir(data_dir, domain)
    if not directory.is_dir():
        return []
    keys = []
    for path in sorted(directory.glob("*.key"), key=lambda p: p.stat().st_mtime, reverse=True):
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            continue
        retired = path.with_suffix(".retired").exists()
        keys.append(DomainKey(domain.lower(), path.stem, key, path, retired))
    return keys


def ensure_domain_keys(data_dir: Path, domain: str, now: float | None = None) -> list[DomainKey]:
    """Create an ed25519 and an rsa-2048 key for ``domain`` unless it has keys already."""
    existing = load_domain_keys(data_dir, domain)
    if existing:
        return existing
    return rotate_keys(data_dir, domain, now)


def rotate_keys(data_dir: Path, domain: str, now: float | None = None) -> list[DomainKey]:
    """Add a new ed25519 + rsa-2048 pair; older keys are retired (still published)."""
    directory = _domain_dir(data_dir, domain)
    old = load_domain_keys(data_dir, domain)
    stamp = time.strftime("%Y%m", time.gmtime(time.time() if now is None else now))
    for algorithm, selector in _new_selectors(directory, stamp):
        _write_key(directory / f"{selector}.key", generate_key(algorithm))
    for key in old:
        marker = key.path.with_suffix(".retired")
        if not marker.exists():
            marker.write_text("retired: published until its selector is removed\n")
    return load_domain_keys(data_dir, domain)


def load_signer(data_dir: Path, domains: list[str]) -> dict[str, DkimSigner]:
    """A signer per local domain that has active keys (for the submission service)."""
    signers = {}
    for domain in domains:
        active = [k.signing_key for k in load_domain_keys(data_dir, domain) if not k.retired]
        if active:
            signers[domain.lower()] = DkimSigner(active)
    return signers
