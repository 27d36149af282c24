"""Property tests for the IMAP core under hostile input."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correo.imap import (
    AppendChunk,
    AppendStart,
    Authenticate,
    AuthResponse,
    CommandEvent,
    ConnectionClosed,
    Event,
    Idle,
    ImapConnection,
    ImapLimits,
    Login,
    Select,
    Sentinel,
)
from correo.imap.commands import ParseOptions, parse_command
from correo.imap.errors import ParseError
from correo.imap.reader import find_literal_marker
from correo.imap.utf7 import decode_mutf7

LIMITS = ImapLimits(
    allow_plaintext_auth=True, max_line=256, max_literal=64, max_append=200, max_bad_commands=50
)

FRAGMENTS = [
    b"a1 ",
    b"NOOP",
    b"LOGIN u p",
    b"SELECT INBOX",
    b"IDLE",
    b"DONE",
    b"AUTHENTICATE PLAIN",
    b"APPEND INBOX ",
    b"(\\Seen) ",
    b"{3}",
    b"{3+}",
    b"~{2}",
    b"{999+}",
    b"{70}",
    b"abc",
    b"UID FETCH 1:* (FLAGS BODY.PEEK[1.HEADER]<0.9>)",
    b"SEARCH OR (SEEN) NOT 1:3 ",
    b"STORE 1 +FLAGS (\\Deleted)",
    b'LIST "" *',
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"*",
    b"(",
    b")",
    b'"',
    b"\x00",
    b"\xff",
    b"b2 ",
    b"=",
]
inputs = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join),
)


class AutoShell:
    """Answers every event the same way, so whole and byte-by-byte runs are comparable.

    Accepts LOGIN and SELECT, accepts every APPEND message, starts IDLE, and answers
    AUTHENTICATE with one empty challenge.
    """

    def __init__(self) -> None:
        self.conn = ImapConnection(LIMITS)

    def act(self, ev: Event) -> None:
        conn = self.conn
        match ev:
            case CommandEvent(_, Login()):
                conn.authenticated()
            case CommandEvent(_, Select()):
                conn.selected(read_only=False)
            case CommandEvent(_, Idle()):
                conn.idle_started()
            case CommandEvent(_, Authenticate()) | AuthResponse():
                conn.send_challenge(b"")
            case AppendStart():
                conn.append_accept()

    def run(self, pieces: list[bytes]) -> list[Event]:
        out: list[Event] = []
        for piece in [*pieces, b""]:
            self.conn.receive_data(piece)
            while True:
                ev = self.conn.next_event()
                if isinstance(ev, Sentinel):
                    break
                self.act(ev)
                if isinstance(ev, AppendChunk) and out and isinstance(out[-1], AppendChunk):
                    out[-1] = AppendChunk(out[-1].data + ev.data)  # coalesce
                else:
                    out.append(ev)
                if isinstance(ev, ConnectionClosed):
                    return out
        return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs)
def test_connection_never_raises_and_is_split_invariant(data: bytes) -> None:
    """Invariant: any input yields only events (never an exception), ends in
    ConnectionClosed at EOF, and feeding byte by byte gives the same events as
    feeding everything at once (adjacent AppendChunks coalesced)."""
    whole = AutoShell().run([data])
    single = AutoShell().run([data[i : i + 1] for i in range(len(data))])
    assert whole == single
    assert isinstance(whole[-1], ConnectionClosed)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS[:20]), max_size=12).map(b"".join), st.booleans())
def test_parser_raises_only_parse_error(line: bytes, utf8: bool) -> None:
    """Invariant: parse_command either returns a command or raises ParseError."""
    lines = [line.replace(b"\r", b"").replace(b"\n", b"")]
    literals: list[bytes] = []
    if find_literal_marker(lines[0]) is not None:
        lines.append(b"")
        literals.append(b"xyz")
    try:
        parse_command(lines, literals, options=ParseOptions(utf8=utf8))
    except ParseError:
        pass


@given(st.binary(max_size=40))
def test_mutf7_decode_only_value_error(data: bytes) -> None:
    """Invariant: strict decoding returns text or raises ValueError, nothing else."""
    try:
        decode_mutf7(data)
    except ValueError:
        pass
