"""CATENATE framing in the sans-I/O core (RFC 4469 §5): events, decisions, refusals."""

from __future__ import annotations

from correo.imap import (
    AppendAborted,
    AppendChunk,
    AppendDone,
    AppendEnd,
    AppendStart,
    CatenateStart,
    CatenateText,
    CatenateUrl,
    CommandEvent,
    Event,
    ImapConnection,
    ImapLimits,
    Noop,
    Respond,
    Sentinel,
)
from correo.imap.catenate import MAX_PARTS


def _conn(**limits: int) -> ImapConnection:
    conn = ImapConnection(ImapLimits(allow_plaintext_auth=True, **limits))
    conn.authenticated()
    return conn


def _run(conn: ImapConnection, data: bytes, out: list[object] | None = None) -> list[object]:
    """Feed ``data``, accepting every decision; the continuations become Respond events."""
    events: list[object] = [] if out is None else out
    if data:
        conn.receive_data(data)
    while True:
        ev = conn.next_event()
        if isinstance(ev, Sentinel):
            return events
        events.append(ev)
        if isinstance(ev, (AppendStart, CatenateStart, CatenateText)):
            reply = conn.append_accept()
            if reply:
                events.append(Respond(reply))


def _merged(events: list[object]) -> list[object]:
    """AppendChunks joined (how the octets were split is not part of the contract)."""
    out: list[object] = []
    for ev in events:
        if isinstance(ev, AppendChunk) and out and isinstance(out[-1], AppendChunk):
            out[-1] = AppendChunk(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


SCRIPT = (
    b'a APPEND box (\\Seen) CATENATE (URL "/box/;uid=1" TEXT {5}\r\nhello'
    b" URL {10}\r\n/b/;uid=2/) CATENATE (TEXT {3+}\r\nabc) {2+}\r\nhi\r\n"
    b"b NOOP\r\n"
)
EXPECTED: list[object] = [
    CatenateStart("a", "box", ("\\Seen",), None),
    CatenateUrl(b"/box/;uid=1"),
    CatenateText(5, False),
    Respond(b"+ OK\r\n"),
    AppendChunk(b"hello"),
    Respond(b"+ OK\r\n"),  # the URL literal
    CatenateUrl(b"/b/;uid=2/"),
    AppendEnd(),
    CatenateStart("a", "box", (), None),
    CatenateText(3, False),
    AppendChunk(b"abc"),
    AppendEnd(),
    AppendStart("a", "box", (), None, 2, False),
    AppendChunk(b"hi"),
    AppendEnd(),
    AppendDone("a"),
    CommandEvent("b", Noop()),
]


def test_parts_text_url_and_multiappend() -> None:
    assert _merged(_run(_conn(), SCRIPT)) == EXPECTED


def test_byte_by_byte_equals_whole() -> None:
    conn = _conn()
    events: list[object] = []
    for i in range(len(SCRIPT)):
        _run(conn, SCRIPT[i : i + 1], events)
    assert _merged(events) == EXPECTED


def test_abort_after_url_before_a_sync_literal() -> None:
    conn = _conn()
    conn.receive_data(b'a APPEND box CATENATE (URL "/bad" TEXT {5}\r\n')
    assert isinstance(conn.next_event(), CatenateStart)
    assert conn.append_accept() == b""
    assert conn.next_event() == CatenateUrl(b"/bad")
    reply = conn.append_abort("NO", "CATENATE failed: invalid URL", "BADURL /bad")
    assert reply == b"a NO [BADURL /bad] CATENATE failed: invalid URL\r\n"
    # RFC 9051 §7.5: no "+" was sent, so the client sends the next command instead
    assert _run(conn, b"b NOOP\r\n") == [CommandEvent("b", Noop())]


def test_abort_drops_literal_plus_octets_and_the_rest_of_the_command() -> None:
    conn = _conn()
    conn.receive_data(b'a APPEND box CATENATE (URL "/bad" TEXT {14+}\r\nc NOOP\r\nxxxxx')
    assert isinstance(conn.next_event(), CatenateStart)
    conn.append_accept()
    assert isinstance(conn.next_event(), CatenateUrl)
    conn.append_abort("NO", "bad", "BADURL /bad")
    assert _run(conn, b" TEXT {6+}\r\nd NOOP)\r\nb NOOP\r\n") == [CommandEvent("b", Noop())]


def test_reject_at_start_and_at_a_text_part() -> None:
    conn = _conn()
    conn.receive_data(b"a APPEND nosuch CATENATE (TEXT {5}\r\n")
    assert isinstance(conn.next_event(), CatenateStart)
    assert conn.append_reject("NO", "No such mailbox", "TRYCREATE") == (
        b"a NO [TRYCREATE] No such mailbox\r\n"
    )
    assert _run(conn, b"b NOOP\r\n") == [CommandEvent("b", Noop())]
    conn.receive_data(b'c APPEND box CATENATE (URL "/x/;uid=1" TEXT {9}\r\n')
    assert isinstance(conn.next_event(), CatenateStart)
    conn.append_accept()
    assert isinstance(conn.next_event(), CatenateUrl)
    assert conn.next_event() == CatenateText(9, False)
    assert conn.append_reject("NO", "too big", "TOOBIG") == b"c NO [TOOBIG] too big\r\n"
    assert _run(conn, b"d NOOP\r\n") == [CommandEvent("d", Noop())]


def test_text_over_appendlimit_is_refused_before_the_continuation() -> None:
    events = _run(_conn(max_append=100), b"a APPEND box CATENATE (TEXT {101}\r\n")
    assert events[0] == CatenateStart("a", "box", (), None)
    assert events[1] == AppendAborted("a", b"a NO [TOOBIG] part exceeds APPENDLIMIT\r\n")


def test_syntax_errors_are_bad_and_abort_the_append() -> None:
    for bad in (b"()", b'(FOO "x")', b'(TEXT "x")', b"(URL)", b'(URL "a"', b'(URL "a" URL)'):
        events = _run(_conn(), b"a APPEND box CATENATE " + bad + b"\r\n")
        last = events[-1]
        assert isinstance(last, (AppendAborted, Respond)), (bad, events)
        assert last.data.startswith(b"a BAD"), (bad, last)


def test_part_count_is_bounded() -> None:
    parts = b" ".join([b'URL "/x/;uid=1"'] * (MAX_PARTS + 1))
    events: list[Event | object] = _run(_conn(), b"a APPEND box CATENATE (" + parts + b")\r\n")
    assert sum(isinstance(e, CatenateUrl) for e in events) == MAX_PARTS
    assert isinstance(events[-1], AppendAborted) and b"[LIMIT]" in events[-1].data
