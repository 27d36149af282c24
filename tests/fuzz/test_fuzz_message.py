"""Property tests for the message parser under hostile input."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.message import (
    Limits,
    Part,
    StructureBuilder,
    bodystructure,
    decode_header,
    decode_transfer,
    envelope,
    parse_address_list,
    parse_content_type,
    parse_structure,
    section,
)

# Fragments that steer random bytes towards interesting MIME shapes.
FRAGMENTS = [
    b"Content-Type: multipart/mixed; boundary=a\r\n",
    b"Content-Type: multipart/mixed; boundary=ab\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/digest; boundary=a\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b'From: "x" <a@b>, G: c@d;\r\n',
    b"Subject: =?utf-8?q?=C3=A9?=\r\n",
    b"\r\n",
    b"\n",
    b"--a\r\n",
    b"--a--\r\n",
    b"--ab\n",
    b"--a \t\r\n",
    b"body\r\n",
    b" folded\r\n",
    b"\xff\xfe",
    b"=?",
    b"(",
    b'"',
]
messages = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=20)), max_size=40).map(
    b"".join
)


def _feed(data: bytes, cuts: list[int]) -> Part:
    b = StructureBuilder()
    prev = 0
    for c in sorted({c % (len(data) + 1) for c in cuts}):
        b.feed(data[prev:c])
        prev = c
    b.feed(data[prev:])
    return b.finish()


@settings(max_examples=300, deadline=None)
@given(messages, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_bytes_parse_and_chunking_is_irrelevant(data: bytes, cuts: list[int]) -> None:
    """Invariant: any input yields a tree (never an exception), offsets lie within the
    message, the tree survives JSON, IMAP formatting works on it, and feeding in any
    chunk split - including byte by byte - gives exactly the tree of a single feed."""
    whole = parse_structure(data)
    assert _feed(data, cuts) == whole
    assert _feed(data, list(range(len(data)))) == whole
    assert Part.from_json(json.loads(json.dumps(whole.to_json()))) == whole
    for p in whole.walk():
        assert 0 <= p.header_start <= p.header_end <= p.body_end <= len(data)
    envelope(whole)
    bodystructure(whole)
    bodystructure(whole, extended=False)
    for spec in ("1", "1.1", "2.MIME", "1.HEADER", "TEXT", "1.2.3.TEXT"):
        r = section(whole, spec)
        assert r is None or 0 <= r[0] <= r[1] <= len(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_header_value_parsers_are_total(value: str) -> None:
    """Invariant: the header value parsers return a value for any text, never raise."""
    parse_content_type(value)
    parse_address_list(value)
    decode_header(value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["base64", "quoted-printable", "7bit", None]))
def test_decode_transfer_is_total(data: bytes, cte: str | None) -> None:
    """Invariant: transfer decoding accepts any bytes."""
    decode_transfer(data, cte)


def test_deep_nesting_is_bounded() -> None:
    depth = 5000
    # "b%dz": no boundary is a prefix of another, since a delimiter line that merely
    # starts with an open boundary closes that part (RFC 2046 §5.1.1, as Dovecot reads it)
    data = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%dz\r\n\r\n--b%dz\r\n" % (i, i)
        for i in range(depth)
    )
    root = parse_structure(data)
    assert len(root.walk()) <= Limits().max_depth + 1
    assert len(bodystructure(root)) < 100_000
    # Boundaries that are prefixes of each other ("b1", "b10", …) nest and close at
    # once; the tree stays within the part limit however it comes out.
    data = data.replace(b"z\r\n", b"\r\n")
    root = parse_structure(data)
    assert len(root.walk()) <= Limits().max_parts + 1


def test_part_count_is_bounded() -> None:
    data = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\n\r\n" * 50_000
    root = parse_structure(data, Limits(max_parts=1000))
    assert len(root.walk()) <= 1000
    assert "part-limit" in root.defects


def test_nested_rfc822_bomb_is_bounded() -> None:
    data = b"Content-Type: message/rfc822\r\n\r\n" * 10_000
    root = parse_structure(data)
    assert len(root.walk()) <= Limits().max_depth + 1


def test_a_boundary_of_a_multipart_left_behind_delimits_nothing() -> None:
    """An outer delimiter ends an unclosed inner multipart; a later line with the inner
    boundary is then body text (as Dovecot reads it), not a delimiter of a multipart no
    longer open, which emptied the parser's stack (IndexError: the session crashed)."""
    data = (
        b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n"
        b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n\r\ntext\r\n"
        b"--outer\r\n\r\nsecond\r\n--inner\r\n\r\nthird\r\n--outer--\r\n"
    )
    root = parse_structure(data)
    first, second = root.children
    assert "unclosed-multipart" in first.defects
    assert data[second.header_end : second.body_end] == b"second\r\n--inner\r\n\r\nthird"
    # the same past the part limit: thousands of nested multiparts, each delimiter
    # closing the ones inside it once no part may be added
    deep = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(3000)
    ) + b"".join(b"--b%d--\r\n" % i for i in reversed(range(3000)))
    root = parse_structure(deep)
    assert len(root.walk()) <= Limits().max_parts + 1
