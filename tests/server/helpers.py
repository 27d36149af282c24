"""Small real-socket helpers for end-to-end tests."""

from __future__ import annotations

import poplib
import socket
import ssl
import time

from tests.conftest import PASSWORDS, client_tls


class RawSmtp:
    """A byte-exact SMTP client for what smtplib refuses to send (smuggling, bursts)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed: " + self.buf.decode(errors="replace"))
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.line()
            lines.append(line[4:].decode(errors="replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, text: str) -> tuple[int, str]:
        self.send(text.encode() + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, TimeoutError):
            return True

    def close(self) -> None:
        self.sock.close()


def pop3(port: int, user: str, password: str | None = None) -> poplib.POP3_SSL:
    """Logged in as ``user``; the password defaults to the fixture's ``PASSWORDS``."""
    client = poplib.POP3_SSL("127.0.0.1", port, context=client_tls(), timeout=10)
    client.user(user)
    client.pass_(PASSWORDS[user] if password is None else password)
    return client


def mailbox(port: int, user: str, password: str | None = None) -> list[bytes]:
    """Every message in the user's INBOX, as bytes (POP3 RETR, no deletion)."""
    client = pop3(port, user, password)
    try:
        count, _ = client.stat()
        return [b"\r\n".join(client.retr(i + 1)[1]) for i in range(count)]
    finally:
        client.quit()


def wait_count(port: int, user: str, expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        client = pop3(port, user)
        count, _ = client.stat()
        client.quit()
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def message(sender: str, to: str, subject: str, body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n"
        f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()


__all__ = ["RawSmtp", "mailbox", "message", "pop3", "ssl", "wait_count"]
