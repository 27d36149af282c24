"""The TLS-ALPN-01 validation certificate (RFC 8737 §3), built with ``cryptography``.

Recent releases of the ``acme`` library no longer build it; the rest of the protocol
flow stays in the library (``correo.certs.flow``).
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

__all__ = ["ACME_IDENTIFIER", "acme_identifier", "validation_certificate"]

#: id-pe-acmeIdentifier (RFC 8737 §6.1)
ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def acme_identifier(key_authorization: str) -> bytes:
    """The extension's DER value: an OCTET STRING of SHA-256(key authorization).

    RFC 8737 §3: ``Authorization ::= OCTET STRING (SIZE (32))``.
    """
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    return b"\x04\x20" + digest  # DER: tag OCTET STRING, length 32


def validation_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) proving control of ``name`` for one challenge.

    RFC 8737 §3: self-signed, one dNSName (the name being validated), and the
    acmeIdentifier extension marked critical.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(  # RFC 8737 §3: "MUST be marked critical"
            x509.UnrecognizedExtension(ACME_IDENTIFIER, acme_identifier(key_authorization)),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
