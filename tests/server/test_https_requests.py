"""The https listener answers every request head, over real TLS: absolute-form targets
(RFC 9112 §3.2.2) and queries with many fields included."""

from __future__ import annotations

import socket

from tests.conftest import Server, client_tls


def _get(port: int, request: bytes) -> bytes:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with client_tls().wrap_socket(raw, server_hostname="mta-sts.example.test") as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_absolute_form_target(server: Server) -> None:
    answer = _get(
        server.ports["https"],
        b"GET https://mta-sts.example.test/.well-known/mta-sts.txt HTTP/1.1\r\n"
        b"Host: mta-sts.example.test\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"version: STSv1" in answer


def test_many_query_fields_get_an_answer(server: Server) -> None:
    fields = "&".join(f"f{i}=x" for i in range(100))
    answer = _get(
        server.ports["https"],
        f"GET /mail/config-v1.1.xml?emailaddress=alice%40example.test&{fields} HTTP/1.1\r\n"
        "Host: autoconfig.example.test\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"<clientConfig" in answer
    for bad in (
        b"GET //[ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\nb\r\n\r\n",
        b"GET https://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ):
        answer = _get(server.ports["https"], bad)
        assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 404 ")), (bad, answer[:200])
    log = server.log()
    assert "Traceback" not in log and "session_crashed" not in log
