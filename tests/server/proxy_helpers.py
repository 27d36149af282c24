"""Clients that open their connection the way a load balancer does: a PROXY header first.

The test plays the balancer: it connects from a chosen loopback address (127.0.0.1 is
the trusted one in these tests, 127.0.0.2 an untrusted client), writes a version 1 or
version 2 header naming a made-up client, and then speaks the protocol — over TLS for
the implicit-TLS listeners, whose handshake starts after the header.
"""

from __future__ import annotations

import imaplib
import ipaddress
import poplib
import smtplib
import socket
import ssl
import struct
from typing import Any

from tests.conftest import client_tls

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src: str, sport: int = 40000, dst: str = "192.0.2.1", dport: int = 25) -> bytes:
    """A version 1 header (text) naming ``src``:``sport``."""
    family = "TCP6" if ":" in src else "TCP4"
    if family == "TCP6" and ":" not in dst:
        dst = "2001:db8::1"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(
    src: str = "",
    sport: int = 40000,
    dst: str = "",
    dport: int = 25,
    *,
    local: bool = False,
    tlvs: bytes = b"",
) -> bytes:
    """A version 2 header (binary): PROXY naming ``src``, or LOCAL (a health check)."""
    if local:
        return SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    a = ipaddress.ip_address(src)
    b = ipaddress.ip_address(dst or ("192.0.2.1" if a.version == 4 else "2001:db8::1"))
    family = 0x11 if a.version == 4 else 0x21
    block = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlvs
    return SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(block)) + block


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def balancer_socket(
    port: int, header: bytes, *, source: str = "127.0.0.1", timeout: float = 10.0
) -> socket.socket:
    """A connection to ``port`` from ``source`` that has sent ``header``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0))
    if header:
        sock.sendall(header)
    return sock


class Smtp(smtplib.SMTP):
    def __init__(self, port: int, header: bytes, source: str = "127.0.0.1") -> None:
        self._header, self._source = header, source
        super().__init__("127.0.0.1", port, timeout=10)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return balancer_socket(port, self._header, source=self._source, timeout=timeout)


class SmtpTls(smtplib.SMTP_SSL):
    def __init__(self, port: int, header: bytes, source: str = "127.0.0.1") -> None:
        self._header, self._source = header, source
        super().__init__("127.0.0.1", port, timeout=10, context=client_tls())

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        raw = balancer_socket(port, self._header, source=self._source, timeout=timeout)
        return self.context.wrap_socket(raw, server_hostname=host)


class Imap(imaplib.IMAP4):
    def __init__(self, port: int, header: bytes, source: str = "127.0.0.1") -> None:
        self._header, self._source = header, source
        super().__init__("127.0.0.1", port, timeout=10)

    def _create_socket(self, timeout: Any = None) -> socket.socket:
        return balancer_socket(self.port, self._header, source=self._source)


class ImapTls(imaplib.IMAP4_SSL):
    def __init__(self, port: int, header: bytes, source: str = "127.0.0.1") -> None:
        self._header, self._source = header, source
        super().__init__("127.0.0.1", port, ssl_context=client_tls(), timeout=10)

    def _create_socket(self, timeout: Any = None) -> socket.socket:
        raw = balancer_socket(self.port, self._header, source=self._source)
        return self.ssl_context.wrap_socket(raw, server_hostname=self.host)


class Pop3(poplib.POP3):
    def __init__(self, port: int, header: bytes, source: str = "127.0.0.1") -> None:
        self._header, self._source = header, source
        super().__init__("127.0.0.1", port, timeout=10)

    def _create_socket(self, timeout: Any) -> socket.socket:
        return balancer_socket(self.port, self._header, source=self._source)


class Pop3Tls(poplib.POP3_SSL):
    def __init__(self, port: int, header: bytes, source: str = "127.0.0.1") -> None:
        self._header, self._source = header, source
        super().__init__("127.0.0.1", port, context=client_tls(), timeout=10)

    def _create_socket(self, timeout: Any) -> socket.socket:
        raw = balancer_socket(self.port, self._header, source=self._source)
        return self.context.wrap_socket(raw, server_hostname=self.host)


def https_get(port: int, header: bytes, path: str, source: str = "127.0.0.1") -> bytes:
    """One HTTPS request after ``header``; the answer's status line."""
    raw = balancer_socket(port, header, source=source)
    with client_tls().wrap_socket(raw, server_hostname="localhost") as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.partition(b"\r\n")[0]


def closed_without_answer(sock: socket.socket | ssl.SSLSocket, timeout: float = 15.0) -> bool:
    """True when the server closes ``sock`` without having sent a byte."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
