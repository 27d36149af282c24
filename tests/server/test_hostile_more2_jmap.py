"""JMAP over real sockets against one server, second hostile pass: names written in
raw UTF-8 (RFC 6532), arriving by SMTPUTF8 or by APPEND, come out of Email/get as the
names they are (they came out as mojibake, and encoded-word names not decoded at
all), and Email/query's from/to/subject filters find them. The module ends by checking
that nothing crashed and the event loop never stalled (Server.stop)."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Server, crash_free_server
from tests.server.imap_helpers import imap
from tests.server.jmap_helpers import Jmap

CAROL = "carol@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from crash_free_server(tmp_path_factory, "hostile-more2-jmap")


_NAMED = (
    "From: Jörg Müller <joerg@sender.example>\r\n"
    'To: "Zoë, Ünïcode" <carol@example.test>, =?utf-8?q?a=2C_J=C3=B6rg?= <x@example.test>\r\n'
    "Cc: =?iso-8859-1?q?J=F6rg?= <c@sender.example>, Ann <ann@sender.example>\r\n"
    "Subject: Grüße aus Köln ({tag})\r\n"
    "Message-ID: <{tag}@sender.example>\r\n"
    "\r\n"
    "Hallo.\r\n"
)


def _find(jmap: Jmap, tag: str) -> dict[str, Any]:
    """The Email whose subject ends in ``tag``, waited for (delivery is asynchronous)."""
    deadline = time.monotonic() + 30
    while True:
        got = jmap.call("Email/get", ids=None, properties=["subject", "from", "to", "cc", "sender"])
        for email in got["list"]:
            if email["subject"] and email["subject"].endswith(f"({tag})"):
                return email
        assert time.monotonic() < deadline, got
        time.sleep(0.05)


def _check(email: dict[str, Any], tag: str) -> None:
    assert email["subject"] == f"Grüße aus Köln ({tag})"
    assert email["from"] == [{"name": "Jörg Müller", "email": "joerg@sender.example"}]
    assert email["to"] == [
        {"name": "Zoë, Ünïcode", "email": "carol@example.test"},
        {"name": "a, Jörg", "email": "x@example.test"},  # decoded after the list is split
    ]
    assert email["cc"] == [
        {"name": "Jörg", "email": "c@sender.example"},
        {"name": "Ann", "email": "ann@sender.example"},
    ]
    assert email["sender"] is None


def test_utf8_names_by_smtputf8(srv: Server) -> None:
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("sender.example")
        assert smtp.has_extn("smtputf8")
        raw = _NAMED.format(tag="mx").encode()
        smtp.sendmail("joerg@sender.example", [CAROL], raw, ["SMTPUTF8", "BODY=8BITMIME"])
    _check(_find(Jmap(srv, CAROL), "mx"), "mx")


def test_utf8_names_by_append_and_the_query_filters(srv: Server) -> None:
    client = imap(srv, CAROL)
    client.append("INBOX", "", None, _NAMED.format(tag="append").encode())
    client.logout()
    jmap = Jmap(srv, CAROL)
    email = _find(jmap, "append")
    _check(email, "append")
    for cond in ({"from": "Jörg Müller"}, {"to": "ünïcode"}, {"cc": "jörg"},
                 {"subject": "grüße aus köln (append"}):  # fmt: skip
        ids = jmap.call("Email/query", filter=cond)["ids"]
        assert email["id"] in ids, cond
    assert jmap.call("Email/query", filter={"from": "Jörg Mueller"})["ids"] == []


def test_latin1_and_broken_octets_in_a_name_still_answer(srv: Server) -> None:
    """8-bit octets that are not UTF-8 are read as Latin-1, never a failed call."""
    raw = (
        b"From: \xe9t\xe9 <e@sender.example>\r\nTo: \xff\xfe <carol@example.test>\r\n"
        b"Subject: latin (latin)\r\n\r\nx\r\n"
    )
    client = imap(srv, CAROL)
    client.append("INBOX", "", None, raw)
    client.logout()
    email = _find(Jmap(srv, CAROL), "latin")
    assert email["from"] == [{"name": "été", "email": "e@sender.example"}]
    assert email["to"] == [{"name": "ÿþ", "email": "carol@example.test"}]


def test_search_snippets_of_large_bodies_leave_the_loop_free(srv: Server) -> None:
    """SearchSnippet/get ran its searches on the event loop: a term of 240 letters over
    a megabyte of body took 0.5 s each, times every id asked for (the module's
    Server.stop fails on the loop.blocked lines that made)."""
    body = ("x" * 76 + "\r\n") * 13_000 + "needle here\r\n"
    raw = f"From: a@sender.example\r\nSubject: big (big)\r\n\r\n{body}".encode()
    client = imap(srv, CAROL)
    client.append("INBOX", "", None, raw)
    client.logout()
    jmap = Jmap(srv, CAROL)
    email = _find(jmap, "big")
    terms = "x" * 240 + "q needle"  # one long word: 0.5 s a search over 1 MB
    got = jmap.call("SearchSnippet/get", emailIds=[email["id"]] * 20, filter={"body": terms})
    assert len(got["list"]) == 20
    assert all("<mark>needle</mark>" in (s["preview"] or "") for s in got["list"]), got
