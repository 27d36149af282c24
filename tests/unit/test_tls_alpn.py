"""TLS-ALPN-01 routing and live certificate replacement, over real sockets.

What these pin down about Python's ssl (docs/tls.md): the context assigned in the SNI
callback also negotiates ALPN; the ClientHello reaches the message hook before the SNI
callback; ``load_cert_chain`` on a live context changes new handshakes only.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from correo.certs.validation import ACME_IDENTIFIER, validation_certificate
from correo.server.tls import TlsConfigError, generate_self_signed, replace_chain, server_context
from correo.server.tls_alpn import AlpnChallenges, offered_alpn


class TlsServer:
    """Accepts connections on a thread and completes handshakes through a memory BIO,
    as asyncio does; keeps each session open and echoes one line back."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.selected: list[str | None] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(incoming, outgoing, server_side=True)
        conn.settimeout(10)
        try:
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    conn.sendall(outgoing.read())
                    data = conn.recv(65536)
                    if not data:
                        return
                    incoming.write(data)
            conn.sendall(outgoing.read())
            self.selected.append(obj.selected_alpn_protocol())
            while True:  # echo, so an established session can prove it still works
                try:
                    line = obj.read(1024)
                except ssl.SSLWantReadError:
                    data = conn.recv(65536)
                    if not data:
                        return
                    incoming.write(data)
                    continue
                obj.write(line)
                conn.sendall(outgoing.read())
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def connect(port: int, name: str, alpn: list[str] | None = None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=name)


def peer(tls: ssl.SSLSocket) -> x509.Certificate:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[ssl.SSLContext, TlsServer]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(cert, key, "mail.example.test")
    ctx = server_context(cert, key)
    server = TlsServer(ctx)
    yield ctx, server
    server.close()


def validation_context(tmp_path: Path, name: str, key_authorization: str) -> ssl.SSLContext:
    cert, key = validation_certificate(name, key_authorization)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(["acme-tls/1"])
    replace_chain(ctx, cert, key, tmp_path)
    return ctx


def test_validation_certificate_follows_rfc_8737() -> None:
    cert_pem, _ = validation_certificate("mail.example.test", "token.thumbprint")
    cert = x509.load_pem_x509_certificate(cert_pem)
    ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER)
    assert ext.critical  # RFC 8737 §3
    digest = hashlib.sha256(b"token.thumbprint").digest()
    assert ext.value.public_bytes() == b"\x04\x20" + digest
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test"]


def test_acme_handshakes_get_the_validation_certificate_and_others_do_not(
    tmp_path: Path, serving: tuple[ssl.SSLContext, TlsServer]
) -> None:
    ctx, server = serving
    challenges = AlpnChallenges()
    challenges.attach([ctx])
    challenges.add("Mail.Example.Test", validation_context(tmp_path, "mail.example.test", "k.a"))
    # the CA: SNI and ALPN acme-tls/1 -> the validation certificate, acme-tls/1 negotiated
    with connect(server.port, "mail.example.test", ["acme-tls/1"]) as tls:
        assert tls.selected_alpn_protocol() == "acme-tls/1"
        assert peer(tls).extensions.get_extension_for_oid(ACME_IDENTIFIER).critical
    # a browser or a mail client naming the same host: the server's own certificate
    with connect(server.port, "mail.example.test", ["h2", "http/1.1"]) as tls:
        assert tls.selected_alpn_protocol() is None
        with pytest.raises(x509.ExtensionNotFound):
            peer(tls).extensions.get_extension_for_oid(ACME_IDENTIFIER)
    with connect(server.port, "mail.example.test") as tls:
        assert cn(peer(tls)) == "mail.example.test"
        with pytest.raises(x509.ExtensionNotFound):
            peer(tls).extensions.get_extension_for_oid(ACME_IDENTIFIER)
    # acme-tls/1 for a name not under validation: nothing special
    with connect(server.port, "other.example.test", ["acme-tls/1"]) as tls:
        assert tls.selected_alpn_protocol() is None
    challenges.remove("mail.example.test")
    assert getattr(ctx, "_msg_callback", None) is None  # the hook is off again
    with connect(server.port, "mail.example.test", ["acme-tls/1"]) as tls:
        assert tls.selected_alpn_protocol() is None
        with pytest.raises(x509.ExtensionNotFound):
            peer(tls).extensions.get_extension_for_oid(ACME_IDENTIFIER)


def test_a_new_chain_serves_new_handshakes_while_sessions_go_on(
    tmp_path: Path, serving: tuple[ssl.SSLContext, TlsServer]
) -> None:
    ctx, server = serving
    before = connect(server.port, "mail.example.test")
    old = peer(before)
    other = tmp_path / "new"
    other.mkdir()
    generate_self_signed(other / "cert.pem", other / "key.pem", "renewed.example.test")
    chain, key = (other / "cert.pem").read_bytes(), (other / "key.pem").read_bytes()
    replace_chain(ctx, chain, key, tmp_path / "scratch")
    with connect(server.port, "mail.example.test") as after:
        assert cn(peer(after)) == "renewed.example.test"
    before.sendall(b"still here\n")  # the session from before goes on, on its certificate
    assert before.recv(1024) == b"still here\n"
    assert peer(before) == old
    before.close()
    assert not any((tmp_path / "scratch").iterdir())  # the key was not left behind


def test_a_bad_pair_leaves_the_live_context_as_it_was(
    tmp_path: Path, serving: tuple[ssl.SSLContext, TlsServer]
) -> None:
    ctx, server = serving
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, name in ((a, "a.example.test"), (b, "b.example.test")):
        folder.mkdir()
        generate_self_signed(folder / "cert.pem", folder / "key.pem", name)
    with pytest.raises(TlsConfigError):  # a's certificate with b's key
        replace_chain(
            ctx, (a / "cert.pem").read_bytes(), (b / "key.pem").read_bytes(), tmp_path / "s"
        )
    with pytest.raises(TlsConfigError):
        replace_chain(ctx, b"not a certificate", b"", tmp_path / "s")
    with connect(server.port, "mail.example.test") as tls:
        assert cn(peer(tls)) == "mail.example.test"


def _client_hello(alpn: list[str] | None) -> bytes:
    """A real ClientHello from Python's ssl, captured by the message hook."""
    seen: list[bytes] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

    def hook(conn: object, direction: str, v: object, ct: int, mt: int, data: bytes) -> None:
        if direction == "read" and ct == 22 and mt == 1:
            seen.append(data)

    ctx._msg_callback = hook  # type: ignore[attr-defined]
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    if alpn:
        client.set_alpn_protocols(alpn)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="x.test")
    s = ctx.wrap_bio(s_in, s_out, server_side=True)
    with pytest.raises(ssl.SSLWantReadError):
        c.do_handshake()
    s_in.write(c_out.read())
    with pytest.raises(ssl.SSLError):  # no certificate: fails after reading the hello
        s.do_handshake()
    assert seen
    return seen[0]


def test_offered_alpn_reads_real_client_hellos() -> None:
    hello = _client_hello(["h2", "acme-tls/1"])
    assert offered_alpn(hello) == [b"h2", b"acme-tls/1"]
    assert offered_alpn(hello[4:]) == [b"h2", b"acme-tls/1"]  # without the header too
    assert offered_alpn(_client_hello(None)) == []
    for cut in range(len(hello)):  # every truncation: no exception, never a wrong name
        assert set(offered_alpn(hello[:cut])) <= {b"h2", b"acme-tls/1"}


@given(st.binary(max_size=600))
def test_offered_alpn_never_raises(data: bytes) -> None:
    assert isinstance(offered_alpn(data), list)


def test_the_validation_certificate_expires_soon() -> None:
    cert = x509.load_pem_x509_certificate(validation_certificate("a.test", "x.y")[0])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < datetime.timedelta(days=2)
