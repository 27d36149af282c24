"""Modified UTF-7 (RFC 3501 §5.1.3) and sequence sets (RFC 9051 §9, RFC 5182)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correo.imap.errors import ParseError
from correo.imap.sequence import STAR, SequenceSet, format_sequence
from correo.imap.utf7 import decode_mutf7, encode_mutf7

UTF7_CASES = [
    ("INBOX", b"INBOX"),
    ("&", b"&-"),
    ("a&b", b"a&-b"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3 example
    ("Entwürfe", b"Entw&APw-rfe"),
    ("€", b"&IKw-"),
    ("😀", b"&2D3eAA-"),
]


@pytest.mark.parametrize(("text", "wire"), UTF7_CASES)
def test_mutf7_examples(text: str, wire: bytes) -> None:
    assert encode_mutf7(text) == wire
    assert decode_mutf7(wire) == text


@pytest.mark.parametrize(
    "bad",
    [
        b"&",  # unterminated
        b"&U,BTFw",  # unterminated
        b"&AGE-",  # "a" encoded: printable ASCII must be direct
        b"&U,BTFw-&ZeVnLIqe-",  # adjacent shifts must be merged
        b"&U,BTF-",  # bits left over / odd length
        b"&2D0-",  # lone surrogate
        b"caf\xc3\xa9",  # 8-bit
        b"tab\there",  # control
        b"&U/BTFw-",  # "/" is not the mUTF-7 alphabet
        b"&IKx-",  # non-zero padding bits
    ],
)
def test_mutf7_rejects(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode_mutf7(bad)


@given(st.text(max_size=40))
def test_mutf7_round_trip(text: str) -> None:
    try:
        text.encode("utf-16-be")
    except UnicodeEncodeError:
        return  # lone surrogates cannot be mailbox names
    assert decode_mutf7(encode_mutf7(text)) == text


@pytest.mark.parametrize(
    ("text", "maximum", "ranges"),
    [
        ("1", 10, [(1, 1)]),
        ("1:5,7,9:12", 20, [(1, 5), (7, 7), (9, 12)]),
        ("5:1", 10, [(1, 5)]),  # swapped
        ("*", 10, [(10, 10)]),
        ("3:*", 10, [(3, 10)]),
        ("*:3", 10, [(3, 10)]),
        ("15:*", 10, [(10, 15)]),  # n > max: still includes *
        ("1:3,2:6,8", 10, [(1, 6), (8, 8)]),  # merged
        ("*", 0, []),  # empty mailbox
        ("4294967295", 1, [(4294967295, 4294967295)]),
    ],
)
def test_sequence_resolve(text: str, maximum: int, ranges: list[tuple[int, int]]) -> None:
    s = SequenceSet.parse(text)
    assert s.resolve(maximum) == ranges
    for a, b in ranges:
        assert s.contains(a, maximum) and s.contains(b, maximum)
    assert not s.contains(maximum + 100, maximum) or any(b >= maximum + 100 for _, b in ranges)


@pytest.mark.parametrize(
    "bad", ["", "0", "1:0", "01", "1,", ",1", "1::2", "a", "4294967296", "1:*:2", "$,1", "-1"]
)
def test_sequence_rejects(bad: str) -> None:
    with pytest.raises(ParseError):
        SequenceSet.parse(bad)


def test_sequence_special_forms() -> None:
    assert SequenceSet.parse("$").saved
    assert str(SequenceSet.parse("1:*,5")) == "1:*,5"
    assert SequenceSet.parse("*").ranges == ((STAR, STAR),)
    with pytest.raises(ParseError):
        SequenceSet.parse("1:*", allow_star=False)
    with pytest.raises(ParseError) as info:
        SequenceSet.parse(",".join(["1"] * 11), max_ranges=10)
    assert info.value.code == "TOOBIG"


@pytest.mark.parametrize(
    ("values", "text"),
    [([], ""), ([1], "1"), ([1, 2, 3, 5], "1:3,5"), ([9, 7, 8, 1, 1], "1,7:9"), ([2, 4], "2,4")],
)
def test_format_sequence(values: list[int], text: str) -> None:
    assert format_sequence(values) == text


@given(st.sets(st.integers(1, 200), max_size=50))
def test_format_parse_round_trip(values: set[int]) -> None:
    text = format_sequence(values)
    if not values:
        return
    spans = SequenceSet.parse(text).resolve(200)
    assert {n for a, b in spans for n in range(a, b + 1)} == values
