"""Property tests for the SMTP core's parsers.

Invariant for every parser here: any input yields events (or a command, or
an error reply) and never an unexpected exception; and how the input is split
across ``receive_data`` calls does not change the event sequence (adjacent
``DataChunk`` events coalesced).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correo.smtp import (
    NEED_DATA,
    Auth,
    AuthResponse,
    Command,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataEnd,
    Event,
    RemoteProtocolError,
    Reply,
    ServerConnection,
    SmtpLimits,
    parse_command,
    parse_path,
)
from correo.smtp.data import DotDecoder

LIMITS = SmtpLimits(
    max_command_line=64,
    max_auth_line=96,
    max_message_size=40,
    max_data_line=24,
    max_unknown_commands=6,
)

FRAGMENTS = [
    b"\r\n", b"\r", b"\n", b".", b"..", b"\r\n.\r\n", b"\n.\n", b" ", b"x", b"=",
    b"EHLO c\r\n", b"LHLO c\r\n", b"HELO c\r\n", b"MAIL FROM:<a@b>\r\n", b"MAIL FROM:<>",
    b"RCPT TO:<c@d>\r\n", b"RCPT TO:<postmaster>", b"DATA\r\n", b"BDAT 3\r\n", b"BDAT 0 LAST\r\n",
    b"BDAT 5 LAST\r\n", b"BDAT x\r\n", b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n", b"VRFY u\r\n",
    b"EXPN l\r\n", b"HELP\r\n", b"STARTTLS\r\n", b"AUTH PLAIN\r\n", b"AUTH PLAIN AHUAcA==\r\n",
    b"dXNlcg==\r\n", b"*\r\n", b"SIZE=10", b"SMTPUTF8", "\u00e9".encode(), b"\x00", b"\xff",
    b"<", b">", b"@", b'"', b"x" * 70,
]  # fmt: skip

protocolish = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=8)), max_size=40
).map(b"".join)
inputs = st.one_of(protocolish, st.binary(max_size=300))


def policy(conn: ServerConnection, ev: Event) -> list[Reply]:
    """Auto-answer: 354 to DATA, 334/235 in AUTH, the error to errors, 250 otherwise."""
    match ev:
        case CommandError(reply=r):
            return [r]
        case Data():
            return [Reply(354, None, "go")]
        case Auth() | AuthResponse():
            data = ev.initial if isinstance(ev, Auth) else ev.data
            return [Reply(235, "2.7.0", "ok") if data else Reply(334, None, "")]
        case _:
            return [Reply(250, "2.0.0", "ok")] * conn.replies_expected


def run(pieces: Sequence[bytes], lmtp: bool) -> list[Event]:
    conn = ServerConnection(LIMITS, lmtp=lmtp)
    events: list[Event] = []
    for piece in [*(p for p in pieces if p), b""]:
        conn.receive_data(piece)
        while (ev := conn.next_event()) is not NEED_DATA:
            assert isinstance(ev, Event)
            if isinstance(ev, DataChunk):
                assert ev.data
                if events and isinstance(events[-1], DataChunk):
                    events[-1] = DataChunk(events[-1].data + ev.data)
                    continue
            events.append(ev)
            if isinstance(ev, ConnectionClosed):
                return events
            if not isinstance(ev, DataChunk):
                assert isinstance(conn.send_many(policy(conn, ev)), bytes)
    raise AssertionError("EOF must end in ConnectionClosed")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=inputs, cuts=st.lists(st.integers(min_value=0), max_size=12), lmtp=st.booleans())
def test_server_connection_split_invariance(data: bytes, cuts: list[int], lmtp: bool) -> None:
    """Whole, byte-by-byte and arbitrarily split feeding give the same events."""
    whole = run([data], lmtp)
    assert run([data[i : i + 1] for i in range(len(data))], lmtp) == whole
    assert run(split(data, cuts), lmtp) == whole


@settings(max_examples=300, deadline=None)
@given(line=inputs, lmtp=st.booleans(), smtputf8=st.booleans())
def test_parse_command_total(line: bytes, lmtp: bool, smtputf8: bool) -> None:
    """Any line parses to a command or an error reply (5xx), nothing else."""
    result = parse_command(
        line.replace(b"\r", b"").replace(b"\n", b""), lmtp=lmtp, smtputf8=smtputf8
    )
    if isinstance(result, Reply):
        assert result.code >= 500
    else:
        assert isinstance(result, Command)


path_bytes = st.lists(
    st.sampled_from([b"<", b">", b"@", b".", b",", b":", b'"', b"\\", b"[", b"]", b"a", b"b",
                     b"IPv6:", b"1", b"-", b" ", "\u00e9".encode(), b"\x00", b"\xff"]),
    max_size=30,
).map(b"".join)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(path_bytes, st.binary(max_size=80)), smtputf8=st.booleans())
def test_parse_path_total(raw: bytes, smtputf8: bool) -> None:
    """parse_path returns a Path or raises RemoteProtocolError with a 501 reply."""
    for kind in ("mail", "rcpt"):
        try:
            path, end = parse_path(raw, kind=kind, smtputf8=smtputf8)
        except RemoteProtocolError as exc:
            assert exc.reply.code == 501
        else:
            assert 0 < end <= len(raw)
            if path.address is not None and path.address.domain:
                # What we print parses back to the same address.
                again, _ = parse_path(f"<{path.address}>".encode(), kind=kind, smtputf8=True)
                assert again.address == path.address


@settings(max_examples=300, deadline=None)
@given(data=inputs, cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_dot_decoder_split_invariance(data: bytes, cuts: list[int]) -> None:
    """DotDecoder output, end and flags do not depend on chunking."""

    def decode(pieces: list[bytes]) -> tuple[bytes, bytes | None, bool, bool]:
        dec = DotDecoder(max_line=24)
        out = b""
        for n, piece in enumerate(pieces):
            chunk, rest = dec.feed(piece)
            out += chunk
            if rest is not None:
                return out, rest + b"".join(pieces[n + 1 :]), dec.bare_line_end, dec.line_too_long
        return out, None, dec.bare_line_end, dec.line_too_long

    whole = decode([data])
    assert decode(split(data, cuts)) == whole
    assert decode([data[i : i + 1] for i in range(len(data))]) == whole
    out, rest, bare, _ = whole
    if rest is not None and not bare:
        # Stuffing what came out and decoding it again gives it back (RFC 5321 §4.5.2).
        stuffed = (b"\r\n" + out).replace(b"\r\n.", b"\r\n..")[2:]
        assert decode([stuffed + b".\r\n"])[:2] == (out, b"")


def test_dataend_is_answered_event() -> None:
    assert issubclass(DataEnd, Event)
