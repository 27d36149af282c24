"""TLS for the servers: a self-signed certificate for first runs, and the context.

The context follows Mozilla's "intermediate" server profile: TLS 1.2 and 1.3
only, AEAD ciphers with forward secrecy. Mail clients are older than
browsers, and SMTP between servers uses opportunistic STARTTLS (RFC 3207
§4), so "modern" (1.3 only) would push some peers back to plaintext.
"""

from __future__ import annotations

import asyncio.sslproto
import contextlib
import datetime
import ipaddress
import os
import secrets
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "INTERMEDIATE_CIPHERS",
    "TLS_READ_BUFFER",
    "TlsConfigError",
    "bound_tls_read_buffer",
    "describe",
    "generate_self_signed",
    "replace_chain",
    "server_context",
]

#: Octets asyncio's TLS transport reads from the socket at once.  Its default, 256 KiB,
#: is allocated and zero-filled (so resident) for every connection: an idle IMAPS,
#: submissions or POP3S connection cost about 300 KiB, against 14 KiB in plaintext.
#: A TLS record is at most 16 KiB of data plus 261 octets (RFC 8446 §5.2), so one read
#: still takes a whole record; bench/idle_bench.py measures memory and FETCH rate.
TLS_READ_BUFFER = 17 * 1024


def bound_tls_read_buffer(size: int = TLS_READ_BUFFER) -> None:
    """Bound the read buffer of every asyncio TLS connection of this process.

    ``SSLProtocol.max_size`` is a class attribute of asyncio's TLS layer, so this holds
    for listeners, STARTTLS and outbound connections alike.  uvloop's TLS layer (when
    ``correo serve`` runs on it) allocates its own buffer without touching it, so only
    the part reads fill becomes resident; it is left as it is.
    """
    protocol = asyncio.sslproto.SSLProtocol
    if getattr(protocol, "max_size", 0) > size:
        protocol.max_size = size


# Mozilla "intermediate" TLS 1.2 suites (TLS 1.3 suites are all acceptable and
# are not set here). The DHE suites are left out: Python loads no DH
# parameters by default, so they could never be chosen anyway.
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "localhost6"})


class TlsConfigError(Exception):
    """The certificate or key cannot be used; the message names the file and the fix."""


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write via temp + fsync + rename so a crash never leaves half a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # os.open's mode passed through the umask; be exact
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def generate_self_signed(cert_path: Path, key_path: Path, hostname: str, days: int = 825) -> None:
    """Create a self-signed certificate for ``hostname`` (first runs and tests).

    ECDSA P-256: small keys, fast handshakes, supported by every TLS 1.2+
    client. A rare RSA-only client cannot connect with it; deployments that
    must serve one can install an RSA certificate instead (server_context
    loads either). 825 days is the longest validity Apple clients accept.
    """
    if not hostname or len(hostname) > 253:
        raise TlsConfigError(f"{hostname!r} is not a valid host name")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    alt_names: list[x509.GeneralName]
    try:
        alt_names = [x509.IPAddress(ipaddress.ip_address(hostname))]
    except ValueError:
        # RFC 5280 §4.2.1.6: dNSName holds the A-label form of an IDN.
        try:
            dns_name = hostname.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise TlsConfigError(f"{hostname!r} is not a valid host name") from None
        alt_names = [x509.DNSName(dns_name)]
        if hostname.lower() in _LOCAL_NAMES or hostname.lower().endswith(".localhost"):
            alt_names.append(x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")))
            alt_names.append(x509.IPAddress(ipaddress.IPv6Address("::1")))
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)  # RFC 6125 §6.4
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _atomic_write(Path(key_path), key_pem, 0o600)
    _atomic_write(Path(cert_path), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise TlsConfigError(f"TLS {what} file {path} does not exist") from None
    except OSError as exc:
        raise TlsConfigError(f"cannot read TLS {what} file {path}: {exc.strerror}") from None


def _check_pair(cert_path: Path, key_path: Path) -> None:
    """Parse both files ourselves: OpenSSL's own errors ("PEM lib") help nobody."""
    cert_pem, key_pem = _read(cert_path, "certificate"), _read(key_path, "key")
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsConfigError(f"{cert_path} does not contain a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsConfigError(
            f"{key_path} is encrypted; store the key without a passphrase (mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsConfigError(f"{key_path} does not contain a usable PEM private key") from None
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if certs[0].public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise TlsConfigError(
            f"the key in {key_path} does not match the certificate in {cert_path} "
            "(the first certificate in the file must be the server's own)"
        )


def _no_passphrase() -> str:
    raise TlsConfigError("the TLS key is encrypted")  # never prompt on a terminal


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server-side context for implicit TLS and STARTTLS alike."""
    _check_pair(cert_path, key_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996: TLS 1.0/1.1 are deprecated
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # renegotiation DoS; TLS 1.3 has none
    ctx.options |= ssl.OP_SINGLE_ECDH_USE
    try:
        ctx.load_cert_chain(cert_path, key_path, password=_no_passphrase)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"OpenSSL rejected {cert_path} / {key_path}: {exc}") from None
    except OSError as exc:
        raise TlsConfigError(f"cannot load {cert_path} / {key_path}: {exc}") from None
    return ctx


def replace_chain(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes, scratch: Path) -> None:
    """Put a new certificate into service on a live context, without a restart.

    OpenSSL copies the context's certificate into each connection when the connection
    is created, so handshakes from now on present the new one and established
    sessions keep theirs.  The pair is checked first, and loaded into a trial
    context: a bad pair raises TlsConfigError and leaves ``ctx`` as it was (a failed
    ``load_cert_chain`` could leave it holding the new certificate with the old key).
    ``scratch`` is a private folder for the moment the files exist (a key is written).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".load-") as folder:  # mode 0700
        cert_path, key_path = Path(folder) / "chain.pem", Path(folder) / "key.pem"
        for path, data in ((cert_path, chain_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        server_context(cert_path, key_path)  # the trial: raises TlsConfigError
        ctx.load_cert_chain(cert_path, key_path, password=_no_passphrase)


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    """``"TLSv1.3 TLS_AES_256_GCM_SHA384 256"``, for Received: headers and logs."""
    cipher = ssl_object.cipher()
    if cipher is None:
        return "no TLS"  # handshake not done
    name, protocol, bits = cipher
    version = ssl_object.version() or protocol
    return f"{version} {name} {bits}"
