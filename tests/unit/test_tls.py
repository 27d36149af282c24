"""Tests for correo.server.tls: self-signed generation, the context, describe()."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from correo.server.tls import TlsConfigError, describe, generate_self_signed, server_context


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tls")
    cert, key = base / "cert.pem", base / "key.pem"
    generate_self_signed(cert, key, "mail.example.test")
    return cert, key


@pytest.fixture(scope="module")
def local_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tls-local")
    cert, key = base / "sub" / "cert.pem", base / "sub" / "key.pem"
    generate_self_signed(cert, key, "localhost", days=30)
    return cert, key


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str
) -> tuple[str | BaseException, str | BaseException]:
    """Handshake over a socketpair; return each side's describe() or its error."""
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    result: dict[str, str | BaseException] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as tls:
                result["server"] = describe(tls)
                tls.sendall(b"220 ok\r\n")
        except (ssl.SSLError, OSError) as exc:
            result["server"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=hostname) as tls:
            result["client"] = describe(tls)
            assert tls.recv(100) == b"220 ok\r\n"
    except (ssl.SSLError, OSError) as exc:
        result["client"] = exc
        b.close()
    thread.join()
    a.close()
    return result["server"], result["client"]


def test_generated_files(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert not [p for p in key_path.parent.iterdir() if p.name.endswith(".tmp")]
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test"]
    assert san.get_values_for_type(x509.IPAddress) == []
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 825 <= lifetime.days <= 826


def test_localhost_gets_loopback_ips(local_pair: tuple[Path, Path]) -> None:
    cert = x509.load_pem_x509_certificate(local_pair[0].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]


def test_idn_and_ip_hostnames(tmp_path: Path) -> None:
    generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "mail.bücher.example")
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.xn--bcher-kva.example"]
    generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "192.0.2.1")  # overwrite
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.1"]
    with pytest.raises(TlsConfigError, match="host name"):
        generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "")


def test_context_settings(pair: tuple[Path, Path]) -> None:
    ctx = server_context(*pair)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and all("GCM" in n or "CHACHA20" in n for n in tls12)
    assert all(n.startswith("ECDHE-") for n in tls12)


def test_handshake(pair: tuple[Path, Path]) -> None:
    client = ssl.create_default_context(cafile=str(pair[0]))
    server_desc, client_desc = _handshake(server_context(*pair), client, "mail.example.test")
    assert isinstance(server_desc, str) and isinstance(client_desc, str)
    assert server_desc == client_desc
    version, cipher, bits = client_desc.split(" ")
    assert version == "TLSv1.3" and cipher.startswith("TLS_") and int(bits) >= 128


def test_handshake_tls12(local_pair: tuple[Path, Path]) -> None:
    client = ssl.create_default_context(cafile=str(local_pair[0]))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    _, client_desc = _handshake(server_context(*local_pair), client, "localhost")
    assert isinstance(client_desc, str)
    assert client_desc.startswith("TLSv1.2 ECDHE-ECDSA-")


def test_hostname_is_checked(pair: tuple[Path, Path]) -> None:
    client = ssl.create_default_context(cafile=str(pair[0]))
    _, client_result = _handshake(server_context(*pair), client, "other.example.test")
    assert isinstance(client_result, ssl.SSLCertVerificationError)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls11_refused(pair: tuple[Path, Path]) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cafile=str(pair[0]))
    client.set_ciphers("DEFAULT:@SECLEVEL=0")  # let our client offer TLS 1.1 at all
    client.minimum_version = ssl.TLSVersion.TLSv1
    client.maximum_version = ssl.TLSVersion.TLSv1_1
    server_result, client_result = _handshake(server_context(*pair), client, "mail.example.test")
    assert isinstance(client_result, ssl.SSLError)
    assert isinstance(server_result, ssl.SSLError)
    assert "UNSUPPORTED_PROTOCOL" in str(server_result)


def test_describe_before_handshake() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="x.example")
    assert describe(obj) == "no TLS"


def test_config_errors(
    pair: tuple[Path, Path], local_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = pair
    other_cert, other_key = local_pair
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not pem")
    unreadable = tmp_path / "dir.pem"
    unreadable.mkdir()
    for c, k, message in [
        (tmp_path / "missing.pem", key, "certificate file .* does not exist"),
        (cert, tmp_path / "missing.pem", "key file .* does not exist"),
        (unreadable, key, "cannot read TLS certificate"),
        (garbage, key, "does not contain a PEM certificate"),
        (cert, garbage, "does not contain a usable PEM private key"),
        (cert, other_key, "does not match the certificate"),
        (other_cert, key, "does not match the certificate"),
    ]:
        with pytest.raises(TlsConfigError, match=message):
            server_context(c, k)


def test_encrypted_key_rejected(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pair[1].read_bytes(), password=None)
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(TlsConfigError, match="encrypted"):
        server_context(pair[0], encrypted)
