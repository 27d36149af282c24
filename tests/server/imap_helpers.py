"""Helpers for the IMAP end-to-end tests: imaplib sessions and a byte-exact raw client."""

from __future__ import annotations

import imaplib
import itertools
import re
import socket
import ssl
import uuid

from tests.conftest import PASSWORDS, Server, client_tls

__all__ = ["RawImap", "imap", "message", "unique"]

_counter = itertools.count(1)


def unique(prefix: str = "box") -> str:
    """A mailbox name no other test uses."""
    return f"{prefix}{next(_counter)}x{uuid.uuid4().hex[:6]}"


def imap(server: Server, user: str = "alice@example.test", *, login: bool = True) -> imaplib.IMAP4:
    client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls(), timeout=10
    )
    if login:
        client.login(user, PASSWORDS[user])
    return client


def message(
    subject: str = "hello",
    body: str = "Hello there.\r\n",
    *,
    sender: str = "alice@example.test",
    to: str = "bob@example.test",
    extra: str = "",
) -> bytes:
    text = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\n{extra}\r\n{body}"
    )
    return text.encode()


class RawImap:
    """Sends exact bytes and reads responses up to a tagged line (literals included)."""

    def __init__(self, port: int, *, tls: bool = True, timeout: float = 10.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock: socket.socket | ssl.SSLSocket = (
            client_tls().wrap_socket(sock, server_hostname="localhost") if tls else sock
        )
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed: " + self.buf.decode(errors="replace"))
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        m = re.search(rb"~?\{(\d+)\}\Z", line)
        if m:  # a literal: keep it inside the returned "line"
            n = int(m.group(1))
            while len(self.buf) < n:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("closed in literal")
                self.buf += chunk
            line += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            line += self.line()
        return line

    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def cmd(self, tag: str, text: str | bytes) -> list[bytes]:
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until(tag.encode())

    def login(self, user: str = "alice@example.test") -> None:
        out = self.cmd("L", f'LOGIN "{user}" "{PASSWORDS[user]}"')
        assert out[-1].startswith(b"L OK"), out

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, TimeoutError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()
