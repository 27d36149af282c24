"""Does a server's certificate chain satisfy its TLSA records? (RFC 7672 §3, RFC 7671)

Pure: the chain (DER, leaf first, as the server sent it) and the records in, a reason
out (None when one usable record matches).

* DANE-EE(3): the leaf's certificate (selector 0) or public key (selector 1) matches;
  no name and no expiry checks (RFC 7672 §3.1.1).
* DANE-TA(2): a certificate of the chain the server sent matches (RFC 7672 §3.1.2: the
  server must send its trust anchor), or the record holds a whole certificate (2 0 0);
  the chain from the leaf up to that anchor is then validated as RFC 5280 says, by
  ``cryptography``'s path builder with the anchor as the only trusted certificate,
  and the leaf must carry one of the reference identifiers of RFC 7672 §3.2.2 (the
  MX host name, the recipient domain) in its subjectAltName.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from correo.dns.api import TlsaRecord

__all__ = ["DANE_EE", "DANE_TA", "check_chain", "record_for", "usable"]

DANE_TA = 2
DANE_EE = 3
_DIGEST_SIZE = {1: 32, 2: 64}  # SHA-256, SHA-512 (RFC 6698 §2.1.3)
_MAX_CHAIN = 10  # certificates looked at; more is no honest server's chain


def usable(records: Sequence[TlsaRecord]) -> list[TlsaRecord]:
    """The records an SMTP client can use (RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1)
    are unusable for SMTP; unknown selectors and matching types, and digests of the
    wrong length, are unusable too, RFC 7671 §4)."""
    found = []
    for r in records:
        if r.usage not in (DANE_TA, DANE_EE) or r.selector not in (0, 1):
            continue
        if r.mtype in _DIGEST_SIZE and len(r.data) != _DIGEST_SIZE[r.mtype]:
            continue
        if r.mtype not in (0, *_DIGEST_SIZE) or not r.data:
            continue
        found.append(r)
    return found


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _matches(record: TlsaRecord, cert: x509.Certificate) -> bool:
    """RFC 6698 §2.1.2-2.1.3: the selected part, hashed as the record says, equals it."""
    data = _selected(cert, record.selector)
    if record.mtype == 1:
        data = hashlib.sha256(data).digest()
    elif record.mtype == 2:
        data = hashlib.sha512(data).digest()
    return data == record.data


def record_for(certificate: bytes, usage: int = DANE_EE, selector: int = 1) -> TlsaRecord:
    """The SHA-256 TLSA record (``3 1 1`` by default) naming a PEM or DER certificate."""
    if certificate.lstrip().startswith(b"-----"):
        cert = x509.load_pem_x509_certificates(certificate)[0]
    else:
        cert = x509.load_der_x509_certificate(certificate)
    return TlsaRecord(usage, selector, 1, hashlib.sha256(_selected(cert, selector)).digest())


def check_chain(
    records: Sequence[TlsaRecord],
    chain: Sequence[bytes],
    names: Sequence[str],
    now: datetime.datetime | None = None,
) -> str | None:
    """None when ``chain`` satisfies one of ``records``; else why not (for logs and DSNs).

    ``names``: the reference identifiers for DANE-TA, the MX host name first.
    """
    records = usable(records)
    if not chain:
        return "the server sent no certificate"
    try:
        certs = [x509.load_der_x509_certificate(c) for c in chain[:_MAX_CHAIN]]
    except ValueError as exc:
        return f"unreadable certificate from the server: {exc}"
    leaf = certs[0]
    if any(r.usage == DANE_EE and _matches(r, leaf) for r in records):
        return None  # RFC 7672 §3.1.1: the key is the server's; names and dates do not matter
    anchors: list[x509.Certificate] = []
    for r in records:
        if r.usage != DANE_TA:
            continue
        anchors += [c for c in certs[1:] if _matches(r, c) and c not in anchors]
        if r.selector == 0 and r.mtype == 0:  # the record is the certificate itself
            try:
                anchors.append(x509.load_der_x509_certificate(r.data))
            except ValueError:
                continue
    if not anchors:
        kinds = sorted({"DANE-EE" if r.usage == DANE_EE else "DANE-TA" for r in records})
        return f"no TLSA record ({', '.join(kinds)}) matches the certificate chain"
    problem = ""
    for anchor in anchors:
        for name in names:
            try:
                builder = PolicyBuilder().store(Store([anchor]))
                if now is not None:
                    builder = builder.time(now)
                verifier = builder.build_server_verifier(x509.DNSName(name))
                verifier.verify(leaf, certs[1:])
                return None
            except (VerificationError, ValueError) as exc:
                problem = str(exc)
    wanted = " or ".join(names) or "(no name)"
    return f"DANE-TA: no valid chain to the TLSA trust anchor for {wanted}: {problem}"
