"""The JMAP request envelope and mail model without a server: result references
(RFC 8620 §3.7), request validation (§3.3, §3.6.1), state tokens, keywords."""

from __future__ import annotations

import pytest

from correo.jmap.core import (
    Limits,
    MethodError,
    RequestError,
    evaluate_pointer,
    is_id,
    parse_request,
    resolve_references,
)
from correo.jmap.mail import (
    MailboxMark,
    flags_to_keywords,
    header_property,
    keyword_to_flag,
    parse_email,
    read_state,
    valid_keyword,
    write_state,
)

KNOWN = frozenset({"urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"})


def test_pointers_with_the_jmap_star() -> None:
    value = {"list": [{"id": "a", "ids": ["x", "y"]}, {"id": "b", "ids": ["z"]}]}
    assert evaluate_pointer(value, "/list/*/id") == ["a", "b"]
    assert evaluate_pointer(value, "/list/*/ids") == ["x", "y", "z"]  # flattened one level
    assert evaluate_pointer(value, "/list/1/id") == "b"
    for bad in ("/nothing", "/list/9/id", "list"):
        with pytest.raises(MethodError) as info:
            evaluate_pointer(value, bad)
        assert info.value.kind == "invalidResultReference"


def test_references_resolve_against_earlier_responses() -> None:
    responses = [("Email/query", {"ids": ["E1", "E2"]}, "q")]
    ref = {"resultOf": "q", "name": "Email/query", "path": "/ids"}
    assert resolve_references({"#ids": ref, "x": 1}, responses) == {"ids": ["E1", "E2"], "x": 1}
    nested = {"filter": {"operator": "AND", "conditions": [{"#inMailbox": dict(ref)}]}}
    assert resolve_references(nested, responses)["filter"]["conditions"][0] == {
        "inMailbox": ["E1", "E2"]
    }
    for args in (
        {"#ids": {**ref, "name": "Email/get"}},  # the response has another name
        {"#ids": {**ref, "resultOf": "zz"}},
        {"#ids": "not an object"},
    ):
        with pytest.raises(MethodError) as info:
            resolve_references(args, responses)
        assert info.value.kind == "invalidResultReference"
    with pytest.raises(MethodError) as both:
        resolve_references({"ids": [], "#ids": ref}, responses)
    assert both.value.kind == "invalidArguments"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ([], "notRequest"),
        ({"using": "x", "methodCalls": []}, "notRequest"),
        ({"using": [], "methodCalls": [["a", {}, 1]]}, "notRequest"),
        ({"using": ["urn:x"], "methodCalls": []}, "unknownCapability"),
        ({"using": [], "methodCalls": [["a", {}, "0"]] * 17}, "limit"),
        ({"using": [], "methodCalls": [], "createdIds": {"a": 1}}, "notRequest"),
    ],
)
def test_malformed_requests(value: object, kind: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(value, Limits(), KNOWN)
    assert info.value.kind == kind
    assert info.value.body()["type"] == "urn:ietf:params:jmap:error:" + kind


def test_ids_and_keywords() -> None:
    assert is_id("M123") and is_id("a-b_C") and not is_id("") and not is_id("a@b")
    assert not is_id("x" * 256)
    assert flags_to_keywords(["\\Seen", "\\Deleted", "$Label1", "\\Recent"]) == {
        "$seen": True,
        "$label1": True,
    }
    assert keyword_to_flag("$seen") == "\\Seen" and keyword_to_flag("$flagged") == "\\Flagged"
    assert keyword_to_flag("$label1") == "$label1"
    assert valid_keyword("$junk") and not valid_keyword("a b") and not valid_keyword("a(b")


def test_state_tokens_round_trip_and_refuse_garbage() -> None:
    marks = [MailboxMark(7, 10, 99, "INBOX"), MailboxMark(8, 1, 1, "Sent/2024")]
    token = write_state(marks)
    assert read_state(token) == {7: marks[0], 8: marks[1]}
    assert all(c.isalnum() or c in "-_" for c in token)
    for bad in ("", "x", "s!!!", "sAAAA", token[:-3]):
        assert read_state(bad) is None


def test_body_values_follow_the_alternative_structure() -> None:
    raw = (
        b"From: a@b.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain \xc3\xa9\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n"
    )
    props = ["subject", "textBody", "htmlBody", "bodyValues", "preview", "hasAttachment"]
    got = parse_email(raw, props, blob="Bx", body_values={"text": True}, max_body_value_bytes=5)
    assert got["subject"] == "café"
    assert [p["type"] for p in got["textBody"]] == ["text/plain"]
    assert [p["type"] for p in got["htmlBody"]] == ["text/html"]
    text_part = got["textBody"][0]["partId"]
    assert got["bodyValues"] == {
        text_part: {"value": "plain", "isEncodingProblem": False, "isTruncated": True}
    }
    assert got["preview"] == "plain é" and got["hasAttachment"] is False


def test_header_properties_in_raw_and_text_forms() -> None:
    raw = b"Subject: =?utf-8?q?caf=C3=A9?=\r\nX-Tag: one\r\nX-Tag:  two\r\n\r\nbody\r\n"
    props = ["header:Subject:asText", "header:X-Tag", "header:x-tag:all", "header:None"]
    got = parse_email(raw, props, blob="Bx")
    assert got["header:Subject:asText"] == "café"
    assert got["header:X-Tag"] == "  two"  # RFC 8621 §4.1.3: the last, as it is
    assert got["header:x-tag:all"] == [" one", "  two"]
    assert got["header:None"] is None
    for bad in ("header:", "header:A:asBogus", "header:A:asText:all:x", "header:a b"):
        assert header_property(bad) is None
