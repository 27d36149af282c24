"""Property tests for the POP3 core and its command parser under hostile input."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.pop3 import (
    NEED_DATA,
    PAUSED,
    Auth,
    AuthCancel,
    AuthResponse,
    ConnectionClosed,
    DotStuffer,
    Event,
    MaildropEntry,
    Pop3Connection,
    Pop3Limits,
    Pop3Reply,
    Quit,
    Respond,
    Retrieve,
    Sentinel,
    StartTls,
    UserPass,
)
from correo.pop3.commands import BadCommand, parse_command
from correo.sasl import Challenge, Credentials, Mechanism, server_mechanism

ENTRIES = [MaildropEntry(7, 12, "a"), MaildropEntry(8, 30, "b"), MaildropEntry(9, 5, "c")]
BODY = b"H: v\r\n\r\n.x\r\n"


class AutoShell:
    """Answers every event the same way every time, so transcripts are comparable.

    STLS is always refused: accepting it would make the result depend on what was
    buffered when the handshake happened, which is exactly what tls_started() discards.
    """

    def __init__(self, conn: Pop3Connection) -> None:
        self.conn = conn
        self.mech: Mechanism | None = None

    def answer(self, ev: Event) -> bytes:
        conn = self.conn
        match ev:
            case Respond(data):
                return data
            case StartTls():
                return conn.send(Pop3Reply(False, "no"))
            case UserPass(_, password):
                return self.login(password)
            case Auth(mechanism, initial):
                self.mech = server_mechanism(mechanism)
                assert self.mech is not None
                return self.sasl(self.mech.start(initial))
            case AuthResponse(data):
                assert self.mech is not None
                return self.sasl(self.mech.step(data))
            case AuthCancel():
                return conn.send(Pop3Reply(False, "cancelled"))
            case Retrieve():
                stuffer = DotStuffer()
                out = conn.begin_message(len(BODY)) + stuffer.feed(BODY) + stuffer.finish()
                conn.message_sent()
                return out
            case Quit():
                return conn.send(Pop3Reply(True, "bye"))
            case ConnectionClosed():
                return b""
        raise AssertionError(f"unexpected event {ev!r}")

    def sasl(self, step: object) -> bytes:
        if isinstance(step, Challenge):
            return self.conn.send_challenge(step.data)
        if isinstance(step, Credentials):
            return self.login(step.password)
        return self.conn.send(Pop3Reply(False, "failed", code="AUTH"))

    def login(self, password: str) -> bytes:
        if password == "pw":
            return self.conn.open_maildrop(ENTRIES)
        return self.conn.send(Pop3Reply(False, "bad", code="AUTH"))


def run(chunks: list[bytes], limits: Pop3Limits, tls: bool) -> list[tuple[str, bytes]]:
    """Feed chunks then EOF, answering events; return (event repr, bytes written)."""
    conn = Pop3Connection(limits, tls_active=tls)
    shell = AutoShell(conn)
    transcript: list[tuple[str, bytes]] = []
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        while True:
            ev = conn.next_event()
            assert ev is not PAUSED, "the auto shell always answers"
            if ev is NEED_DATA:
                break
            assert not isinstance(ev, Sentinel)
            out = shell.answer(ev)
            if isinstance(ev, Respond):
                assert out.endswith(b"\r\n")
                assert out.startswith((b"+OK", b"-ERR"))
            transcript.append((repr(ev), out))
            if isinstance(ev, ConnectionClosed):
                return transcript
    raise AssertionError("EOF must end in ConnectionClosed")


TOKENS = st.sampled_from(
    [
        b"USER u",
        b"PASS pw",
        b"USER u\r\nPASS pw",
        b"USER u\r\nPASS pw",
        b"AUTH PLAIN\r\nAHUAcHc=",
        b"AUTH LOGIN\r\n*",
        b"PASS x",
        b"AUTH PLAIN",
        b"AUTH LOGIN",
        b"AUTH PLAIN AHUAcHc=",
        b"AUTH",
        b"dQ==",
        b"cHc=",
        b"AHUAcHc=",
        b"*",
        b"=",
        b"STLS",
        b"CAPA",
        b"STAT",
        b"LIST",
        b"LIST 2",
        b"UIDL 1",
        b"RETR 1",
        b"TOP 2 0",
        b"DELE 1",
        b"DELE 9",
        b"RSET",
        b"NOOP",
        b"QUIT",
        b"APOP a b",
        b" ",
        b"\r\n",
        b"\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"\x00",
        b"x" * 50,
    ]
)
ENDINGS = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b"", b"\r\n\r\n"])
LINES = st.tuples(TOKENS | st.binary(max_size=8), ENDINGS).map(b"".join)
STREAMS = st.lists(LINES, max_size=30).map(b"".join)


@settings(max_examples=250, deadline=None)
@given(
    prelude=st.sampled_from([b"", b"USER u\r\nPASS pw\r\n", b"AUTH PLAIN AHUAcHc=\r\n"]),
    body=STREAMS,
    tls=st.booleans(),
    plaintext=st.booleans(),
    stls=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_fuzz_connection(
    prelude: bytes, body: bytes, tls: bool, plaintext: bool, stls: bool, cuts: list[int]
) -> None:
    """Invariant: any byte stream yields only events (self-answered ones as +OK/-ERR
    Respond lines) and never an unexpected exception; and feeding it whole, byte by
    byte, or cut at arbitrary points produces the same events and the same output."""
    data = prelude + body
    limits = Pop3Limits(
        max_line=40,
        max_auth_line=60,
        max_bad_commands=12,
        allow_plaintext_auth=plaintext,
        stls_available=stls,
    )
    whole = run([data], limits, tls)
    assert run([data[i : i + 1] for i in range(len(data))], limits, tls) == whole
    points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
    assert run([data[a:b] for a, b in itertools.pairwise(points)], limits, tls) == whole


@settings(max_examples=300, deadline=None)
@given(line=st.binary(max_size=60) | TOKENS)
def test_fuzz_parse_command(line: bytes) -> None:
    """Invariant: the parser returns a command or a BadCommand for any bytes, and a
    BadCommand's text is a single printable line."""
    result = parse_command(line)
    if isinstance(result, BadCommand):
        assert result.text.isprintable()
        assert Pop3Reply(False, result.text).to_bytes().count(b"\r\n") == 1
