"""The ManageSieve core under hostile input (RFC 5804): any bytes give events, never an
exception; how they are split does not change the events; and a command that arrives
a few octets at a time is parsed once, not once per arrival (a line of 8 KiB dripped
byte by byte once cost seconds of CPU)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import correo.managesieve.connection as connection
from correo.managesieve import (
    NEED_DATA,
    Authenticate,
    CheckScript,
    CommandError,
    ConnectionClosed,
    Logout,
    Response,
    SaslResponse,
    SieveLimits,
    SieveServerConnection,
    StartTls,
)

LIMITS = SieveLimits(max_line=200, max_literal=300, max_errors=8, max_skip=1000)

FRAGMENTS = [
    b"\r\n", b"\r", b"\n", b" ", b'"', b"\\", b"{", b"}", b"+", b"0", b"7",
    b"{3+}\r\n", b"{3}\r\n", b"{0+}\r\n", b"{99999999999+}\r\n", b"{2000+}\r\n",
    b"CAPABILITY", b"NOOP", b"LOGOUT", b"STARTTLS", b'AUTHENTICATE "PLAIN"',
    b' "AHUAcA=="', b'PUTSCRIPT "s" ', b'CHECKSCRIPT ', b'HAVESPACE "s" 10', b"LISTSCRIPTS",
    b'GETSCRIPT "a"', b'SETACTIVE ""', b'RENAMESCRIPT "a" "b"', b"UNAUTHENTICATE",
    b'"*"', b"keep;", b"\x00", b"\xff", b"\xc3\xa9", b"x" * 40,
]  # fmt: skip
inputs = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=6)), max_size=50).map(
        b"".join
    ),
)

Seen = object


def answer(conn: SieveServerConnection, ev: Seen) -> None:
    """A fixed shell: authenticates anyone (one challenge first), refuses STARTTLS and
    answers every other command OK, so whole and split runs are comparable."""
    match ev:
        case CommandError(response=response, close=False):
            conn.send(response)
        case Authenticate():
            conn.send_challenge(b"")
        case StartTls():
            conn.send(Response("NO", None, "not here"))
        case SaslResponse() | Logout() | _:
            conn.send(Response("OK"))


def run(pieces: list[bytes]) -> list[Seen]:
    conn = SieveServerConnection(LIMITS)
    events: list[Seen] = []
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA:
                break
            events.append(ev)
            if isinstance(ev, ConnectionClosed) or (isinstance(ev, CommandError) and ev.close):
                return events
            answer(conn, ev)
    return events


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(inputs, st.integers(1, 7))
def test_any_bytes_give_events_whatever_the_split(data: bytes, step: int) -> None:
    """Invariant: events only, ending in a close at EOF, and the same commands and the
    same end whether fed whole, byte by byte or ``step`` octets at a time.  Refusals may
    differ by one: a refused line whose too-big literal arrived with it ends in BYE
    alone, one whose literal came later got its NO first."""
    whole = run([data])
    assert isinstance(whole[-1], (ConnectionClosed, CommandError))
    for split in (
        run([data[i : i + 1] for i in range(len(data))]),
        run([data[i : i + step] for i in range(0, len(data), step)]),
    ):
        assert _commands(split) == _commands(whole)
        assert split[-1] == whole[-1]
        assert abs(len(split) - len(whole)) <= 1


def _commands(events: list[Seen]) -> list[Seen]:
    return [ev for ev in events if not isinstance(ev, CommandError)]


class _Counting:
    """Wraps a compiled pattern and counts the matches tried with it."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.calls = 0

    def match(self, data: bytes | bytearray, pos: int = 0) -> re.Match[bytes] | None:
        self.calls += 1
        return self.pattern.match(data, pos)


@pytest.mark.parametrize(
    ("head", "arg", "tail"),
    [
        (b"CHECKSCRIPT", b' "a"', b"\r\n"),  # quoted strings
        (b"CHECKSCRIPT", b" {1+}\r\na", b"\r\n"),  # literals
        (b"HAVESPACE", b" 12", b"\r\n"),  # numbers
    ],
)
def test_a_dripping_command_is_parsed_once(
    monkeypatch: pytest.MonkeyPatch, head: bytes, arg: bytes, tail: bytes
) -> None:
    """A command of 8 KiB fed one octet at a time costs a few matches per octet, not a
    re-parse of everything before it at each octet (quadratic: millions of matches)."""
    counters = {
        name: _Counting(getattr(connection, name)) for name in ("_QUOTED", "_LITERAL", "_NUMBER")
    }
    for name, counter in counters.items():
        monkeypatch.setattr(connection, name, counter)
    line = head + arg * (7800 // len(arg)) + tail
    conn = SieveServerConnection()
    events = []
    for i in range(len(line)):
        conn.receive_data(line[i : i + 1])
        ev = conn.next_event()
        if ev is not NEED_DATA:
            events.append(ev)
    assert len(events) == 1  # one command: refused (CHECKSCRIPT before login) as a whole
    assert isinstance(events[0], CommandError) and not events[0].close
    assert sum(c.calls for c in counters.values()) <= 2 * len(line)


def test_a_literal_after_many_arguments_arrives_in_small_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The octets of a big literal behind 1,800 arguments, 64 at a time: the arguments
    before it are not read again for every piece (quadratic: 14 s of CPU for 200 KB);
    the command is refused whole and the next one is read."""
    quoted = _Counting(connection._QUOTED)
    monkeypatch.setattr(connection, "_QUOTED", quoted)
    conn = SieveServerConnection()
    conn.receive_data(b'AUTHENTICATE "PLAIN" "eA=="\r\n')
    assert isinstance(conn.next_event(), Authenticate)
    conn.send(Response("OK"))
    script = b"keep;\r\n" * 40_000
    line = b"PUTSCRIPT" + b' "a"' * 1800 + b" {%d+}\r\n" % len(script) + script + b"\r\n"
    got = []
    for i in range(0, len(line), 64):
        conn.receive_data(line[i : i + 64])
        ev = conn.next_event()
        if ev is not NEED_DATA:
            got.append(ev)
    assert len(got) == 1 and isinstance(got[0], CommandError)  # PUTSCRIPT takes two
    assert quoted.calls <= 2 * 1800 + 200
    conn.send(got[0].response)
    conn.receive_data(b"CHECKSCRIPT {5+}\r\nkeep;\r\n")
    assert conn.next_event() == CheckScript(b"keep;")
