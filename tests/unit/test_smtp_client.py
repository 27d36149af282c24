"""The sans-I/O SMTP/LMTP client core: replies, extensions, pipelining, stuffing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.smtp import ServerConnection
from correo.smtp.client import (
    NEED_DATA,
    BdatReply,
    ClientConnection,
    ClientState,
    DataReply,
    DotEncoder,
    EhloReply,
    Greeting,
    MailReply,
    MessageReply,
    ProtocolViolation,
    RcptReply,
    ReplyParser,
    ServerReply,
)
from correo.smtp.data import DotDecoder
from correo.smtp.errors import LocalProtocolError


def events(core: ClientConnection) -> list[object]:
    out = []
    while (ev := core.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


EHLO = (
    b"250-mx.example greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
    b"250-DSN\r\n250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n250 CHUNKING\r\n"
)


def ready(lmtp: bool = False) -> ClientConnection:
    core = ClientConnection(lmtp=lmtp)
    core.receive_data(b"220 mx.example ESMTP\r\n")
    core.ehlo("client.example")
    core.receive_data(EHLO)
    assert [type(e) for e in events(core)] == [Greeting, EhloReply]
    assert core.state is ClientState.READY
    return core


@pytest.mark.parametrize(
    ("wire", "code", "status", "lines"),
    [
        (b"250 ok\r\n", 250, None, ("ok",)),
        (b"250 2.1.0 Sender ok\r\n", 250, "2.1.0", ("Sender ok",)),
        (b"550-5.1.1 no\r\n550 5.1.1 such user\r\n", 550, "5.1.1", ("no", "such user")),
        (b"250\r\n", 250, None, ("",)),
        (b"451 5.0.0 class mismatch\r\n", 451, None, ("5.0.0 class mismatch",)),
        (b"250 ok\n", 250, None, ("ok",)),  # bare LF accepted (liberal)
    ],
)
def test_reply_parsing(wire: bytes, code: int, status: str | None, lines: tuple[str]) -> None:
    (reply,) = ReplyParser().feed(wire)
    assert (reply.code, reply.status, reply.lines) == (code, status, lines)


@pytest.mark.parametrize(
    "wire",
    [b"abc\r\n", b"600 no\r\n", b"250-a\r\n251 b\r\n", b"25\r\n", b"250x\r\n", b"2" * 5000],
)
def test_malformed_replies_are_violations(wire: bytes) -> None:
    core = ClientConnection()
    core.receive_data(wire)
    assert isinstance(core.next_event(), ProtocolViolation)
    assert core.state is ClientState.CLOSED


def test_too_many_lines_is_a_violation() -> None:
    core = ClientConnection()
    core.receive_data(b"220-x\r\n" * 500 + b"220 x\r\n")
    assert isinstance(core.next_event(), ProtocolViolation)


def test_extensions() -> None:
    ext = ready().extensions
    assert ext.pipelining and ext.eightbitmime and ext.dsn and ext.chunking and ext.starttls
    assert ext.size == 1000 and ext.auth == ("PLAIN", "LOGIN")
    assert not ext.smtputf8


def test_ehlo_refused_then_helo() -> None:
    core = ClientConnection()
    core.receive_data(b"220 old\r\n")
    core.ehlo("me")
    core.receive_data(b"502 no EHLO\r\n")
    _, ehlo = events(core)
    assert isinstance(ehlo, EhloReply) and ehlo.extensions is None
    assert core.helo("me") == b"HELO me\r\n"
    core.receive_data(b"250 old\r\n")
    (helo,) = events(core)
    assert isinstance(helo, EhloReply) and core.state is ClientState.READY and not core.extended


def test_pipelined_transaction_with_per_recipient_replies() -> None:
    core = ready()
    out = core.mail("a@x", ["SIZE=10"]) + core.rcpt("b@y") + core.rcpt("c@y") + core.data()
    assert out == b"MAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n"
    core.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n")
    evs = events(core)
    assert [type(e) for e in evs] == [MailReply, RcptReply, RcptReply, DataReply]
    assert isinstance(evs[2], RcptReply) and evs[2].recipient == "c@y"
    assert evs[2].reply.is_permanent
    body = core.message_data(b"Subject: x\r\n\r\n.hidden\r\n") + core.end_data()
    assert body == b"Subject: x\r\n\r\n..hidden\r\n.\r\n"
    core.receive_data(b"250 2.0.0 queued\r\n")
    (done,) = events(core)
    assert isinstance(done, MessageReply) and done.reply.status == "2.0.0"
    assert core.state is ClientState.READY


def test_lmtp_one_reply_per_accepted_recipient() -> None:
    core = ready(lmtp=True)
    core.mail("a@x")
    core.rcpt("b@y")
    core.rcpt("bad@y")
    core.rcpt("c@y")
    core.data()
    core.receive_data(b"250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n")
    events(core)
    core.message_data(b"x\r\n")
    assert core.end_data() == b".\r\n"
    core.receive_data(b"250 2.0.0 b done\r\n452 4.2.2 c over quota\r\n")
    replies = events(core)
    assert [(e.recipient, e.reply.code) for e in replies if isinstance(e, MessageReply)] == [
        ("b@y", 250),
        ("c@y", 452),
    ]


def test_bdat_chunks() -> None:
    core = ready()
    core.mail("a@x")
    core.rcpt("b@y")
    assert core.bdat(b"abc") == b"BDAT 3\r\nabc"
    assert core.bdat(b"de", last=True) == b"BDAT 2 LAST\r\nde"
    core.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n250 done\r\n")
    assert [type(e) for e in events(core)] == [MailReply, RcptReply, BdatReply, MessageReply]


def test_misuse_raises_local_protocol_error() -> None:
    core = ClientConnection()
    with pytest.raises(LocalProtocolError):
        core.mail("a@x")
    core = ready()
    with pytest.raises(LocalProtocolError):
        core.message_data(b"x")
    with pytest.raises(LocalProtocolError):
        core.rcpt("a\r\nRSET")  # type: ignore[arg-type]


def test_unsolicited_421_is_reported() -> None:
    core = ready()
    core.receive_data(b"421 4.3.2 shutting down\r\n")
    (ev,) = events(core)
    assert isinstance(ev, object) and getattr(ev, "reply", None) == ServerReply(
        421, "4.3.2", ("shutting down",)
    )


def test_against_our_server_core() -> None:
    """Client and server cores joined in memory, h11-style: a whole pipelined
    transaction crosses, the message arrives unstuffed, and each side sees each reply."""
    from correo.smtp import (
        Data,
        DataChunk,
        DataEnd,
        Helo,
        MailFrom,
        RcptTo,
        Reply,
        ehlo_reply,
        greeting,
    )

    server = ServerConnection()
    client = ClientConnection()
    client.receive_data(server.send(greeting("mx")))
    server.receive_data(client.ehlo("me"))
    assert server.next_event() == Helo(name="me", extended=True)
    client.receive_data(server.send(ehlo_reply("mx", "me", ["PIPELINING", "8BITMIME"])))
    assert [type(e) for e in events(client)] == [Greeting, EhloReply]
    assert client.extensions.pipelining
    # RFC 2920: MAIL, RCPT and DATA leave in one write.
    server.receive_data(client.mail("a@x") + client.rcpt("b@y") + client.data())
    got = []
    for reply in (Reply(250, "2.1.0", "ok"), Reply(250, "2.1.5", "ok"), Reply(354, None, "go")):
        got.append(server.next_event())
        client.receive_data(server.send(reply))
    assert [type(e) for e in got] == [MailFrom, RcptTo, Data]
    mail, rcpt = got[0], got[1]
    assert isinstance(mail, MailFrom) and isinstance(rcpt, RcptTo)
    assert str(mail.path.address) == "a@x" and str(rcpt.path.address) == "b@y"
    replies = events(client)
    assert [type(e) for e in replies] == [MailReply, RcptReply, DataReply]
    codes = [r.reply.code for r in replies if isinstance(r, MailReply | RcptReply | DataReply)]
    assert codes == [250, 250, 354]
    assert client.state is ClientState.DATA
    # RFC 5321 §4.5.2: a line starting with "." is stuffed by the client, unstuffed here.
    message = b"Subject: x\r\n\r\n.dot\r\nhi\r\n"
    server.receive_data(client.message_data(message) + client.end_data())
    body = b""
    while not isinstance(ev := server.next_event(), DataEnd):
        assert isinstance(ev, DataChunk)
        body += ev.data
    assert body == message and ev.error is None
    client.receive_data(server.send(Reply(250, "2.0.0", "queued")))
    done = events(client)
    assert [type(e) for e in done] == [MessageReply]
    assert client.state is ClientState.READY


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_reply_parser(data: bytes) -> None:
    """Invariant: any input yields replies or a violation (never an exception), and
    feeding byte by byte gives the same replies as feeding all at once."""
    whole = ReplyParser()
    replies = whole.feed(data)
    single = ReplyParser()
    split: list[ServerReply] = []
    for i in range(len(data)):
        split += single.feed(data[i : i + 1])
    assert split == replies
    assert (whole.error is None) == (single.error is None)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.binary(max_size=50).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=20
    ),
    st.integers(1, 7),
)
def test_fuzz_dot_stuffing_round_trips(lines: list[bytes], step: int) -> None:
    """Invariant: stuffing in any chunking, then our server's decoder, gives the message."""
    message = b"".join(line + b"\r\n" for line in lines)
    enc = DotEncoder()
    wire = b"".join(enc.encode(message[i : i + step]) for i in range(0, len(message), step))
    wire += enc.end()
    decoded, rest = DotDecoder().feed(wire)
    assert rest == b"" and decoded == message


# -- line-end repair on the way out (SMTP smuggling, CVE-2023-51764) -------------------


def _crlf(data: bytes) -> bytes:
    """Reference repair: every CRLF, lone CR and lone LF becomes one CRLF."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def _only_crlf(wire: bytes) -> bool:
    return wire.count(b"\r") == wire.count(b"\r\n") == wire.count(b"\n")


SMUGGLED = [
    (b"x\n.\nMAIL FROM:<evil@x>\r\n", b"x\r\n..\r\nMAIL FROM:<evil@x>\r\n.\r\n"),
    (b"x\r\n.\nRCPT TO:<v@x>\r\n", b"x\r\n..\r\nRCPT TO:<v@x>\r\n.\r\n"),
    (b"x\n.\r\nDATA\r\n", b"x\r\n..\r\nDATA\r\n.\r\n"),
    (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r\r\nb\r", b"a\r\n\r\nb\r\n.\r\n"),
    (b".\n", b"..\r\n.\r\n"),
    (b"\r", b"\r\n.\r\n"),
]


@pytest.mark.parametrize(("message", "wire"), SMUGGLED)
def test_data_never_carries_a_bare_cr_or_lf(message: bytes, wire: bytes) -> None:
    """Whatever the stored bytes, DATA has CRLF line ends and every "." line stuffed."""
    for cut in range(len(message) + 1):
        enc = DotEncoder()
        out = enc.encode(message[:cut]) + enc.encode(message[cut:]) + enc.end()
        assert out == wire, cut
        assert _only_crlf(out)


def test_bdat_never_carries_a_bare_cr_or_lf() -> None:
    core = ready()
    core.mail("a@x")
    core.rcpt("b@y")
    assert core.bdat(b"x\n.\nMAIL") == b"BDAT 10\r\nx\r\n.\r\nMAIL"
    assert core.bdat(b"a\r") == b"BDAT 1\r\na"  # the CR may be half of a CRLF
    assert core.bdat(b"\nb\r") == b"BDAT 3\r\n\r\nb"
    assert core.bdat(b"c", last=True) == b"BDAT 3 LAST\r\n\r\nc"
    core.receive_data(b"250 ok\r\n250 ok\r\n" + b"250 ok\r\n" * 3 + b"250 done\r\n")
    assert core.state is ClientState.READY
    core.mail("a@x")
    core.rcpt("b@y")
    assert core.bdat(b"tail\r", last=True) == b"BDAT 6 LAST\r\ntail\r\n"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"MAIL"]), max_size=60),
    st.integers(1, 7),
)
def test_fuzz_outbound_data_has_no_early_end(parts: list[bytes], step: int) -> None:
    """Invariant: any stored bytes, in any chunking, reach a strict receiver as exactly
    one message, the CRLF-repaired input, with no bare line end (no smuggled end)."""
    message = b"".join(parts)
    enc = DotEncoder()
    wire = b"".join(enc.encode(message[i : i + step]) for i in range(0, len(message), step))
    wire += enc.end()
    assert _only_crlf(wire)
    decoder = DotDecoder()
    decoded, rest = decoder.feed(wire)
    expected = _crlf(message)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert rest == b"" and decoded == expected and not decoder.bare_line_end
