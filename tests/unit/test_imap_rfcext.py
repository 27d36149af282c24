"""Sans-I/O parts of OBJECTID, PREVIEW, WITHIN, CREATE-SPECIAL-USE, UNAUTHENTICATE."""

from __future__ import annotations

import datetime as dt

import pytest

from correo.imap import ImapConnection, ImapState, ParseError
from correo.imap.commands import Create, Fetch, Search, Status, Unauthenticate, parse_command
from correo.imap.extended import parse_any
from correo.imap.multisearch import MultiSearch
from correo.imap.responses import status_response
from correo.imap.search import AgeKey, And, ObjectIdKey, SaveDateKey, compile_program
from correo.imap.server import AppendStart, CommandEvent, Respond, Sentinel
from correo.imap.uidonly import uses_sequence_numbers
from correo.jmap import mail as jmap_mail
from correo.jmap.threads import thread_of
from correo.message.objectid import email_id, mailbox_id, thread_id_of
from correo.message.preview import PREVIEW_CHARS, preview_part, preview_text
from correo.message.structure import parse_structure
from correo.server.imap.multisearch import source_mailboxes


def _cmd(line: bytes) -> object:
    return parse_command([line], [])


def test_search_within_and_objectid_keys() -> None:
    cmd = _cmd(b"a SEARCH OLDER 10 YOUNGER 5 EMAILID E00ab THREADID T_-9")
    assert isinstance(cmd, Search)
    assert cmd.criteria == And(
        (AgeKey(True, 10), AgeKey(False, 5), ObjectIdKey("EMAILID", "E00ab"),
         ObjectIdKey("THREADID", "T_-9"))
    )  # fmt: skip
    for bad in (b"a SEARCH OLDER 0", b"a SEARCH YOUNGER x", b"a SEARCH OLDER",
                b"a SEARCH EMAILID a.b", b"a SEARCH THREADID " + b"x" * 256):  # fmt: skip
        with pytest.raises(ParseError):
            _cmd(bad)


class _Msg:
    def __init__(self, uid: int, when: float) -> None:
        self.uid = uid
        self.seq = uid
        self.internal_date = dt.datetime.fromtimestamp(when, dt.UTC)


def test_within_and_objectid_evaluate() -> None:
    now = 1_000_000.0
    old, new = _Msg(1, now - 100), _Msg(2, now - 10)
    older = compile_program(AgeKey(True, 50), max_seq=2, max_uid=2, now=now)
    younger = compile_program(AgeKey(False, 50), max_seq=2, max_uid=2, now=now)
    assert [older(old), older(new)] == [True, False]  # type: ignore[arg-type]
    assert [younger(old), younger(new)] == [False, True]  # type: ignore[arg-type]
    ids = {1: ("Ea", "Ta"), 2: ("Eb", "Ta")}
    by_email = compile_program(ObjectIdKey("EMAILID", "Eb"), max_seq=2, max_uid=2, ids=ids)
    by_thread = compile_program(ObjectIdKey("THREADID", "Ta"), max_seq=2, max_uid=2, ids=ids)
    assert [by_email(old), by_email(new)] == [False, True]  # type: ignore[arg-type]
    assert [by_thread(old), by_thread(new)] == [True, True]  # type: ignore[arg-type]
    unknown = compile_program(ObjectIdKey("EMAILID", "Ea"), max_seq=2, max_uid=2)
    assert not unknown(old)  # type: ignore[arg-type]


def test_fetch_items() -> None:
    cmd = _cmd(b"a FETCH 1 (EMAILID THREADID PREVIEW (LAZY) SAVEDATE UID)")
    assert isinstance(cmd, Fetch)
    assert [i.name for i in cmd.items] == ["EMAILID", "THREADID", "PREVIEW", "SAVEDATE", "UID"]
    assert isinstance(_cmd(b"a FETCH 1 PREVIEW"), Fetch)
    for bad in (b"a FETCH 1 (PREVIEW (FAST))", b"a FETCH 1 (PREVIEW ())", b"a FETCH 1 PREVIEW ("):
        with pytest.raises(ParseError):
            _cmd(bad)


def test_status_mailboxid() -> None:
    cmd = _cmd(b"a STATUS INBOX (MAILBOXID SIZE)")
    assert isinstance(cmd, Status) and cmd.items == ("MAILBOXID", "SIZE")
    line = status_response("INBOX", {"MAILBOXID": "(M7)", "SIZE": 12}, False)
    assert line == b'* STATUS "INBOX" (MAILBOXID (M7) SIZE 12)\r\n'


def test_create_special_use_grammar() -> None:
    cmd = _cmd(b"a CREATE Stuff (USE (\\Archive))")
    assert isinstance(cmd, Create) and cmd.special_use == ("\\Archive",)
    for bad in (b"a CREATE x (USE ())", b"a CREATE x (USE (Archive))", b"a CREATE x (FOO (\\A))"):
        with pytest.raises(ParseError):
            _cmd(bad)


def test_unauthenticate_resets_state_and_enabled() -> None:
    conn = ImapConnection()
    conn.authenticated()
    conn.enable("QRESYNC", "UTF8=ACCEPT")
    conn.selected(read_only=True)
    conn.receive_data(b"u UNAUTHENTICATE\r\n")
    event = conn.next_event()
    assert isinstance(event, CommandEvent) and isinstance(event.command, Unauthenticate)
    conn.unauthenticated()
    assert conn.state is ImapState.NOT_AUTHENTICATED
    assert not conn.enabled and not conn.read_only and not conn.utf8
    conn.receive_data(b"u2 UNAUTHENTICATE\r\n")
    assert b"u2 BAD" in getattr(conn.next_event(), "data", b"")


def test_object_ids_are_the_jmap_ids() -> None:
    digest = "0123456789abcdef" * 4
    assert email_id(digest) == jmap_mail.email_id(digest)
    assert mailbox_id(42) == jmap_mail.mailbox_id(42)
    head = b"Subject: Re: x\r\nReferences: <a@b> <c@d>\r\n\r\nbody <e@f>"
    assert thread_id_of(head, digest) == thread_of(
        b"Subject: Re: x\r\nReferences: <a@b> <c@d>\r\n\r\n", digest
    )
    reply = b"In-Reply-To: <a@b>\n\nbody"
    assert thread_id_of(reply, digest) == thread_id_of(b"Message-ID: <a@b>\r\n\r\n", "ff" * 32)
    for ident in (email_id(digest), thread_id_of(head, digest), mailbox_id(2**32 - 1)):
        assert 1 <= len(ident) <= 255 and ident.isalnum()  # RFC 8474 §3 objectid


def _preview(raw: bytes) -> str:
    tree = parse_structure(raw)
    part = preview_part(tree)
    assert part is not None
    return preview_text(raw[part.header_end : part.body_end], part)


def test_preview_text() -> None:
    plain = b"Subject: x\r\n\r\n  Hello\r\n\r\n\tthere \x01 you\r\n"
    assert _preview(plain) == "Hello there you"
    qp = b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
    qp += b"quoted-printable\r\n\r\nCaf=E9 =\r\nnoir\r\n"
    assert _preview(qp) == "Café noir"
    html_first = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n"
        b"<p>rich</p>\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain one\r\n--b--\r\n"
    )
    assert _preview(html_first) == "plain one"  # text/plain preferred
    attached = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
        b"Content-Disposition: attachment\r\n\r\nfile\r\n--b--\r\n"
    )
    assert preview_part(parse_structure(attached)) is None
    assert len(_preview(b"\r\n" + b"long words " * 500)) == PREVIEW_CHARS


def test_savedate_keys() -> None:
    cmd = _cmd(b"a SEARCH SAVEDBEFORE 1-Feb-2024 SAVEDON 2-Feb-2024 SAVEDSINCE 3-Feb-2024")
    assert isinstance(cmd, Search)
    assert cmd.criteria == And(
        (SaveDateKey("before", dt.date(2024, 2, 1)), SaveDateKey("on", dt.date(2024, 2, 2)),
         SaveDateKey("since", dt.date(2024, 2, 3)))
    )  # fmt: skip
    assert isinstance(_cmd(b"a SEARCH SAVEDATESUPPORTED"), Search)
    old = _Msg(1, dt.datetime(2024, 2, 1, 12, tzinfo=dt.UTC).timestamp())
    saved = {1: dt.date(2024, 3, 1)}
    on = compile_program(SaveDateKey("on", dt.date(2024, 3, 1)), max_seq=1, max_uid=1,
                         save_dates=saved)  # fmt: skip
    assert on(old)  # type: ignore[arg-type]
    fallback = compile_program(SaveDateKey("on", dt.date(2024, 2, 1)), max_seq=1, max_uid=1)
    assert fallback(old)  # type: ignore[arg-type]  # no save date: INTERNALDATE's day


def _events(conn: ImapConnection, data: bytes) -> list[object]:
    conn.receive_data(data)
    out: list[object] = []
    while True:
        ev = conn.next_event()
        if isinstance(ev, Sentinel):
            return out
        out.append(ev)
        if isinstance(ev, AppendStart):
            conn.append_accept()


def test_replace_streams_like_append() -> None:
    conn = ImapConnection()
    conn.authenticated()
    assert b"r BAD" in b"".join(
        getattr(e, "data", b"") for e in _events(conn, b"r REPLACE 1 INBOX {2+}\r\nhi\r\n")
    )  # authenticated state: REPLACE needs a selected mailbox
    conn.selected(read_only=False)
    events = _events(conn, b"r UID REPLACE 7 Drafts (\\Draft) {2+}\r\nhi\r\n")
    start = events[0]
    assert isinstance(start, AppendStart) and start.uid and start.mailbox == "Drafts"
    assert start.replace is not None and start.replace.resolve(10) == [(7, 7)]
    assert start.flags == ("\\Draft",)
    assert [type(e).__name__ for e in events[1:]] == ["AppendChunk", "AppendEnd", "AppendDone"]
    events = _events(conn, b"s REPLACE 1 INBOX {1+}\r\na {1+}\r\nb\r\n")  # one message only
    assert any(b"s BAD" in getattr(e, "data", b"") for e in events), events
    events = _events(conn, b"t REPLACE 1 INBOX CATENATE (TEXT {1+}\r\na)\r\n")
    assert any(b"t NO" in getattr(e, "data", b"") for e in events), events
    events = _events(conn, b"u NOOP\r\n")
    assert isinstance(events[-1], CommandEvent)


def test_esearch_grammar_and_sources() -> None:
    cmd = parse_any(
        [b'a ESEARCH IN (SUBTREE-ONE "A" MAILBOXES (B C) PERSONAL) RETURN (COUNT) UNSEEN'], []
    )
    assert isinstance(cmd, MultiSearch) and cmd.returns == ("COUNT",)
    assert cmd.sources == (("SUBTREE-ONE", ("A",)), ("MAILBOXES", ("B", "C")), ("PERSONAL", ()))
    assert parse_any([b"a ESEARCH 1:3"], []) == MultiSearch((), ("ALL",), None, _seq(b"1:3"))
    for bad in (
        b"a ESEARCH IN (SUBTREE A) 1",
        b"a ESEARCH IN (PERSONAL) $",
        b"a ESEARCH IN (PERSONAL) RETURN (UPDATE) ALL",
        b"a ESEARCH IN (NOPE) ALL",
        b"a ESEARCH IN PERSONAL ALL",
    ):
        with pytest.raises(ParseError):
            parse_any([bad], [])
    names = ["INBOX", "A", "A/b", "A/b/c", "B", "Sent"]
    sources = parse_any([b"a ESEARCH IN (SUBTREE-ONE A SUBSCRIBED SELECTED) ALL"], [])
    assert isinstance(sources, MultiSearch)
    assert source_mailboxes(sources, names, {"Sent"}, "B") == ["A", "A/b", "B", "Sent"]
    subtree = parse_any([b"a ESEARCH IN (SUBTREE A INBOXES) ALL"], [])
    assert isinstance(subtree, MultiSearch)
    assert source_mailboxes(subtree, names, set(), None) == ["INBOX", "A", "A/b", "A/b/c"]
    assert source_mailboxes(parse_any([b"a ESEARCH ALL"], []), names, set(), None) == []  # type: ignore[arg-type]


def _seq(text: bytes) -> object:
    from correo.imap.search import SeqKey
    from correo.imap.sequence import SequenceSet

    return SeqKey(SequenceSet.parse(text))


def test_uidonly_refuses_message_numbers() -> None:
    conn = ImapConnection()
    conn.authenticated()
    assert conn.enable("UIDONLY") == ("UIDONLY",)
    assert conn.uidonly and conn.vanished and not conn.qresync
    conn.selected(read_only=False)
    for line in (b"FETCH 1 FLAGS", b"STORE 1 FLAGS ()", b"SEARCH 1", b"UID SEARCH 1:3",
                 b"COPY 1 X", b"MOVE 1 X", b"THREAD REFERENCES UTF-8 ALL"):  # fmt: skip
        events = _events(conn, b"a " + line + b"\r\n")
        assert events == [Respond(b"a BAD [UIDREQUIRED] use UIDs, not message numbers\r\n")]
    for line in (b"UID FETCH 1 FLAGS", b"UID SEARCH UID 1:* $", b"UID MOVE 1 X", b"NOOP"):
        events = _events(conn, b"a " + line + b"\r\n")
        assert isinstance(events[0], CommandEvent), (line, events)
    events = _events(conn, b"r REPLACE 1 INBOX {1+}\r\nx\r\n")
    assert any(b"UIDREQUIRED" in getattr(e, "data", b"") for e in events), events
    assert uses_sequence_numbers(_cmd(b"a FETCH 1 UID"))
    assert not uses_sequence_numbers(_cmd(b"a UID FETCH 1 UID"))
