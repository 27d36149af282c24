"""The https listener over real TLS: MTA-STS policy, autoconfig, and hostile requests."""

from __future__ import annotations

import socket
import ssl
import time
import xml.etree.ElementTree as ET

from correo.mtasts import parse_policy
from correo.mtasts.fetch import parse_response
from tests.conftest import Server, client_tls, correo


def _get(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with client_tls().wrap_socket(raw, server_hostname="mta-sts.example.test") as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_policy_and_dns_record_agree(server: Server) -> None:
    answer = _get(
        server.ports["https"],
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n",
    )
    body = parse_response(answer)  # correo's own MTA-STS client accepts it
    policy = parse_policy(body)
    assert policy.mode == "enforce" and policy.mx == ("localhost",)
    zone = correo(server.data, "dns", "example.test").stdout
    import hashlib

    ident = hashlib.sha256(body).hexdigest()[:20]
    assert f'_mta-sts.example.test. 3600 IN TXT "v=STSv1; id={ident}"' in zone or (
        f"v=STSv1; id={ident}" in zone
    ), zone
    assert "event=https.request" in server.log()


def test_autoconfig_names_the_listening_ports(server: Server) -> None:
    answer = _get(
        server.ports["https"],
        b"GET /mail/config-v1.1.xml?emailaddress=alice%40example.test HTTP/1.1\r\n"
        b"Host: autoconfig.example.test\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    tree = ET.fromstring(answer.partition(b"\r\n\r\n")[2])
    ports = {
        (s.get("type"), s.findtext("socketType")): s.findtext("port")
        for s in tree.iter()
        if s.tag in ("incomingServer", "outgoingServer")
    }
    assert ports[("imap", "SSL")] == str(server.ports["imaps"])
    assert ports[("smtp", "SSL")] == str(server.ports["submissions"])
    assert ports[("smtp", "STARTTLS")] == str(server.ports["submission"])


def test_hostile_requests_get_http_errors_and_the_listener_lives_on(server: Server) -> None:
    port = server.ports["https"]
    assert _get(port, b"POST / HTTP/1.1\r\nHost: a\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert _get(port, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
    assert _get(port, huge).startswith(b"HTTP/1.1 431 ")
    assert _get(port, b"\x00\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    plain = socket.create_connection(("127.0.0.1", port), timeout=10)  # no TLS at all
    plain.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    plain.settimeout(10)
    try:
        assert not plain.recv(100).startswith(b"HTTP/1.1 200")
    except (ConnectionError, TimeoutError, OSError):
        pass
    plain.close()
    ok = _get(port, b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")
    assert "Traceback" not in server.log() and "session_crashed" not in server.log()


def test_a_slow_request_is_cut_off(start_server: object) -> None:
    srv: Server = start_server({"command_timeout": "1.0"})  # type: ignore[operator]
    raw = socket.create_connection(("127.0.0.1", srv.ports["https"]), timeout=10)
    sock = client_tls().wrap_socket(raw)
    started = time.monotonic()
    got = b""
    try:
        for byte in b"GET / HTTP/1.1\r\nHost: slow.example.test\r\nX: aaaaaaaaaaaaaaaaaaaaaaa":
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
    except (ssl.SSLError, OSError):
        pass
    try:
        sock.settimeout(10)
        got = sock.recv(1000)
    except (ssl.SSLError, OSError):
        pass
    assert got.startswith(b"HTTP/1.1 408 ") or got == b""
    assert time.monotonic() - started < 8.0
    sock.close()
