"""ImapConnection transcripts: framing, literals, limits, state table, STARTTLS, IDLE,
AUTHENTICATE, streamed MULTIAPPEND."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from correo.imap import (
    LEGAL,
    NEED_DATA,
    PAUSED,
    AppendAborted,
    AppendChunk,
    AppendDone,
    AppendEnd,
    AppendStart,
    AuthCancel,
    Authenticate,
    AuthResponse,
    CommandEvent,
    ConnectionClosed,
    Event,
    IdleDone,
    ImapConnection,
    ImapLimits,
    ImapState,
    LocalProtocolError,
    Login,
    Noop,
    Respond,
    Sentinel,
)

OPEN = ImapLimits(allow_plaintext_auth=True)


def drain(conn: ImapConnection, accept: bool = True) -> list[Event]:
    out: list[Event] = []
    while True:
        ev = conn.next_event()
        if isinstance(ev, Sentinel):
            return out
        out.append(ev)
        if isinstance(ev, AppendStart) and accept:
            conn.append_accept()
        if isinstance(ev, ConnectionClosed):
            return out


def feed(conn: ImapConnection, data: bytes, accept: bool = True) -> list[Event]:
    if data:  # b"" would mean EOF
        conn.receive_data(data)
    return drain(conn, accept)


def at_state(state: ImapState) -> ImapConnection:
    conn = ImapConnection(OPEN)
    if state is not ImapState.NOT_AUTHENTICATED:
        conn.authenticated()
    if state is ImapState.SELECTED:
        conn.selected(read_only=False)
    return conn


def responses(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Respond))


# ---- framing and literals -------------------------------------------------------

LITERAL_SCRIPT = b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\na2 NOOP\r\n"


def test_literal_login_and_continuation() -> None:
    conn = ImapConnection(OPEN)
    evs = feed(conn, LITERAL_SCRIPT)
    assert evs == [
        Respond(b"+ OK\r\n"),
        CommandEvent("a1", Login("alice", "secret")),
        CommandEvent("a2", Noop()),
    ]


@pytest.mark.parametrize("cut", range(len(LITERAL_SCRIPT) + 1))
def test_literal_split_everywhere(cut: int) -> None:
    conn = ImapConnection(OPEN)
    evs = feed(conn, LITERAL_SCRIPT[:cut]) + feed(conn, LITERAL_SCRIPT[cut:])
    assert [e for e in evs if not isinstance(e, Respond)] == [
        CommandEvent("a1", Login("alice", "secret")),
        CommandEvent("a2", Noop()),
    ]


def test_continuation_only_after_size_check() -> None:
    conn = ImapConnection(ImapLimits(allow_plaintext_auth=True, max_literal=100))
    evs = feed(conn, b"a1 LOGIN {101}\r\na2 NOOP\r\n")
    assert evs == [Respond(b"a1 BAD [TOOBIG] literal too big\r\n"), CommandEvent("a2", Noop())]


def test_literal_plus_over_limit_is_discarded_unbuffered() -> None:
    conn = ImapConnection(ImapLimits(allow_plaintext_auth=True, max_literal=100))
    evs = feed(conn, b"a1 LOGIN {5000+}\r\n")
    assert responses(evs) == b"a1 BAD [TOOBIG] literal too big\r\n"
    for _ in range(50):
        conn.receive_data(b"x" * 100)
        assert conn.next_event() is NEED_DATA
        assert len(conn._in) == 0  # nothing is kept
    # the rest of the command line, with another LITERAL+, is skipped too
    evs = feed(conn, b" {3+}\r\nabc\r\na2 NOOP\r\n")
    assert evs == [CommandEvent("a2", Noop())]


def test_literal8_outside_append_rejected() -> None:
    conn = ImapConnection(OPEN)
    evs = feed(conn, b"a1 LOGIN ~{3+}\r\nabc x\r\na2 NOOP\r\n")
    assert responses(evs).startswith(b"a1 BAD")
    assert evs[-1] == CommandEvent("a2", Noop())


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"a1 NOOP\n", b"a1 BAD [PARSE] bare LF: lines end with CRLF\r\n"),
        (b"a1 NO\rOP\r\n", b"a1 BAD [PARSE] bare CR or NUL in command\r\n"),
        (b"a1 NOOP\x00\r\n", b"a1 BAD [PARSE] bare CR or NUL in command\r\n"),
        (b"\r\n", b"* BAD [CLIENTBUG] invalid tag\r\n"),
        (b"+x NOOP\r\n", b"* BAD [CLIENTBUG] invalid tag\r\n"),
        (b"a1 FETCH 1 FLAGS\r\n", b"a1 BAD [CLIENTBUG] FETCH not allowed in this state\r\n"),
        (b"a1 XYZZY\r\n", b"a1 BAD [CLIENTBUG] unknown command\r\n"),
    ],
)
def test_bad_lines(data: bytes, reply: bytes) -> None:
    conn = ImapConnection(OPEN)
    evs = feed(conn, data + b"ok NOOP\r\n")
    assert evs == [Respond(reply), CommandEvent("ok", Noop())]


def test_line_too_long_resyncs() -> None:
    conn = ImapConnection(ImapLimits(max_line=100))
    evs = feed(conn, b"a1 NOOP " + b"x" * 200)
    assert responses(evs) == b"a1 BAD [TOOBIG] line too long\r\n"
    evs = feed(conn, b"y" * 500 + b" {4+}\r\nab\r\n\r\na2 NOOP\r\n")
    assert evs == [CommandEvent("a2", Noop())]


def test_too_many_bad_commands_closes() -> None:
    conn = ImapConnection(ImapLimits(max_bad_commands=3))
    evs = feed(conn, b"a x\r\nb y\r\nc z\r\nd NOOP\r\n")
    data = responses(evs)
    assert data.count(b"BAD") == 3 and data.endswith(b"* BYE Too many invalid commands\r\n")
    assert isinstance(evs[-1], ConnectionClosed)


def test_good_command_resets_bad_counter() -> None:
    conn = ImapConnection(ImapLimits(max_bad_commands=2))
    evs = feed(conn, b"a x\r\nb NOOP\r\nc y\r\nd NOOP\r\n")
    assert not any(isinstance(e, ConnectionClosed) for e in evs)


def test_eof_closes() -> None:
    conn = ImapConnection()
    conn.receive_data(b"a1 NO")
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()


def test_pipelined_commands_see_state_changes() -> None:
    conn = ImapConnection(OPEN)
    conn.receive_data(b"a LOGIN u p\r\nb SELECT INBOX\r\n")
    ev = conn.next_event()
    assert isinstance(ev, CommandEvent) and isinstance(ev.command, Login)
    conn.authenticated()
    ev = conn.next_event()
    assert isinstance(ev, CommandEvent) and ev.tag == "b"


# ---- state table ---------------------------------------------------------------------

SAMPLE_ARGS = {
    "AUTHENTICATE": b" PLAIN",
    "LOGIN": b" u p",
    "ENABLE": b" CONDSTORE",
    "SELECT": b" INBOX",
    "EXAMINE": b" INBOX",
    "CREATE": b" x",
    "DELETE": b" x",
    "RENAME": b" x y",
    "SUBSCRIBE": b" x",
    "UNSUBSCRIBE": b" x",
    "LIST": b' "" *',
    "LSUB": b' "" *',
    "STATUS": b" INBOX (MESSAGES)",
    "APPEND": b" INBOX {1+}\r\nx",
    "REPLACE": b" 1 INBOX {1+}\r\nx",
    "UID REPLACE": b" 1 INBOX {1+}\r\nx",
    "UID EXPUNGE": b" 1",
    "SEARCH": b" ALL",
    "UID SEARCH": b" ALL",
    "SORT": b" (DATE) UTF-8 ALL",
    "UID SORT": b" (DATE) UTF-8 ALL",
    "THREAD": b" REFERENCES UTF-8 ALL",
    "UID THREAD": b" REFERENCES UTF-8 ALL",
    "FETCH": b" 1 FLAGS",
    "UID FETCH": b" 1 FLAGS",
    "STORE": b" 1 +FLAGS (\\Seen)",
    "UID STORE": b" 1 +FLAGS (\\Seen)",
    "COPY": b" 1 x",
    "UID COPY": b" 1 x",
    "MOVE": b" 1 x",
    "UID MOVE": b" 1 x",
    "ID": b" NIL",
    "COMPRESS": b" DEFLATE",
    "GETQUOTA": b' ""',
    "GETQUOTAROOT": b" INBOX",
    "SETQUOTA": b' "" (STORAGE 1)',
    "SETACL": b" INBOX bob lr",
    "DELETEACL": b" INBOX bob",
    "GETACL": b" INBOX",
    "LISTRIGHTS": b" INBOX bob",
    "MYRIGHTS": b" INBOX",
    "NOTIFY": b" NONE",
    "GENURLAUTH": b' "imap://a@b/INBOX/;UID=1;URLAUTH=authuser" INTERNAL',
    "RESETKEY": b"",
    "URLFETCH": b' "imap://a@b/INBOX/;UID=1"',
    "CANCELUPDATE": b' "t1"',
    "GETMETADATA": b' "" /private/comment',
    "SETMETADATA": b" INBOX (/private/comment NIL)",
    "ESEARCH": b" ALL",
}


@pytest.mark.parametrize("state", [s for s in ImapState if s is not ImapState.LOGOUT])
@pytest.mark.parametrize("name", sorted(LEGAL))
def test_state_table_walk(state: ImapState, name: str) -> None:
    conn = at_state(state)
    evs = feed(conn, b"t " + name.encode() + SAMPLE_ARGS.get(name, b"") + b"\r\n")
    if state in LEGAL[name]:
        assert evs, name
        first = evs[0]
        if name in ("APPEND", "REPLACE", "UID REPLACE"):
            assert isinstance(first, AppendStart)
            assert isinstance(evs[-1], AppendDone)
        else:
            assert isinstance(first, CommandEvent), (name, first)
    else:
        assert evs == [
            Respond(b"t BAD [CLIENTBUG] " + name.encode() + b" not allowed in this state\r\n")
        ]


def test_logout_state_closes() -> None:
    conn = ImapConnection()
    conn.logout()
    assert conn.state is ImapState.LOGOUT
    conn.receive_data(b"a NOOP\r\n")
    assert conn.next_event() == ConnectionClosed()


def test_plaintext_login_refused_without_tls() -> None:
    conn = ImapConnection()
    evs = feed(conn, b"a LOGIN u p\r\nb AUTHENTICATE PLAIN\r\n")
    assert evs == [
        Respond(b"a NO [PRIVACYREQUIRED] authentication needs TLS\r\n"),
        Respond(b"b NO [PRIVACYREQUIRED] authentication needs TLS\r\n"),
    ]


# ---- STARTTLS / COMPRESS --------------------------------------------------------------


def test_starttls_discards_pipelined_plaintext() -> None:
    conn = ImapConnection()
    conn.receive_data(b"a STARTTLS\r\nb LOGIN evil injected\r\n")
    ev = conn.next_event()
    assert isinstance(ev, CommandEvent) and ev.tag == "a"
    conn.tls_started()
    assert conn.tls_active
    assert conn.next_event() is NEED_DATA
    evs = feed(conn, b"c LOGIN u p\r\nd STARTTLS\r\n")
    assert evs[0] == CommandEvent("c", Login("u", "p"))
    assert evs[1] == Respond(b"d BAD [CLIENTBUG] TLS already active\r\n")


def test_tls_started_out_of_turn() -> None:
    conn = ImapConnection()
    with pytest.raises(LocalProtocolError):
        conn.tls_started()


def test_compression_returns_leftover() -> None:
    conn = at_state(ImapState.AUTHENTICATED)
    conn.receive_data(b"a COMPRESS DEFLATE\r\n\x78\x9c")
    assert isinstance(conn.next_event(), CommandEvent)
    assert conn.compression_started() == b"\x78\x9c"
    assert conn.compression_active
    evs = feed(conn, b"b COMPRESS DEFLATE\r\n")
    assert evs == [Respond(b"b NO [COMPRESSIONACTIVE] already compressing\r\n")]


# ---- IDLE ----------------------------------------------------------------------------


def test_idle_done() -> None:
    conn = at_state(ImapState.SELECTED)
    evs = feed(conn, b"i1 IDLE\r\n")
    assert evs == [CommandEvent("i1", evs[0].command)]  # type: ignore[union-attr]
    assert conn.idle_started() == b"+ idling\r\n"
    assert feed(conn, b"DO") == []
    assert feed(conn, b"ne\r\na NOOP\r\n") == [IdleDone("i1"), CommandEvent("a", Noop())]


def test_idle_garbage_ends_idle() -> None:
    conn = at_state(ImapState.SELECTED)
    feed(conn, b"i1 IDLE\r\n")
    conn.idle_started()
    evs = feed(conn, b"a NOOP\r\nb NOOP\r\n")
    assert evs == [
        IdleDone("i1", b"i1 BAD [CLIENTBUG] expected DONE\r\n"),
        CommandEvent("b", Noop()),
    ]


# ---- AUTHENTICATE ---------------------------------------------------------------------


def test_authenticate_sasl_ir_and_challenges() -> None:
    conn = ImapConnection(OPEN)
    evs = feed(conn, b"a AUTHENTICATE PLAIN AHUAcA==\r\n")
    assert evs == [CommandEvent("a", Authenticate("PLAIN", b"\x00u\x00p"))]
    conn.authenticated()
    conn2 = ImapConnection(OPEN)
    assert feed(conn2, b"b AUTHENTICATE LOGIN\r\n") == [CommandEvent("b", Authenticate("LOGIN"))]
    assert conn2.send_challenge(b"Username:") == b"+ VXNlcm5hbWU6\r\n"
    assert feed(conn2, b"dXNlcg==\r\n") == [AuthResponse(b"user")]
    conn2.send_challenge(b"Password:")
    assert feed(conn2, b"*\r\n") == [AuthCancel()]
    with pytest.raises(LocalProtocolError):
        conn2.send_challenge(b"x")
    assert feed(conn2, b"c AUTHENTICATE LOGIN\r\n")[0] == CommandEvent("c", Authenticate("LOGIN"))
    conn2.send_challenge(b"")
    assert feed(conn2, b"!!\r\nd NOOP\r\n") == [
        Respond(b"c BAD [PARSE] invalid base64 in SASL response\r\n"),
        CommandEvent("d", Noop()),
    ]


def test_auth_line_limit() -> None:
    conn = ImapConnection(ImapLimits(allow_plaintext_auth=True, max_auth_line=100))
    feed(conn, b"a AUTHENTICATE PLAIN\r\n")
    conn.send_challenge(b"")
    evs = feed(conn, b"A" * 300 + b"\r\nb NOOP\r\n")
    assert evs == [Respond(b"a BAD [TOOBIG] line too long\r\n"), CommandEvent("b", Noop())]


# ---- APPEND --------------------------------------------------------------------------


def test_multiappend_streaming() -> None:
    conn = at_state(ImapState.AUTHENTICATED)
    conn.receive_data(b"a APPEND {5}\r\n")
    assert conn.next_event() == Respond(b"+ OK\r\n")  # the mailbox literal
    conn.receive_data(b'Sent/ (\\Seen) " 3-Feb-2024 10:00:00 +0000" {10}\r\n')
    start = conn.next_event()
    assert isinstance(start, AppendStart)
    assert (start.mailbox, start.flags, start.size, start.binary) == (
        "Sent/",
        ("\\Seen",),
        10,
        False,
    )
    assert conn.next_event() is PAUSED
    assert conn.append_accept() == b"+ OK\r\n"
    evs = feed(conn, b"01234") + feed(conn, b"56789 ~{3}\r\n")
    assert evs[:3] == [AppendChunk(b"01234"), AppendChunk(b"56789"), AppendEnd()]
    start2 = evs[3]
    assert isinstance(start2, AppendStart) and start2.binary and start2.flags == ()
    evs = feed(conn, b"\x00\xff\n\r\n")
    assert evs == [AppendChunk(b"\x00\xff\n"), AppendEnd(), AppendDone("a")]


def test_append_reject_sync_and_nonsync() -> None:
    conn = at_state(ImapState.AUTHENTICATED)
    evs = feed(conn, b"a APPEND nope {5}\r\n", accept=False)
    assert isinstance(evs[0], AppendStart)
    assert (
        conn.append_reject("NO", "no such mailbox", "TRYCREATE")
        == b"a NO [TRYCREATE] no such mailbox\r\n"
    )
    assert feed(conn, b"b NOOP\r\n") == [CommandEvent("b", Noop())]
    evs = feed(conn, b"c APPEND nope {5+}\r\nhello {3+}\r\nabc\r\nd NOOP\r\n", accept=False)
    assert isinstance(evs[0], AppendStart)
    conn.append_reject("NO", "no")
    assert drain(conn) == [CommandEvent("d", Noop())]


def test_append_over_appendlimit() -> None:
    conn = ImapConnection(ImapLimits(max_append=100))
    conn.authenticated()
    evs = feed(
        conn, b"a APPEND INBOX {101}\r\nb APPEND INBOX {101+}\r\n" + b"x" * 101 + b"\r\nc NOOP\r\n"
    )
    assert evs == [
        Respond(b"a NO [TOOBIG] message exceeds APPENDLIMIT\r\n"),
        Respond(b"b BAD [TOOBIG] message exceeds APPENDLIMIT\r\n"),
        CommandEvent("c", Noop()),
    ]


def test_multiappend_second_message_error_aborts() -> None:
    conn = at_state(ImapState.AUTHENTICATED)
    evs = feed(conn, b"a APPEND INBOX {1+}\r\nx garbage\r\nb NOOP\r\n")
    assert isinstance(evs[0], AppendStart)
    assert evs[3] == AppendAborted("a", b"a BAD [PARSE] expected message literal or CATENATE\r\n")
    assert evs[4] == CommandEvent("b", Noop())


def test_append_misuse() -> None:
    conn = at_state(ImapState.AUTHENTICATED)
    with pytest.raises(LocalProtocolError):
        conn.append_accept()


def test_append_streams_in_bounded_memory() -> None:
    size = 20 * 1024 * 1024
    piece = b"x" * 65536
    conn = at_state(ImapState.AUTHENTICATED)
    feed(conn, b"a APPEND INBOX {%d+}\r\n" % size)
    gc.collect()
    tracemalloc.start()
    try:
        got = 0
        ends = 0
        for _ in range(size // len(piece)):
            conn.receive_data(piece)
            while True:
                ev = conn.next_event()
                if isinstance(ev, AppendChunk):
                    got += len(ev.data)
                    continue
                ends += isinstance(ev, AppendEnd)
                if isinstance(ev, Sentinel):
                    break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == size and ends == 1
    assert peak < 2 * 1024 * 1024
    assert feed(conn, b"\r\n") == [AppendDone("a")]


# ---- ENABLE ---------------------------------------------------------------------------


def test_enable_switches_utf8_names() -> None:
    conn = at_state(ImapState.AUTHENTICATED)
    assert feed(conn, b"a SELECT &AOk-t&AOk-\r\n")[0].command.mailbox == "été"  # type: ignore[union-attr]
    assert conn.enable("QRESYNC", "bogus") == ("QRESYNC", "CONDSTORE")
    assert conn.enable("IMAP4rev2") == ("IMAP4rev2",)
    assert conn.utf8 and conn.rev2 and conn.condstore and conn.qresync
    evs = feed(conn, b'b SELECT "\xc3\xa9t\xc3\xa9"\r\n')
    assert evs[0].command.mailbox == "été"  # type: ignore[union-attr]


def test_greeting() -> None:
    assert ImapConnection().greeting(("IMAP4rev2", "IMAP4rev1")) == (
        b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1] correo IMAP ready\r\n"
    )


def test_sasl_lines_do_not_eat_the_next_command_budget() -> None:
    conn = ImapConnection(ImapLimits(allow_plaintext_auth=True, max_line=100))
    feed(conn, b"a AUTHENTICATE PLAIN\r\n")
    conn.send_challenge(b"")
    assert feed(
        conn, b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n"
    )
    long_ok = b"b SEARCH " + b"SEEN " * 17 + b"ALL\r\n"
    assert len(long_ok) < 100
    conn.authenticated()
    conn.selected(read_only=True)
    assert isinstance(feed(conn, long_ok)[0], CommandEvent)


def test_a_refused_literal_too_big_to_skip_closes_after_bad() -> None:
    """RFC 7888 §4: past max_skip the server closes rather than read and drop the octets."""
    from correo.imap.reader import ImapLimits
    from correo.imap.server import ConnectionClosed, ImapConnection, Respond

    for line in (b"a LOGIN {999999+}\r\n", b"b APPEND INBOX {999999+}\r\n"):
        conn = ImapConnection(ImapLimits(max_append=1000, max_skip=100_000), tls_active=True)
        if b"APPEND" in line:
            conn.authenticated()
        conn.receive_data(line + b"xx")
        event = conn.next_event()
        data = event.data if isinstance(event, Respond) else getattr(event, "data", b"")
        assert b" BAD [TOOBIG]" in data and data.endswith(
            b"* BYE Literal too big to skip; closing\r\n"
        )
        assert isinstance(conn.next_event(), ConnectionClosed)
    within = ImapConnection(ImapLimits(max_skip=100_000), tls_active=True)
    within.receive_data(b"c LOGIN {99999+}\r\n" + b"x" * 99_999 + b"\r\nd NOOP\r\n")
    first = within.next_event()
    assert isinstance(first, Respond) and b"BYE" not in first.data
