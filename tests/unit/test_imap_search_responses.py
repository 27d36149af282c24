"""SEARCH evaluation over a fake MessageView, and response serialisation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from correo.imap import responses as r
from correo.imap.commands import ParseOptions, Search, parse_command
from correo.imap.errors import LocalProtocolError
from correo.imap.search import compile_program, evaluate

UTC = dt.UTC


@dataclass
class View:
    seq: int
    uid: int
    flags: frozenset[str] = frozenset()
    internal_date: dt.datetime = dt.datetime(
        2024, 3, 10, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))
    )
    sent_date: dt.datetime | None = dt.datetime(2024, 3, 9, 8, 0, tzinfo=UTC)
    size: int = 1000
    modseq: int = 5
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""

    def header(self, name: str) -> Sequence[str]:
        return self.headers.get(name.lower(), [])

    def body_contains(self, needle: str) -> bool:
        return needle.casefold() in self.body.casefold()

    def text_contains(self, needle: str) -> bool:
        heads = " ".join(v for vs in self.headers.values() for v in vs)
        return needle.casefold() in (heads + " " + self.body).casefold()


MSG = View(
    seq=3,
    uid=30,
    flags=frozenset({"\\Seen", "$Work"}),
    headers={"from": ["Jörg <j@example.org>"], "subject": ["Hello World"], "x-prio": ["1"]},
    body="The quick brown fox",
)


def matches(program: bytes, view: View = MSG, saved: set[int] | None = None) -> bool:
    cmd = parse_command([b"a SEARCH " + program], [], options=ParseOptions(utf8=True))
    assert isinstance(cmd, Search)
    return evaluate(cmd.criteria, view, max_seq=10, max_uid=100, saved=saved)


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        (b"ALL", True),
        (b"SEEN", True),
        (b"UNSEEN", False),
        (b"ANSWERED", False),
        (b"UNANSWERED UNDELETED UNDRAFT UNFLAGGED", True),
        (b"KEYWORD $work", True),  # case-insensitive
        (b"UNKEYWORD $Work", False),
        (b'FROM "j\xc3\xb6rg"', True),
        (b'FROM "J\xc3\x96RG"', True),  # casefold: Ö matches ö
        (b"SUBJECT world", True),
        (b'HEADER X-Prio ""', True),
        (b'HEADER X-Other ""', False),
        (b"HEADER x-prio 2", False),
        (b"TO someone", False),
        (b"BODY QUICK", True),
        (b"TEXT hello", True),
        (b"TEXT absent", False),
        (b"ON 10-Mar-2024", True),  # the internal date's own day, not UTC's
        (b"BEFORE 11-Mar-2024", True),
        (b"SINCE 10-Mar-2024", True),
        (b"SINCE 11-Mar-2024", False),
        (b"SENTON 9-Mar-2024", True),
        (b"SENTBEFORE 9-Mar-2024", False),
        (b"SENTSINCE 1-Jan-2024", True),
        (b"LARGER 999", True),
        (b"LARGER 1000", False),
        (b"SMALLER 1001", True),
        (b"3", True),
        (b"4:*", False),
        (b"*", False),
        (b"UID 30", True),
        (b"UID 31:*", False),
        (b"UID 1:29,31", False),
        (b"NOT SEEN", False),
        (b"OR UNSEEN SUBJECT hello", True),
        (b"(SEEN FROM x) OR ANSWERED (NOT SEEN)", False),
        (b"MODSEQ 5", True),
        (b'MODSEQ "/flags/\\\\Seen" all 6', False),
        (b"NEW", False),
        (b"OLD", True),
        (b"RECENT", False),
    ],
)
def test_evaluate(program: bytes, expected: bool) -> None:
    assert matches(program) is expected


def test_saved_result_and_empty_sent_date() -> None:
    assert matches(b"$", saved={30})
    assert not matches(b"$", saved={31})
    assert not matches(b"$")
    no_date = View(seq=1, uid=1, sent_date=None)
    assert not matches(b"SENTSINCE 1-Jan-1970", no_date)


def test_compiled_program_many_messages() -> None:
    cmd = parse_command([b"a SEARCH 2:4 NOT DELETED"], [])
    assert isinstance(cmd, Search)
    test = compile_program(cmd.criteria, max_seq=5, max_uid=5)
    views = [
        View(seq=i, uid=i, flags=frozenset({"\\Deleted"} if i == 3 else ())) for i in range(1, 6)
    ]
    assert [v.seq for v in views if test(v)] == [2, 4]


# ---- responses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "utf8", "wire"),
    [
        ("plain", True, b'"plain"'),
        ('a"b\\c', True, b'"a\\"b\\\\c"'),
        ("", True, b'""'),
        ("é", True, b'"\xc3\xa9"'),
        ("é", False, b"{2}\r\n\xc3\xa9"),
        ("a\r\nb", True, b"{4}\r\na\r\nb"),
        ("x" * 2000, True, b"{2000}\r\n" + b"x" * 2000),
    ],
)
def test_quote_string(value: str, utf8: bool, wire: bytes) -> None:
    assert r.quote_string(value, utf8) == wire


def test_status_lines() -> None:
    assert r.tagged("a1", "OK", "done", "READ-WRITE") == b"a1 OK [READ-WRITE] done\r\n"
    assert r.untagged("OK", "ok", "UIDVALIDITY 3") == b"* OK [UIDVALIDITY 3] ok\r\n"
    assert r.untagged("3 EXISTS") == b"* 3 EXISTS\r\n"
    assert r.continuation("idling") == b"+ idling\r\n"
    with pytest.raises(LocalProtocolError):
        r.tagged("a", "OK", "x\r\n* injected")
    with pytest.raises(LocalProtocolError):
        r.tagged("a", "MAYBE", "x")
    with pytest.raises(LocalProtocolError):
        r.untagged("OK", "x", "BAD]CODE")


def test_structured_responses() -> None:
    assert r.encode_list([1, None, "a b", b"x", [r.Raw(b"\\Seen")]]) == b'(1 NIL "a b" x (\\Seen))'
    items = [(b"UID", b"7"), (b"FLAGS", r.flags_line(["\\Seen"]))]
    assert r.fetch_response(3, items) == b"* 3 FETCH (UID 7 FLAGS (\\Seen))\r\n"
    assert r.esearch("a1", True, min=1, max=9, count=3, all=[1, 5, 9]) == (
        b'* ESEARCH (TAG "a1") UID MIN 1 MAX 9 COUNT 3 ALL 1,5,9\r\n'
    )
    assert r.esearch("a1", False, count=0, all=[]) == b'* ESEARCH (TAG "a1") COUNT 0\r\n'
    assert r.search_response([2, 3], modseq=9) == b"* SEARCH 2 3 (MODSEQ 9)\r\n"
    assert r.search_response([]) == b"* SEARCH\r\n"
    assert r.list_response(["\\HasNoChildren"], "/", "Entwürfe", False) == (
        b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"\r\n'
    )
    assert r.list_response([], "/", "Entwürfe", True, {"CHILDINFO": ["SUBSCRIBED"]}) == (
        b'* LIST () "/" "Entw\xc3\xbcrfe" ("CHILDINFO" (SUBSCRIBED))\r\n'
    )
    assert r.status_response("INBOX", {"MESSAGES": 2, "UIDNEXT": 7}, False) == (
        b'* STATUS "INBOX" (MESSAGES 2 UIDNEXT 7)\r\n'
    )
    assert (
        r.capability_line(["IMAP4rev2", "AUTH=PLAIN"]) == b"* CAPABILITY IMAP4rev2 AUTH=PLAIN\r\n"
    )
    assert r.vanished([1, 2, 3, 7], earlier=True) == b"* VANISHED (EARLIER) 1:3,7\r\n"
    assert r.literal(b"\x00a", binary=True) == b"~{2}\r\n\x00a"


def test_internal_date() -> None:
    tz = dt.timezone(-dt.timedelta(hours=7))
    assert r.format_internal_date(dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz)) == (
        b'"17-Jul-1996 02:44:25 -0700"'
    )
    assert r.format_internal_date(0.0) == b'" 1-Jan-1970 00:00:00 +0000"'
