"""Raw HTTP/1.1 over TLS to the https listener: one request, one whole response.

Responses are read by their own framing (Content-Length, or to the end of the
connection), so a keep-alive connection is not waited on past its answer.
"""

from __future__ import annotations

import socket
import ssl

from tests.conftest import client_tls


def read_response(sock: ssl.SSLSocket | socket.socket) -> bytes:
    """One response: its head and a Content-Length body, or everything to EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if head.startswith((b"HTTP/1.1 304", b"HTTP/1.1 204")):
        length = 0
    while length is None or len(body) < length:
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            break
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def https_get(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` as it is over a new TLS connection; the response."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with client_tls().wrap_socket(raw, server_hostname="mta-sts.example.test") as sock:
        sock.sendall(request)
        return read_response(sock)


def status_of(answer: bytes) -> int:
    """The status code of a response (0 when there is none)."""
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]
