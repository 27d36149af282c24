"""JMAP's reading of hostile messages (RFC 8621 §4): the stdlib parser recurses per
multipart/message level and tests every line against every enclosing boundary, so a
message nested a thousand deep raised RecursionError (failing every Email/get and text
search of the mailbox holding it) and 600 levels over 20,000 lines took 8 s.  Such a
message is now read as its header and one opaque body; real nesting is read in full."""

from __future__ import annotations

import random

import pytest

from correo.jmap.mail import find_part, parse_email, parse_message
from correo.jmap.search import searchable

PROPS = ["subject", "from", "textBody", "htmlBody", "attachments", "bodyValues", "preview",
         "bodyStructure", "hasAttachment", "sentAt"]  # fmt: skip


def nested(depth: int, kind: bytes = b"multipart/mixed", body: bytes = b"x\r\n") -> bytes:
    head = b"Subject: deep\r\nFrom: a@b.test\r\n"
    levels = b"".join(
        b"Content-Type: %s; boundary=b%d\r\n\r\n--b%d\r\n" % (kind, i, i) for i in range(depth)
    )
    return head + levels + b"Content-Type: text/plain\r\n\r\n" + body


def rfc822(depth: int) -> bytes:
    return b"Subject: deep\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * depth + b"\r\nx\r\n"


def _depth(structure: dict[str, object]) -> int:
    deepest, stack = 0, [(structure, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.get("subParts") or [])  # type: ignore[attr-defined]
    return deepest


@pytest.mark.parametrize(
    "raw",
    [
        nested(1000),
        nested(5000),
        nested(600, body=b"line\r\n" * 20_000),
        nested(2000, b"multipart/digest"),
        rfc822(5000),
        nested(3000).replace(b"\r\n", b"\r"),  # the stdlib splits lines at a bare CR too
    ],
    ids=["1000-deep", "5000-deep", "600-deep-long", "digests", "rfc822", "bare-cr"],
)
def test_deep_messages_are_read_as_one_opaque_body(raw: bytes) -> None:
    out = parse_email(raw, PROPS, blob="Bx", body_values={"all": True})
    assert out["subject"] == "deep"
    assert _depth(out["bodyStructure"]) == 0  # no tree built: header and one body
    assert not parse_message(raw).is_multipart()
    assert searchable(raw) is not None
    assert find_part(raw, "1") is not None


def test_real_nesting_is_read_in_full() -> None:
    """Twelve levels, and forty more boundaries than the quick count allows (a digest of
    forwarded messages): still the whole tree, by the second check."""
    inner = b"".join(
        b"--d\r\nContent-Type: multipart/alternative; boundary=a%d\r\n\r\n"
        b"--a%d\r\nContent-Type: text/plain\r\n\r\nt%d\r\n--a%d--\r\n" % (i, i, i, i)
        for i in range(40)
    )
    raw = nested(12, body=b"").replace(
        b"Content-Type: text/plain\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=d\r\n\r\n" + inner + b"--d--\r\n",
    )
    out = parse_email(raw, PROPS, blob="Bx", body_values={"all": True})
    assert _depth(out["bodyStructure"]) == 14
    assert len(out["textBody"]) == 40
    assert parse_message(raw).is_multipart()


def test_random_nesting_never_fails_a_call() -> None:
    """Any mix of multiparts, digests, message/rfc822 and line ends: an answer, never
    an exception (one used to fail the whole Email/get)."""
    rng = random.Random(5)
    pieces = [
        b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n",
        b"Content-Type: multipart/digest; boundary=r\r\n\r\n--r\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"--q--\r\n",
        b"text\r\n",
        b"\r",
        b"\n",
        b"Content-Transfer-Encoding: base64\r\n\r\n////\r\n",
    ]
    for _ in range(60):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 1500)))
        out = parse_email(raw, PROPS, blob="Bx", body_values={"all": True})
        assert set(PROPS) <= set(out)


@pytest.mark.parametrize(
    "value",
    [b"(" * 5000, b"(" * 3000 + b")" * 3000, b"g:" * 5000, b"a (" * 3000 + b"b@c.test"],
    ids=["open-comments", "nested-comments", "nested-groups", "comments-then-address"],
)
def test_address_fields_nested_thousands_deep_are_read(value: bytes) -> None:
    """The stdlib's address reader recurses per comment and group level: a To: of
    5,000 "(" raised RecursionError, and From/To are in Email/get's default properties,
    so one such message failed every Email/get of its mailbox (serverFail)."""
    raw = b"From: " + value + b"\r\nTo: " + value + b"\r\nSubject: s\r\n\r\nbody"
    out = parse_email(raw, ["from", "to", "sender", "replyTo", "subject"], blob="Bx")
    assert out["subject"] == "s"
    for field in ("from", "to"):
        assert out[field] is None or isinstance(out[field], list)


def test_many_encoded_words_decode_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 encoded words in a Subject took 65 s through the stdlib's decoder
    (quadratic); correo's decoder reads each word once."""
    import correo.message.encoded as encoded

    calls = 0
    real = encoded._raw_word

    def counting(enc: str, text: str) -> bytes:
        nonlocal calls
        calls += 1
        return real(enc, text)

    monkeypatch.setattr(encoded, "_raw_word", counting)
    words = 100_000
    raw = b"Subject: " + b"=?utf-8?q?a?= " * words + b"\r\nX: =?utf-8?q?J=C3=B6rg?=\r\n\r\nb"
    out = parse_email(raw, ["subject", "header:X:asText"], blob="Bx")
    assert out["subject"] == "a" * words  # RFC 2047 §6.2: no space between adjacent words
    assert out["header:X:asText"] == "J\u00f6rg"
    assert calls == words + 1
    calls = 0
    found = searchable(raw.replace(b"\r\nX:", b"\r\nFrom: " + b"(" * 5000 + b"\r\nX:"))
    assert found.subject == "a" * words  # the text search reads it the same way
    assert calls == words


def test_raw_utf8_and_invalid_octets_in_a_subject() -> None:
    """RFC 6532: a Subject in raw UTF-8 reads as written (it came out as U+FFFD pairs);
    octets that are not UTF-8 still give text, never an exception."""
    out = parse_email(
        b"Subject: caf\xc3\xa9 =?utf-8?q?na=C3=AFve?=\r\n\r\nb", ["subject"], blob="B"
    )
    assert out["subject"] == "caf\u00e9 na\u00efve"
    out = parse_email(b"Subject: \xff\xfe\x00 x\r\n\r\nb", ["subject"], blob="B")
    assert isinstance(out["subject"], str) and out["subject"].endswith("x")


@pytest.mark.parametrize(
    "charset", ["punycode", "idna", "base64", "rot13", "zlib_codec", "x-bogus"]
)
def test_a_charset_that_is_no_text_charset(charset: str) -> None:
    """charset=punycode made bytes.decode raise UnicodeError even with "replace" (and
    it decodes in quadratic time): parse_email and the text search raised, failing the
    whole Email/get.  A charset that is no text encoding reads as UTF-8, flagged."""
    raw = (
        b"Subject: s\r\nContent-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\n"
        b"caf\xc3\xa9 -\r\n" * 2000
    )
    out = parse_email(
        raw, ["textBody", "bodyValues", "preview"], blob="B", body_values={"all": True}
    )
    ((value),) = out["bodyValues"].values()
    assert value["value"].startswith("caf\u00e9 -") and value["isEncodingProblem"] is True
    assert "caf\u00e9" in searchable(raw).body
