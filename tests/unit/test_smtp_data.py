"""DATA and BDAT: end detection, dot-unstuffing, smuggling defences, limits."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest

from correo.smtp import (
    NEED_DATA,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataEnd,
    Event,
    MailFrom,
    Quit,
    Reply,
    ServerConnection,
    SmtpLimits,
    State,
)
from correo.smtp.data import DotDecoder
from tests.unit.test_smtp_server import pump as server_pump

OK = Reply(250, "2.0.0", "OK")
Policy = Callable[[ServerConnection, Event], list[Reply]]


def auto(conn: ServerConnection, ev: Event) -> list[Reply]:
    """Accept everything."""
    if isinstance(ev, CommandError):
        return [ev.reply]
    if isinstance(ev, Data):
        return [Reply(354, None, "End data with <CR><LF>.<CR><LF>")]
    if isinstance(ev, Quit):
        return [Reply(221, "2.0.0", "Bye")]
    return [OK] * conn.replies_expected


def pump(
    conn: ServerConnection, chunks: Iterable[bytes], policy: Policy = auto, eof: bool = False
) -> tuple[list[Event], bytes]:
    """``test_smtp_server.pump`` with the accept-everything policy by default."""
    return server_pump(conn, chunks, policy, eof)


def coalesce(events: Sequence[Event]) -> list[Event]:
    merged: list[Event] = []
    for ev in events:
        if isinstance(ev, DataChunk) and merged and isinstance(merged[-1], DataChunk):
            merged[-1] = DataChunk(merged[-1].data + ev.data)
        else:
            merged.append(ev)
    return merged


PREFIX = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
DATA_CMD = PREFIX + b"DATA\r\n"


def message(body: bytes, limits: SmtpLimits | None = None) -> tuple[bytes, DataEnd, list[Event]]:
    """Send DATA + body + QUIT; return the message, its DataEnd and the later events."""
    events, _ = pump(ServerConnection(limits), [DATA_CMD + body + b"QUIT\r\n"], eof=True)
    events = coalesce(events)
    i = next(i for i, ev in enumerate(events) if isinstance(ev, Data))
    if isinstance(events[i + 1], DataEnd):
        data, end, after = b"", events[i + 1], events[i + 2 :]
    else:
        chunk = events[i + 1]
        assert isinstance(chunk, DataChunk)
        data, end, after = chunk.data, events[i + 2], events[i + 3 :]
    assert isinstance(end, DataEnd)
    return data, end, after


BARE = Reply(554, "5.6.0", "Message contains bare CR or LF; lines must end with CRLF")

# body on the wire (ending with the real terminator), message seen, error
BODIES: list[tuple[bytes, bytes, Reply | None]] = [
    (b".\r\n", b"", None),  # empty message: the DATA line's CRLF starts the marker
    (b"a\r\n.\r\n", b"a\r\n", None),
    (b"\r\n.\r\n", b"\r\n", None),
    (b"..\r\n.\r\n", b".\r\n", None),
    (b"...\r\n.\r\n", b"..\r\n", None),
    (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n", None),
    (b".a\r\n.\r\n", b"a\r\n", None),
    (b"a.\r\n.b.\r\n.\r\n", b"a.\r\nb.\r\n", None),
    (b"x\r\n. \r\n.\r\n", b"x\r\n \r\n", None),
    # Not end markers: each hides a bare CR or LF and is an error at the real end.
    (b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n", BARE),
    (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n", BARE),
    (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n", BARE),
    (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n", BARE),
    (b"a\r.\r\nb\r\n.\r\n", b"a\r.\r\nb\r\n", BARE),
    (b"a\r\n.\rb\r\n.\r\n", b"a\r\n\rb\r\n", BARE),
    (b"a\nb\r\n.\r\n", b"a\nb\r\n", BARE),
    (b"a\rb\r\n.\r\n", b"a\rb\r\n", BARE),
    (b"a\r\r\n.\r\n", b"a\r\r\n", BARE),
    (b"a\r\n\n.\r\n", b"a\r\n\n.\r\n", BARE),  # not an end: "\n." is not CRLF "."
    (b"\n.\r\n", b"\n.\r\n", BARE),  # continues after this; see below
]


@pytest.mark.parametrize(("body", "data", "error"), BODIES[:-2])
def test_data_end_and_unstuffing(body: bytes, data: bytes, error: Reply | None) -> None:
    got, end, after = message(body)
    assert got == data
    assert end == DataEnd(error, last=True, bdat=False)
    assert [type(ev) for ev in after] == [Quit, ConnectionClosed]


def test_smuggled_commands_are_not_executed() -> None:
    """A fake end (\\n.\\n) followed by commands is still message data (CVE-2023-51764)."""
    for fake in [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\r\n", b"\r\n.\r"]:
        body = b"x" + fake + b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nspoof\r\n.\r\n"
        got, end, after = message(body)
        assert end.error == BARE
        assert b"MAIL FROM:<evil@x>" in got
        assert not any(isinstance(ev, MailFrom) for ev in after)


def dialogue_events(chunks: list[bytes], limits: SmtpLimits | None = None) -> list[Event]:
    events, _ = pump(ServerConnection(limits), chunks, eof=True)
    return coalesce(events)


@pytest.mark.parametrize(("body", "data", "error"), BODIES)
def test_every_split_position_gives_the_same_events(
    body: bytes, data: bytes, error: Reply | None
) -> None:
    wire = DATA_CMD + body + b"QUIT\r\n"
    whole = dialogue_events([wire])
    start = len(PREFIX)
    for i in range(start, len(wire)):
        assert dialogue_events([wire[:i], wire[i:]]) == whole, i
    assert dialogue_events([wire[i : i + 1] for i in range(len(wire))]) == whole


def test_end_marker_split_at_every_pair_of_positions() -> None:
    body = b"l1\r\n..l2\r\n.\r\n"
    wire = DATA_CMD + body + b"NOOP\r\n"
    whole = dialogue_events([wire])
    for i in range(len(DATA_CMD), len(wire)):
        for j in range(i, len(wire)):
            assert dialogue_events([wire[:i], wire[i:j], wire[j:]]) == whole, (i, j)


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        ([b"a\r", b"\nb\r\n.\r\n"], None),  # CR at a chunk end, LF starts the next
        ([b"a\r", b"b\r\n.\r\n"], BARE),  # CR at a chunk end, then not LF
        ([b"a\r\n", b"\n.\r\n.\r\n"], BARE),
        ([b"a\r\n.", b"\r\n"], None),
        ([b"a\r\n.\r", b"\n"], None),
        ([b"a\r\n.\r", b"x\r\n.\r\n"], BARE),
        ([b"a\r\n.", b"\n\r\n.\r\n"], BARE),
    ],
)
def test_chunk_boundaries(chunks: list[bytes], error: Reply | None) -> None:
    conn = ServerConnection()
    pump(conn, [DATA_CMD])
    assert conn.state is State.DATA
    events, _ = pump(conn, chunks)
    assert coalesce(events)[-1] == DataEnd(error)


def test_chunks_stream_as_they_arrive() -> None:
    conn = ServerConnection()
    pump(conn, [DATA_CMD])
    for piece in [b"Subject: x\r\n", b"\r\n", b"body\r\n"]:
        conn.receive_data(piece)
        assert conn.next_event() == DataChunk(piece)
        assert conn.next_event() is NEED_DATA
    conn.receive_data(b".\r\n")
    assert conn.next_event() == DataEnd(None)


def test_pipelined_bytes_after_data_wait_for_354() -> None:
    conn = ServerConnection()
    conn.receive_data(DATA_CMD + b"QUIT\r\n.\r\n")
    for _ in range(3):
        assert not isinstance(conn.next_event(), Data)
        conn.send(OK)
    assert conn.next_event() == Data()
    # The shell refuses DATA: the next line is a command again.
    conn.send(Reply(554, "5.5.1", "No valid recipients"))
    assert conn.next_event() == Quit()


def test_data_line_limit() -> None:
    limits = SmtpLimits(max_data_line=10)
    ok = b"12345678\r\n.23456789\r\n.\r\n"  # stuffed dot not counted
    assert message(ok, limits)[1].error is None
    long = b"123456789\r\n.\r\n"
    assert message(long, limits)[1].error == Reply(500, "5.5.2", "Line too long in message data")


@pytest.mark.parametrize(
    ("body", "data", "too_big"),
    [
        (b"123456\r\n.\r\n", b"123456\r\n", False),
        (b"1234567\r\n.\r\n", b"1234567\r", True),
        (b"..34567\r\n.\r\n", b".34567\r\n", False),
        (b"x" * 100 + b"\r\n.\r\n", b"x" * 8, True),
    ],
)
def test_message_size_limit(body: bytes, data: bytes, too_big: bool) -> None:
    got, end, after = message(body, SmtpLimits(max_message_size=8))
    assert got == data
    assert end.error == (
        Reply(552, "5.3.4", "Message size exceeds fixed limit") if too_big else None
    )
    assert isinstance(after[0], Quit)


def test_eof_mid_data() -> None:
    events = dialogue_events([DATA_CMD + b"partial\r\nmessage"])
    assert events[-2:] == [DataChunk(b"partial\r\nmessage"), ConnectionClosed()]


def test_dot_decoder_carries_at_most_three_bytes() -> None:
    dec = DotDecoder()
    for piece in [b"abc\r\n.\r", b"\r\n.", b"x\r", b"\r"]:
        _, rest = dec.feed(piece)
        assert rest is None
        assert len(dec._carry) <= 3


# -- BDAT (RFC 3030) -----------------------------------------------------------------


def test_bdat_chunks_and_last() -> None:
    wire = PREFIX + b"BDAT 5\r\nhelloBDAT 7 LAST\r\n, worldQUIT\r\n"
    events = dialogue_events([wire])
    assert events[3:] == [
        DataChunk(b"hello"),
        DataEnd(None, last=False, bdat=True),
        DataChunk(b", world"),
        DataEnd(None, last=True, bdat=True),
        Quit(),
        ConnectionClosed(),
    ]
    for i in range(len(PREFIX), len(wire)):
        assert dialogue_events([wire[:i], wire[i:]]) == events, i


def test_bdat_payload_is_raw() -> None:
    payload = b"a\r\n.\r\n..b\x00.\r\n"  # no end marker, no unstuffing
    events = dialogue_events([PREFIX + b"BDAT %d LAST\r\n" % len(payload) + payload])
    assert events[3] == DataChunk(payload)
    assert events[4] == DataEnd(None, last=True, bdat=True)


# BDAT payloads (one or more chunks) that hide a bare CR or LF: refused like DATA.
BARE_BDAT: list[list[bytes]] = [
    [b"x\n.\nMAIL FROM:<evil@x>\r\n"],
    [b"x\r\n.\nRCPT TO:<v@x>\r\n"],
    [b"x\r.\rDATA\r\n"],
    [b"a\rb\r\n"],
    [b"a\r\r\n"],
    [b"a\r", b"b\r\n"],  # the CR that ends a chunk is not followed by LF
    [b"a\r\n", b"\nb"],  # an LF that starts a chunk without a CR before it
    [b"a\r\n", b"b\r"],  # a CR at the very end of the message
]


@pytest.mark.parametrize("chunks", BARE_BDAT)
def test_bdat_bare_line_end_is_refused_like_data(chunks: list[bytes]) -> None:
    """RFC 5321 §2.3.8: BDAT octets obey DATA's line rules (no smuggling via BDAT)."""
    wire = PREFIX
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        wire += b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk
    wire += b"MAIL FROM:<next@x>\r\n"
    events = dialogue_events([wire])
    ends = [ev for ev in events if isinstance(ev, DataEnd)]
    assert ends[-1] == DataEnd(BARE, last=True, bdat=True)
    assert all(b"MAIL FROM:<evil" not in ev.data for ev in events if isinstance(ev, DataChunk))
    # The session stays in step: the next command after the chunks is read as one.
    assert isinstance(events[-2], MailFrom) and isinstance(events[-1], ConnectionClosed)
    for cut in range(len(PREFIX), len(wire)):
        assert dialogue_events([wire[:cut], wire[cut:]])[-3:] == events[-3:], cut


def test_bdat_crlf_split_across_chunks_is_fine() -> None:
    """RFC 3030 §2: a chunk may end between the CR and the LF of one line end."""
    wire = PREFIX + b"BDAT 2\r\na\rBDAT 2 LAST\r\n\nb"
    events = dialogue_events([wire])
    assert events[-2] == DataEnd(None, last=True, bdat=True)
    assert b"".join(ev.data for ev in events if isinstance(ev, DataChunk)) == b"a\r\nb"


def test_bdat_line_length_limit_like_data() -> None:
    """``max_data_line`` holds for BDAT as for DATA (RFC 5321 §4.5.3.1.6)."""
    limits = SmtpLimits(max_data_line=10)
    long_line = b"x" * 20 + b"\r\n"
    events = dialogue_events([PREFIX + b"BDAT %d LAST\r\n" % len(long_line) + long_line], limits)
    assert events[-2] == DataEnd(
        Reply(500, "5.5.2", "Line too long in message data"), last=True, bdat=True
    )


def test_bdat_zero_last() -> None:
    events = dialogue_events([PREFIX + b"BDAT 3\r\nabcBDAT 0 LAST\r\n"])
    assert events[3:] == [
        DataChunk(b"abc"),
        DataEnd(None, last=False, bdat=True),
        DataEnd(None, last=True, bdat=True),
        ConnectionClosed(),
    ]


@pytest.mark.parametrize(
    ("prefix", "status_text"),
    [
        (b"", "Error: send HELO/EHLO first"),
        (b"EHLO c\r\n", "Error: need MAIL command"),
        (b"EHLO c\r\nMAIL FROM:<a@b>\r\n", "Error: need RCPT command"),
    ],
)
def test_bdat_out_of_sequence_consumes_octets(prefix: bytes, status_text: str) -> None:
    payload = b"QUIT\r\nRSET\r\n"
    events = dialogue_events([prefix + b"BDAT %d\r\n" % len(payload) + payload + b"NOOP\r\n"])
    tail = events[prefix.count(b"\r\n") :]
    assert tail == [
        CommandError(Reply(503, "5.5.1", status_text)),
        type(tail[1])(),  # NOOP, not the QUIT hidden in the chunk
        ConnectionClosed(),
    ]
    assert type(tail[1]).__name__ == "Noop"


def test_bdat_size_is_cumulative() -> None:
    limits = SmtpLimits(max_message_size=6)
    events = dialogue_events([PREFIX + b"BDAT 4\r\nabcdBDAT 4 LAST\r\nefgh"], limits)
    big = Reply(552, "5.3.4", "Message size exceeds fixed limit")
    assert events[3:] == [
        DataChunk(b"abcd"),
        DataEnd(None, last=False, bdat=True),
        DataChunk(b"ef"),
        DataEnd(big, last=True, bdat=True),
        ConnectionClosed(),
    ]


def test_bdat_failure_sticks_to_later_chunks() -> None:
    busy = Reply(452, "4.3.1", "Insufficient storage")

    def policy(conn: ServerConnection, ev: Event) -> list[Reply]:
        if isinstance(ev, DataEnd) and ev.error is None and not ev.last:
            return [busy]
        if isinstance(ev, DataEnd) and ev.error is not None:
            return [ev.error]
        return auto(conn, ev)

    events, _ = pump(
        ServerConnection(), [PREFIX + b"BDAT 1\r\naBDAT 1 LAST\r\nb"], policy, eof=True
    )
    ends = [ev for ev in events if isinstance(ev, DataEnd)]
    assert ends == [DataEnd(None, last=False, bdat=True), DataEnd(busy, last=True, bdat=True)]


@pytest.mark.parametrize("line", [b"BDAT x", b"BDAT", b"BDAT 1 MORE", b"BDAT 9999999999999999999"])
def test_bdat_bad_size_closes(line: bytes) -> None:
    events = dialogue_events([PREFIX + line + b"\r\nQUIT\r\n"])
    err = events[3]
    assert isinstance(err, CommandError)
    assert err.close and err.reply.code == 554
    assert events[4:] == [ConnectionClosed()]


def test_data_after_bdat_is_refused() -> None:
    events = dialogue_events([PREFIX + b"BDAT 1\r\naDATA\r\nRCPT TO:<x@y>\r\nRSET\r\n"])
    assert events[5] == CommandError(Reply(503, "5.5.1", "Error: DATA and BDAT cannot be mixed"))
    assert events[6] == CommandError(Reply(503, "5.5.1", "Error: BDAT transfer in progress"))


def test_eof_mid_bdat() -> None:
    events = dialogue_events([PREFIX + b"BDAT 10\r\nabc"])
    assert events[3:] == [DataChunk(b"abc"), ConnectionClosed()]
