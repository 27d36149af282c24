"""Login lockout over real sockets: every spelling of an account shares one counter,
and simultaneous attempts cannot outrun the lock."""

from __future__ import annotations

import base64
import socket
import threading
import time

from tests.conftest import PASSWORDS, Server

ALICE = "alice@example.test"
BOB = "bob@example.test"


def fullwidth(text: str) -> str:
    """ASCII letters and "." as their fullwidth forms (U+FF01..U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isalpha() or c == "." else c for c in text)


SPELLINGS = (
    "alice@" + fullwidth("example") + ".test",  # fullwidth letters in the domain
    "alice@example\u3002test",  # U+3002 ideographic full stop between labels
    "ALICE@" + fullwidth("EXAMPLE.TEST"),  # fullwidth stop, upper case
)
PLAIN_OK = {"allow_plaintext": "true", "max_delay": "0.1"}


class Line:
    """A line client from a chosen loopback source address (each is a distinct client)."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=20, source_address=(source, 0)
        )
        self.buf = b""

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed: " + self.buf.decode(errors="replace"))
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode(errors="replace")

    def until(self, prefix: str) -> str:
        while not (line := self.line()).startswith(prefix):
            pass
        return line

    def close(self) -> None:
        self.sock.close()


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def smtp_auth(srv: Server, source: str, user: str, password: str) -> int:
    c = Line(srv.ports["submission"], source)
    try:
        c.until("220 ")
        c.send("EHLO client.test")
        c.until("250 ")
        c.send(f"AUTH PLAIN {_plain(user, password)}")
        return int(c.line()[:3])
    finally:
        c.close()


def imap_auth(srv: Server, source: str, user: str, password: str) -> str:
    c = Line(srv.ports["imap"], source)
    try:
        c.until("* OK")
        c.send("a AUTHENTICATE PLAIN")
        c.until("+")
        c.send(_plain(user, password))
        return c.until("a ")
    finally:
        c.close()


def pop3_auth(srv: Server, source: str, user: str, password: str) -> str:
    c = Line(srv.ports["pop3"], source)
    try:
        c.until("+OK")
        c.send(f"AUTH PLAIN {_plain(user, password)}")
        return c.line()
    finally:
        c.close()


def sieve_auth(srv: Server, source: str, user: str, password: str) -> str:
    c = Line(srv.ports["sieve"], source)
    try:
        c.until("OK")
        c.send(f'AUTHENTICATE "PLAIN" "{_plain(user, password)}"')
        return c.line()
    finally:
        c.close()


def test_a_lockout_covers_every_spelling_of_the_account(start_server: object) -> None:
    srv: Server = start_server({**PLAIN_OK, "lockout_failures": "3"})  # type: ignore[operator]
    for _ in range(3):
        assert smtp_auth(srv, "127.0.0.2", ALICE, "wrong") == 535
    right = PASSWORDS[ALICE]
    # From other addresses (fresh per-IP counters), the right password in any spelling
    # of the locked account is refused without being checked, in every protocol.
    for i, spelling in enumerate(SPELLINGS):
        assert smtp_auth(srv, f"127.0.0.{10 + i}", spelling, right) == 454, spelling
        assert "UNAVAILABLE" in imap_auth(srv, f"127.0.0.{20 + i}", spelling, right), spelling
        assert pop3_auth(srv, f"127.0.0.{30 + i}", spelling, right).startswith("-ERR [SYS/TEMP]")
        assert "TRYLATER" in sieve_auth(srv, f"127.0.0.{40 + i}", spelling, right), spelling
    assert smtp_auth(srv, "127.0.0.50", ALICE, right) == 454
    # Other accounts are not affected.
    assert smtp_auth(srv, "127.0.0.51", BOB, PASSWORDS[BOB]) == 235


def test_failures_in_different_spellings_add_up(start_server: object) -> None:
    srv: Server = start_server({**PLAIN_OK, "lockout_failures": "3"})  # type: ignore[operator]
    bob = ("bob@" + fullwidth("example") + ".test", "bob@example\u3002test", "BOB@EXAMPLE.TEST")
    for i, spelling in enumerate(bob):  # one failure per address: no per-IP lock
        assert smtp_auth(srv, f"127.0.0.{60 + i}", spelling, "wrong") == 535
    assert smtp_auth(srv, "127.0.0.70", BOB, PASSWORDS[BOB]) == 454
    # Any spelling logs in to an account that is not locked.
    assert smtp_auth(srv, "127.0.0.71", SPELLINGS[0], PASSWORDS[ALICE]) == 235


def test_simultaneous_attempts_cannot_outrun_the_lock(start_server: object) -> None:
    srv: Server = start_server({**PLAIN_OK, "lockout_failures": "10"})  # type: ignore[operator]
    count = 45
    barrier = threading.Barrier(count)
    codes: list[int] = []
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            c = Line(srv.ports["submission"], "127.0.0.1")
            c.until("220 ")
            c.send("EHLO client.test")
            c.until("250 ")
            barrier.wait(20)
            c.send(f"AUTH PLAIN {_plain(ALICE, 'wrong')}")
            codes.append(int(c.line()[:3]))
            c.close()
        except BaseException as exc:  # reported below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(codes) == count
    verified = codes.count(535)
    assert 1 <= verified <= 10, codes  # at most lockout_failures passwords were checked
    assert codes.count(454) == count - verified, codes
    # The log agrees: one auth.failed line per verification, auth.locked for the rest.
    deadline = time.monotonic() + 10
    while srv.log().count("event=auth.") < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.log().count("event=auth.failed") == verified
    # Locked now: the right password is refused, from this address and for the account.
    assert smtp_auth(srv, "127.0.0.1", ALICE, PASSWORDS[ALICE]) == 454
    assert smtp_auth(srv, "127.0.0.80", ALICE, PASSWORDS[ALICE]) == 454
