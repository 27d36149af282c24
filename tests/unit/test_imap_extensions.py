"""Parsers of the extension commands and IMAP URLs: tables of valid and invalid input
(RFC 5267 RETURN options, RFC 5465 NOTIFY, RFC 4467 URLAUTH, RFC 5092 URLs)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correo.imap.commands import FetchAtt, ParseOptions, Search, Sort, SortCriterion
from correo.imap.errors import ParseError
from correo.imap.extended import CancelUpdate, parse_any
from correo.imap.notify import EventGroup, Notify
from correo.imap.returnopts import format_ordered
from correo.imap.search import All
from correo.imap.urlauth import FetchUrl, GenUrlAuth, ResetKey, UrlFetch
from correo.imap.urls import UrlError, parse_url


def parse(line: bytes) -> object:
    return parse_any([line], [], options=ParseOptions())


VALID: list[tuple[bytes, object]] = [
    (
        b"a SEARCH RETURN (PARTIAL 5:1 COUNT) ALL",
        Search(False, All(), None, ("PARTIAL", "COUNT"), (1, 5)),
    ),
    (b"a SEARCH RETURN (CONTEXT UPDATE) ALL", Search(False, All(), None, ("CONTEXT", "UPDATE"))),
    (
        b"a SEARCH RETURN (UPDATE (UID FLAGS)) ALL",
        Search(False, All(), None, ("UPDATE",), None, (FetchAtt("UID"), FetchAtt("FLAGS"))),
    ),
    (
        b"a UID SORT RETURN (MIN ALL) (REVERSE DATE) UTF-8 ALL",
        Sort(True, (SortCriterion("DATE", True),), "UTF-8", All(), ("MIN", "ALL")),
    ),
    (b'a CANCELUPDATE "t1" "t2"', CancelUpdate(("t1", "t2"))),
    (b"a NOTIFY NONE", Notify(None)),
    (
        b"a NOTIFY SET STATUS (SELECTED (MessageNew (UID) MessageExpunge))"
        b" (subtree (Lists Other) (MailboxName SubscriptionChange)) (PERSONAL NONE)",
        Notify(
            (
                EventGroup("SELECTED", ("MessageNew", "MessageExpunge"), (), (FetchAtt("UID"),)),
                EventGroup("SUBTREE", ("MailboxName", "SubscriptionChange"), ("Lists", "Other")),
                EventGroup("PERSONAL"),
            ),
            status=True,
        ),
    ),
    (
        b"a NOTIFY SET (mailboxes inbox (messagenew messageexpunge flagchange Custom))",
        Notify(
            (
                EventGroup(
                    "MAILBOXES",
                    ("MessageNew", "MessageExpunge", "FlagChange", "CUSTOM"),
                    ("INBOX",),
                ),
            )
        ),
    ),
    (
        b'a GENURLAUTH "imap://a@b/INBOX/;uid=1;urlauth=authuser" internal x y',
        GenUrlAuth((("imap://a@b/INBOX/;uid=1;urlauth=authuser", "INTERNAL"), ("x", "Y"))),
    ),
    (b"a RESETKEY", ResetKey()),
    (b"a RESETKEY inbox INTERNAL", ResetKey("INBOX", ("INTERNAL",))),
    (
        b'a URLFETCH "u1" ("u2" BINARY BODYPARTSTRUCTURE) ("u3")',
        UrlFetch(
            (
                FetchUrl("u1"),
                FetchUrl("u2", frozenset({"BINARY", "BODYPARTSTRUCTURE"})),
                FetchUrl("u3", frozenset({"BODY"})),
            )
        ),
    ),
]

INVALID = [
    b"a SEARCH RETURN (PARTIAL 1) ALL",
    b"a SEARCH RETURN (PARTIAL 1:*) ALL",
    b"a SEARCH RETURN (PARTIAL 0:2) ALL",
    b"a SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL",
    b"a SEARCH RETURN (UPDATE UPDATE) ALL",
    b"a SEARCH RETURN (ALL PARTIAL 1:2) ALL",
    b"a SORT RETURN (FOO) (DATE) UTF-8 ALL",
    b"a CANCELUPDATE",
    b"a CANCELUPDATE t1",
    b"a NOTIFY",
    b"a NOTIFY SET (SELECTED (MessageNew))",
    b"a NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED NONE)",
    b"a NOTIFY SET (SUBTREE (MailboxName))",
    b"a NOTIFY SET (PERSONAL (MailboxName MailboxName))",
    b"a NOTIFY SET (PERSONAL ())",
    b"a GENURLAUTH",
    b'a GENURLAUTH "u"',
    b"a URLFETCH",
    b'a URLFETCH ("u" BODY BINARY)',
    b'a URLFETCH ("u" HEADER)',
    b"a RESETKEY INBOX (X)",
]


@pytest.mark.parametrize(("line", "command"), VALID)
def test_valid(line: bytes, command: object) -> None:
    assert parse(line) == command


@pytest.mark.parametrize("line", INVALID)
def test_invalid(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse(line)


def test_format_ordered_keeps_order_and_only_ascending_ranges() -> None:
    assert format_ordered([5, 3, 4, 2, 1]) == "5,3:4,2,1"  # RFC 5267 §3.2
    assert format_ordered([1, 2, 3]) == "1:3"
    assert format_ordered([]) == ""


URLS = [
    (
        "imap://alice@example.test/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.2/;PARTIAL=4.10",
        {"mailbox": "INBOX", "uidvalidity": 7, "uid": 20, "section": "1.2", "partial": (4, 10)},
    ),
    ("/Drafts/;uid=3;urlauth=authuser", {"mailbox": "Drafts", "uid": 3, "access": "authuser"}),
    ("/a%20b/c/;UID=1/;section=header", {"mailbox": "a b/c", "uid": 1, "section": "HEADER"}),
    ("/inbox/;uid=1", {"mailbox": "INBOX"}),
]


@pytest.mark.parametrize(("text", "fields"), URLS)
def test_urls(text: str, fields: dict[str, object]) -> None:
    url = parse_url(text)
    for name, value in fields.items():
        assert getattr(url, name) == value, name


def test_urlauth_url_parts_and_owner() -> None:
    url = parse_url(
        "imap://alice@example.test/Box/;uid=5;expire=2030-01-01T00:00:00Z;"
        "urlauth=user+bob@example.test:INTERNAL:00112233445566778899aabbccddeeff"
    )
    assert url.owner() == "alice@example.test"
    assert url.access_user() == "bob@example.test"
    assert url.mechanism == "INTERNAL" and url.token == "00112233445566778899aabbccddeeff"
    assert url.rump.endswith(";urlauth=user+bob@example.test")
    assert url.expire is not None and url.expire.year == 2030
    assert parse_url("imap://alice%40x.test@host/B/;uid=1").owner() == "alice@x.test"


@pytest.mark.parametrize(
    "text",
    [
        "imap://host/INBOX",  # a whole mailbox: not a message
        "imap://host/INBOX/;uid=0",
        "/INBOX/;UID=1/;PARTIAL=x",
        "/INBOX/;UID=1;urlauth=somebody",
        "/INBOX/;UID=1;expire=never;urlauth=authuser",
        "/INBOX/;UID=1;expire=2030-01-01T00:00:00;urlauth=authuser",  # no time zone
        "/%ff/;UID=1",
        "INBOX/;UID=1",
        "/" + "a" * 9000 + "/;UID=1",
    ],
)
def test_bad_urls(text: str) -> None:
    with pytest.raises(UrlError):
        parse_url(text)
    with pytest.raises(UrlError):
        parse_url("/x/;UID=1", relative=False)


@given(st.text(max_size=300))
def test_any_text_is_a_url_or_url_error(text: str) -> None:
    """Invariant: any input yields a URL or UrlError, never another exception."""
    try:
        parse_url(text)
    except UrlError:
        pass


def test_url_parsing_is_linear() -> None:
    hostile = "/" + "/;" * 3000 + "x"
    started = time.thread_time()  # CPU time: a loaded machine's waits do not count
    for _ in range(20):
        with pytest.raises(UrlError):
            parse_url(hostile)
    assert time.thread_time() - started < 0.5
