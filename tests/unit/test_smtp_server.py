"""ServerConnection: state table walk, pipelining, STARTTLS, AUTH, LMTP, limits, misuse."""

from __future__ import annotations

import ast
import base64
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path as FsPath

import pytest

import correo.smtp
from correo.smtp import (
    LEGAL,
    NEED_DATA,
    Auth,
    AuthCancel,
    AuthResponse,
    Bdat,
    Command,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataEnd,
    Event,
    Expn,
    Helo,
    Help,
    LocalProtocolError,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConnection,
    SmtpLimits,
    StartTls,
    State,
    Vrfy,
    ehlo_reply,
    greeting,
    parse_command,
)
from correo.smtp.server import COMMAND_STATES

OK = Reply(250, "2.0.0", "OK")
GO = Reply(354, None, "Go ahead")
BYE = Reply(221, "2.0.0", "Bye")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
CHALLENGE = Reply(334, None, "")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
Policy = Callable[[ServerConnection, Event], list[Reply]]


def positive(conn: ServerConnection, ev: Event) -> list[Reply]:
    """The reply that moves each event forward."""
    match ev:
        case CommandError(reply=r):
            return [r]
        case Data():
            return [GO]
        case Quit():
            return [BYE]
        case StartTls():
            return [READY_TLS]
        case Auth() | AuthResponse():
            return [CHALLENGE]
        case AuthCancel():
            return [Reply(501, "5.0.0", "Authentication cancelled")]
        case _:
            return [OK] * conn.replies_expected


def pump(
    conn: ServerConnection, data: Iterable[bytes], policy: Policy = positive, eof: bool = False
) -> tuple[list[Event], bytes]:
    events: list[Event] = []
    out = b""
    for chunk in [*[d for d in data if d], b""] if eof else [d for d in data if d]:
        conn.receive_data(chunk)
        while (ev := conn.next_event()) is not NEED_DATA:
            events.append(ev)
            if isinstance(ev, ConnectionClosed):
                return events, out
            if not isinstance(ev, DataChunk):
                out += conn.send_many(policy(conn, ev))
            if conn.state is State.TLS_PENDING:
                return events, out
    return events, out


# -- the state table -------------------------------------------------------------------

SAMPLES: dict[type[Command], bytes] = {
    Helo: b"EHLO client.example",
    StartTls: b"STARTTLS",
    Auth: b"AUTH PLAIN",
    MailFrom: b"MAIL FROM:<a@b>",
    RcptTo: b"RCPT TO:<c@d>",
    Data: b"DATA",
    Bdat: b"BDAT 0",
    Rset: b"RSET",
    Noop: b"NOOP",
    Quit: b"QUIT",
    Vrfy: b"VRFY x",
    Expn: b"EXPN x",
    Help: b"HELP",
}
SETUP: dict[State, bytes] = {
    State.INITIAL: b"",
    State.GREETED: b"EHLO c\r\n",
    State.MAIL: b"EHLO c\r\nMAIL FROM:<a@b>\r\n",
    State.RCPT: b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
    State.CHUNKING: b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1\r\nx",
}
# State after the event is answered positively (see ``positive``).
AFTER: dict[type[Command], State | None] = {
    Helo: State.GREETED,
    StartTls: State.TLS_PENDING,
    Auth: State.AUTH,
    MailFrom: State.MAIL,
    RcptTo: State.RCPT,
    Data: State.DATA,
    Bdat: State.CHUNKING,
    Rset: None,  # GREETED, or INITIAL if never greeted
    Noop: None,  # unchanged
    Quit: State.CLOSED,
    Vrfy: None,
    Expn: None,
    Help: None,
}


def state_of(conn: ServerConnection) -> State:
    """Read the state through a call, so mypy does not keep an earlier narrowing."""
    return conn.state


def in_state(state: State) -> ServerConnection:
    conn = ServerConnection()
    pump(conn, [SETUP[state]])
    assert conn.state is state
    return conn


def test_table_is_complete() -> None:
    assert set(LEGAL) == {(s, c) for s in COMMAND_STATES for c in SAMPLES}
    assert set(SAMPLES) == set(AFTER)


@pytest.mark.parametrize("state", COMMAND_STATES)
@pytest.mark.parametrize("cls", list(SAMPLES))
def test_walk_every_state_and_command(state: State, cls: type[Command]) -> None:
    conn = in_state(state)
    conn.receive_data(SAMPLES[cls] + b"\r\n")
    ev = conn.next_event()
    verdict = LEGAL[(state, cls)]
    if verdict is not None:
        assert ev == CommandError(verdict)
        conn.send(verdict)
        assert conn.state is state
        return
    if cls is Bdat:
        assert ev == DataEnd(None, last=False, bdat=True)
    else:
        assert ev == parse_command(SAMPLES[cls])
    assert isinstance(ev, Event)
    conn.send_many(positive(conn, ev))
    expected = AFTER[cls]
    if expected is None:
        expected = (
            state
            if cls is not Rset
            else (State.INITIAL if state is State.INITIAL else State.GREETED)
        )
    assert conn.state is expected


@pytest.mark.parametrize("state", COMMAND_STATES)
@pytest.mark.parametrize("cls", list(SAMPLES))
def test_walk_negative_replies_keep_state(state: State, cls: type[Command]) -> None:
    """A 5xx answer to any legal command leaves the session where it was."""
    if LEGAL[(state, cls)] is not None or cls in (Bdat, Helo, Rset):
        return  # Bdat's DataEnd always moves on; Helo/Rset need a 5xx test of their own
    conn = in_state(state)
    conn.receive_data(SAMPLES[cls] + b"\r\n")
    conn.next_event()
    conn.send(Reply(550, "5.7.1", "No"))
    assert conn.state is state


def test_non_command_states() -> None:
    # DATA: a command-looking line is message text.
    conn = in_state(State.RCPT)
    conn.receive_data(b"DATA\r\n")
    assert conn.next_event() == Data()
    conn.send(GO)
    conn.receive_data(b"QUIT\r\n")
    assert conn.next_event() == DataChunk(b"QUIT\r\n")
    # AUTH: a command-looking line is a SASL response (and here invalid base64).
    conn = in_state(State.GREETED)
    conn.receive_data(b"AUTH LOGIN\r\nNOOP x\r\n")
    assert conn.next_event() == Auth("LOGIN")
    conn.send(CHALLENGE)
    assert state_of(conn) is State.AUTH
    assert conn.next_event() == CommandError(Reply(501, "5.5.2", "Invalid base64 data"))
    conn.send(Reply(501, "5.5.2", "Invalid base64 data"))
    assert state_of(conn) is State.GREETED
    # TLS_PENDING: the shell must finish the handshake first.
    conn = in_state(State.GREETED)
    conn.receive_data(b"STARTTLS\r\n")
    conn.next_event()
    conn.send(READY_TLS)
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    # CLOSED: only ConnectionClosed, data ignored.
    conn = in_state(State.GREETED)
    conn.receive_data(b"QUIT\r\n")
    conn.next_event()
    conn.send(BYE)
    conn.receive_data(b"NOOP\r\n")
    assert conn.next_event() == ConnectionClosed()
    assert conn.next_event() == ConnectionClosed()


def test_helo_resets_transaction() -> None:
    conn = in_state(State.RCPT)
    assert conn.rcpt_count == 1
    pump(conn, [b"HELO again\r\n"])
    assert conn.state is State.GREETED
    assert conn.rcpt_count == 0


def test_failed_helo_and_rset_keep_state() -> None:
    conn = in_state(State.RCPT)
    conn.receive_data(b"EHLO x\r\nRSET\r\n")
    conn.next_event()
    conn.send(Reply(550, "5.7.1", "Go away"))
    assert conn.state is State.RCPT
    conn.next_event()
    conn.send(Reply(451, "4.3.0", "Try again"))
    assert conn.state is State.RCPT


# -- pipelining (RFC 2920) ----------------------------------------------------------------


def test_pipelined_burst() -> None:
    rcpts = b"".join(b"RCPT TO:<u%d@x>\r\n" % i for i in range(200))
    wire = b"EHLO c\r\nMAIL FROM:<a@b>\r\n" + rcpts + b"DATA\r\nhi\r\n.\r\nQUIT\r\n"
    events, out = pump(ServerConnection(), [wire])
    assert len([ev for ev in events if isinstance(ev, RcptTo)]) == 200
    assert events[-5:] == [Data(), DataChunk(b"hi\r\n"), DataEnd(None), Quit(), ConnectionClosed()]
    assert out == OK.to_bytes() * 202 + GO.to_bytes() + OK.to_bytes() + BYE.to_bytes()


def test_one_event_at_a_time() -> None:
    conn = ServerConnection()
    conn.receive_data(b"NOOP\r\nNOOP\r\n")
    assert conn.next_event() == Noop()
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    conn.send(OK)
    assert conn.next_event() == Noop()


# -- STARTTLS (RFC 3207) ----------------------------------------------------------------


def test_starttls_discards_buffered_plaintext() -> None:
    conn = ServerConnection()
    wire = b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\nRCPT TO:<v@x>\r\n"
    events, _ = pump(conn, [wire])
    assert events == [Helo("c", True), StartTls()]
    assert state_of(conn) is State.TLS_PENDING
    conn.receive_data(b"more plaintext\r\n")
    conn.tls_started()
    assert conn.tls_active and state_of(conn) is State.INITIAL
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"MAIL FROM:<a@b>\r\n")
    assert conn.next_event() == CommandError(Reply(503, "5.5.1", "Error: send HELO/EHLO first"))
    conn.send(Reply(503, "5.5.1", "Error: send HELO/EHLO first"))
    events, _ = pump(conn, [b"EHLO c\r\nSTARTTLS\r\n"])
    assert events[-1] == CommandError(Reply(503, "5.5.1", "Error: TLS already active"))


def test_starttls_refused_keeps_plaintext_session() -> None:
    conn = ServerConnection()
    conn.receive_data(b"EHLO c\r\nSTARTTLS\r\nNOOP\r\n")
    conn.next_event()
    conn.send(OK)
    conn.next_event()
    conn.send(Reply(454, "4.7.0", "TLS not available"))
    assert conn.state is State.GREETED
    assert conn.next_event() == Noop()
    with pytest.raises(LocalProtocolError):
        ServerConnection().tls_started()


def test_starttls_forgets_authentication() -> None:
    conn = ServerConnection()
    conn.receive_data(b"EHLO c\r\nAUTH PLAIN AHUAcA==\r\n")
    conn.next_event()
    conn.send(OK)
    assert conn.next_event() == Auth("PLAIN", b"\x00u\x00p")
    conn.send(AUTH_OK)
    assert conn.authenticated
    pump(conn, [b"STARTTLS\r\n"])
    conn.tls_started()
    assert not conn.authenticated


def test_implicit_tls() -> None:
    conn = ServerConnection()
    conn.tls_active = True
    events, _ = pump(conn, [b"EHLO c\r\nSTARTTLS\r\n"])
    assert events[-1] == CommandError(Reply(503, "5.5.1", "Error: TLS already active"))


# -- AUTH (RFC 4954) ----------------------------------------------------------------------


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_login_exchange() -> None:
    conn = in_state(State.GREETED)
    conn.receive_data(b"AUTH LOGIN\r\n" + b64(b"user") + b"\r\n" + b64(b"pass") + b"\r\nNOOP\r\n")
    assert conn.next_event() == Auth("LOGIN", None)
    conn.send(Reply(334, None, "VXNlcm5hbWU6"))
    assert conn.next_event() == AuthResponse(b"user")
    conn.send(Reply(334, None, "UGFzc3dvcmQ6"))
    assert conn.next_event() == AuthResponse(b"pass")
    assert conn.send(AUTH_OK) == b"235 2.7.0 Authentication successful\r\n"
    assert conn.authenticated and conn.state is State.GREETED
    assert conn.next_event() == Noop()
    conn.send(OK)
    conn.receive_data(b"AUTH PLAIN\r\n")
    assert conn.next_event() == CommandError(Reply(503, "5.5.1", "Error: already authenticated"))


def test_auth_empty_line_and_cancel() -> None:
    conn = in_state(State.GREETED)
    conn.receive_data(b"AUTH PLAIN\r\n\r\nAUTH PLAIN\r\n*\r\n")
    conn.next_event()
    conn.send(CHALLENGE)
    assert conn.next_event() == AuthResponse(b"")
    conn.send(Reply(535, "5.7.8", "Authentication credentials invalid"))
    assert conn.state is State.GREETED and not conn.authenticated
    conn.next_event()
    conn.send(CHALLENGE)
    assert conn.next_event() == AuthCancel()
    conn.send(Reply(501, "5.0.0", "Authentication cancelled"))
    assert conn.state is State.GREETED


def test_auth_lines_may_exceed_command_limit() -> None:
    limits = SmtpLimits(max_command_line=512, max_auth_line=4096)
    blob = b"x" * 2000
    conn = ServerConnection(limits)
    events, _ = pump(conn, [b"EHLO c\r\nAUTH PLAIN " + b64(blob) + b"\r\n" + b64(blob) + b"\r\n"])
    assert events[1:] == [Auth("PLAIN", blob), AuthResponse(blob)]
    # ... but not the auth limit.
    conn = ServerConnection(limits)
    events, _ = pump(conn, [b"EHLO c\r\nAUTH PLAIN\r\n" + b"A" * 5000 + b"\r\nNOOP\r\n"])
    too_long = Reply(500, "5.5.6", "Authentication exchange line is too long")
    assert events[1:] == [Auth("PLAIN"), CommandError(too_long), Noop()]
    # ... and other verbs keep the command limit.
    conn = ServerConnection(limits)
    events, _ = pump(conn, [b"NOOP " + b"x" * 600 + b"\r\n"])
    assert events == [CommandError(Reply(500, "5.5.2", "Line too long"))]


def test_auth_in_transaction_refused() -> None:
    conn = in_state(State.MAIL)
    conn.receive_data(b"AUTH PLAIN\r\n")
    assert conn.next_event() == CommandError(
        Reply(503, "5.5.1", "Error: MAIL transaction in progress")
    )


# -- LMTP (RFC 2033) ------------------------------------------------------------------------


def test_lmtp_one_reply_per_recipient() -> None:
    conn = ServerConnection(lmtp=True)
    wire = b"LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n"
    events, _ = pump(conn, [wire])
    assert events[0] == Helo("c", True)
    conn.receive_data(b"hi\r\n.\r\nNOOP\r\n")
    assert conn.next_event() == DataChunk(b"hi\r\n")
    assert conn.next_event() == DataEnd(None)
    assert conn.replies_expected == 2
    assert conn.send(OK) == OK.to_bytes()
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    assert conn.replies_expected == 1
    conn.send(Reply(452, "4.2.2", "Mailbox full"))
    assert conn.state is State.GREETED
    assert conn.next_event() == Noop()


def test_lmtp_send_many() -> None:
    conn = ServerConnection(lmtp=True)
    pump(conn, [b"LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\n"])
    conn.receive_data(b"BDAT 2 LAST\r\nhi")
    assert conn.next_event() == DataChunk(b"hi")
    assert conn.next_event() == DataEnd(None, last=True, bdat=True)
    assert conn.send_many([OK, OK]) == OK.to_bytes() * 2
    assert conn.state is State.GREETED
    events, _ = pump(ServerConnection(lmtp=True), [b"EHLO c\r\n"])
    assert events == [CommandError(Reply(500, "5.5.1", "Command unrecognized"))]


# -- command lines ----------------------------------------------------------------------


BARE_CMD = Reply(500, "5.5.2", "Syntax error: bare CR or LF in command")


@pytest.mark.parametrize(
    ("wire", "first"),
    [
        (b"NOOP\nNOOP\r\n", CommandError(BARE_CMD)),
        (b"NO\rOP\r\nNOOP\r\n", CommandError(BARE_CMD)),
        (b"NOOP\r\r\nNOOP\r\n", CommandError(BARE_CMD)),
        (b"\r\nNOOP\r\n", CommandError(Reply(500, "5.5.2", "Error: bad syntax"))),
    ],
)
def test_bare_line_ends_in_commands(wire: bytes, first: Event) -> None:
    events, _ = pump(ServerConnection(), [wire])
    assert events == [first, Noop()]


@pytest.mark.parametrize("size", [2046, 2047, 5000])
def test_line_length_limit(size: int) -> None:
    line = b"NOOP " + b"x" * (size - 5) + b"\r\n"  # len(line) == size + 2
    wire = line + b"QUIT\r\n"
    expected: list[Event] = [
        Noop() if size + 2 <= 2048 else CommandError(Reply(500, "5.5.2", "Line too long")),
        Quit(),
        ConnectionClosed(),
    ]
    assert pump(ServerConnection(), [wire])[0] == expected
    pieces = [wire[i : i + 100] for i in range(0, len(wire), 100)]
    assert pump(ServerConnection(), pieces)[0] == expected


def test_overlong_line_is_not_buffered() -> None:
    conn = ServerConnection()
    conn.receive_data(b"NOOP ")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"x" * 65536)
    assert conn.next_event() == CommandError(Reply(500, "5.5.2", "Line too long"))
    conn.send(Reply(500, "5.5.2", "Line too long"))
    for _ in range(100):
        conn.receive_data(b"y" * 65536)
        assert conn.next_event() is NEED_DATA
        assert len(conn._in) == 0
    conn.receive_data(b"tail\r\nNOOP\r\n")
    assert conn.next_event() == Noop()


def test_too_many_errors_closes() -> None:
    limits = SmtpLimits(max_unknown_commands=3)
    events, out = pump(ServerConnection(limits), [b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n"])
    assert events[-2:] == [
        CommandError(Reply(421, "4.7.0", "Too many errors"), close=True),
        ConnectionClosed(),
    ]
    assert out.endswith(b"421 4.7.0 Too many errors\r\n")
    # Only errors in a row count.
    events, _ = pump(ServerConnection(limits), [b"FOO\r\nBAR\r\nNOOP\r\nBAZ\r\nQUX\r\nNOOP\r\n"])
    assert not any(isinstance(ev, CommandError) and ev.close for ev in events)


def test_eof_processes_buffered_lines_and_drops_partial() -> None:
    events, _ = pump(ServerConnection(), [b"NOOP\r\nQUIT\r\nNOO"], eof=True)
    assert events == [Noop(), Quit(), ConnectionClosed()]


# -- misuse by the shell ------------------------------------------------------------------


def test_local_protocol_errors() -> None:
    conn = ServerConnection()
    assert conn.send(greeting("mx.example")) == b"220 mx.example ESMTP\r\n"
    with pytest.raises(LocalProtocolError):
        conn.send(OK)
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"late")
    with pytest.raises(ValueError):
        SmtpLimits(max_command_line=1)
    with pytest.raises(ValueError):
        SmtpLimits(max_message_size=-1)


def test_unsolicited_421_closes() -> None:
    conn = in_state(State.GREETED)
    assert conn.send(Reply(421, "4.4.2", "Timeout")) == b"421 4.4.2 Timeout\r\n"
    assert conn.state is State.CLOSED
    assert conn.next_event() == ConnectionClosed()


# -- a whole conversation -----------------------------------------------------------------


class FakePolicy:
    """Accept everything; answer the way a real server would."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self._parts: list[bytes] = []

    def __call__(self, conn: ServerConnection, ev: Event) -> list[Reply]:
        match ev:
            case Helo(extended=True):
                return [ehlo_reply("mx.test", ev.name, ["PIPELINING", "CHUNKING", "8BITMIME"])]
            case Helo():
                return [Reply(250, None, "mx.test")]
            case MailFrom() | RcptTo():
                return [Reply(250, "2.1.0" if isinstance(ev, MailFrom) else "2.1.5", "OK")]
            case Data():
                return [Reply(354, None, "End data with <CR><LF>.<CR><LF>")]
            case DataEnd(error=Reply() as error):
                return [error]
            case DataEnd(last=False):
                return [Reply(250, "2.0.0", "octets received")]
            case DataEnd():
                self.messages.append(b"".join(self._parts))
                self._parts.clear()
                return [Reply(250, "2.0.0", "Queued")]
            case Quit():
                return [Reply(221, "2.0.0", "Bye")]
            case CommandError(reply=r):
                return [r]
            case _:
                return [Reply(250, "2.0.0", "OK")]

    def chunk(self, ev: DataChunk) -> None:
        self._parts.append(ev.data)


def converse(client_lines: list[bytes]) -> tuple[bytes, FakePolicy]:
    conn = ServerConnection(SmtpLimits(max_message_size=1000))
    policy = FakePolicy()
    out = conn.send(greeting("mx.test"))
    for data in [*client_lines, b""]:
        conn.receive_data(data)
        while (ev := conn.next_event()) is not NEED_DATA:
            if isinstance(ev, ConnectionClosed):
                return out, policy
            if isinstance(ev, DataChunk):
                policy.chunk(ev)
            else:
                out += conn.send_many(policy(conn, ev))
    return out, policy


def test_full_dialogue() -> None:
    out, policy = converse(
        [
            b"EHLO client.test\r\n",
            b"MAIL FROM:<alice@client.test> BODY=8BITMIME\r\nRCPT TO:<bob@mx.test>\r\nDATA\r\n",
            b"Subject: hi\r\n\r\n..leading dot\r\n.\r\n",
            b"MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nBDAT 6\r\nchunk1BDAT 6 LAST\r\nchunk2",
            b"MAIL FROM:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n" + b"x" * 2000 + b"\r\n.\r\n",
            b"RCPT TO:<z@y>\r\nBOGUS\r\nQUIT\r\n",
        ]
    )
    assert out.decode().split("\r\n") == [
        "220 mx.test ESMTP",
        "250-mx.test greets client.test",
        "250-PIPELINING",
        "250-CHUNKING",
        "250 8BITMIME",
        "250 2.1.0 OK",
        "250 2.1.5 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Queued",
        "250 2.1.0 OK",
        "250 2.1.5 OK",
        "250 2.0.0 octets received",
        "250 2.0.0 Queued",
        "250 2.1.0 OK",
        "250 2.1.5 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "552 5.3.4 Message size exceeds fixed limit",
        "503 5.5.1 Error: need MAIL command",
        "500 5.5.1 Command unrecognized",
        "221 2.0.0 Bye",
        "",
    ]
    assert policy.messages == [b"Subject: hi\r\n\r\n.leading dot\r\n", b"chunk1chunk2"]


def test_twenty_megabytes_in_bounded_memory() -> None:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_=+!\r\n"
    piece = line * (65536 // len(line))
    pieces = 20 * 1024 * 1024 // len(piece)
    conn = ServerConnection()
    pump(conn, [b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"])
    total = 0
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(pieces):
            conn.receive_data(piece)
            while (ev := conn.next_event()) is not NEED_DATA:
                assert isinstance(ev, DataChunk)
                total += len(ev.data)
        conn.receive_data(b".\r\n")
        assert conn.next_event() == DataEnd(None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == pieces * len(piece)
    assert peak - base < 2 * 1024 * 1024


# -- purity ----------------------------------------------------------------------------

FORBIDDEN = {"asyncio", "socket", "ssl", "threading", "sqlite3", "os", "io", "selectors"}


def test_core_imports_nothing_effectful() -> None:
    package = FsPath(correo.smtp.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, (source.name, name)
                assert not name.startswith(("correo.store", "correo.server", "correo.config"))
