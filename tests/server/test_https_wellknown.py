"""The https listener over real TLS: MTA-STS policy, autoconfig, and hostile requests."""

from __future__ import annotations

import select
import socket
import ssl
import time
import xml.etree.ElementTree as ET

from correo.mtasts import parse_policy
from tests.conftest import Server, client_tls, correo
from tests.server.web_helpers import body_of, https_get, read_response, status_of

_get = https_get


def test_policy_and_dns_record_agree(server: Server) -> None:
    answer = _get(
        server.ports["https"],
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ncontent-type: text/plain" in answer.lower()
    body = body_of(answer)
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
    tree = ET.fromstring(body_of(answer))
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
    post = b"POST /.well-known/mta-sts.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    assert status_of(_get(port, post)) == 405
    assert status_of(_get(port, b"GET / HTTP/1.1\r\n\r\n")) == 400  # RFC 9112 §3.2: no Host
    two = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    assert status_of(_get(port, two)) == 400
    huge = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
    assert status_of(_get(port, huge)) in (400, 431)
    long_target = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert status_of(_get(port, long_target)) in (400, 414, 431)
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 200 + b"\r\n"
    assert status_of(_get(port, many)) in (400, 431)
    assert status_of(_get(port, b"\x00\x01garbage\r\n\r\n")) == 400
    assert status_of(_get(port, b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n")) == 400
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
    head = b"GET / HTTP/1.1\r\nHost: slow.example.test\r\nX: aaaaaaaaaaaaaaaaaaaaaaa"
    sent, got = 0, b""
    # Dribbled whole, the head takes 6.5 s, six times the timeout; a server that timed
    # from the last read would take all of it, so being cut off before its end is the
    # proof, however much a loaded machine stretches each 0.1 s.
    try:
        for byte in head:
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.1)
            if select.select([sock], [], [], 0)[0] or sock.pending():
                got = sock.recv(1000)
                break
    except (ssl.SSLError, OSError):
        pass
    assert sent < len(head), "the whole slow head was read"
    if not got:
        try:
            sock.settimeout(10)
            got = sock.recv(1000)
        except (ssl.SSLError, OSError):
            pass
    assert got.startswith(b"HTTP/1.1 408 ") or got == b""
    sock.close()


def test_an_idle_keepalive_connection_is_closed_in_time(start_server: object) -> None:
    """After an answer, the next request head is due within command_timeout too."""
    srv: Server = start_server({"command_timeout": "1.0"})  # type: ignore[operator]
    raw = socket.create_connection(("127.0.0.1", srv.ports["https"]), timeout=10)
    with client_tls().wrap_socket(raw) as sock:
        sock.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n")
        assert status_of(read_response(sock)) == 200
        # Unset, the head timeout would be 30 s: a close within the 20 s the client
        # waits is the 1 s timeout's doing, however loaded the machine.
        sock.settimeout(20)
        try:
            rest = sock.recv(100)
        except TimeoutError:
            raise AssertionError("the idle connection was kept open") from None
        except (ssl.SSLError, OSError):
            rest = b""
        assert rest == b""  # closed by the server, quietly


def test_keepalive_serves_several_requests_on_one_connection(server: Server) -> None:
    raw = socket.create_connection(("127.0.0.1", server.ports["https"]), timeout=10)
    with client_tls().wrap_socket(raw) as sock:
        for _ in range(3):
            sock.sendall(
                b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n"
            )
            answer = read_response(sock)
            assert status_of(answer) == 200 and b"version: STSv1" in answer


def test_connections_per_ip_cap_the_https_listener(start_server: object) -> None:
    """[limits] connections_per_ip holds for https as for the mail listeners: 503."""
    srv: Server = start_server({"connections_per_ip": "2"})  # type: ignore[operator]
    port = srv.ports["https"]
    held = []
    for _ in range(2):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.append(client_tls().wrap_socket(raw))
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with client_tls().wrap_socket(raw) as third:
            answer = read_response(third)
        assert status_of(answer) == 503, answer
    finally:
        for sock in held:
            sock.close()
    assert srv.wait_log("event=server.too_many_connections service=https", 5)
