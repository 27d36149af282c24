"""Header value parsers and RFC 2047 words: tables of tricky inputs."""

from __future__ import annotations

import pytest

from correo.message import (
    Address,
    decode_header,
    decode_param,
    encode_header,
    parse_address_list,
    parse_content_type,
)

CT = [
    ("text/plain", ("text", "plain", ())),
    ('TEXT/Html; CHARSET="UTF-8"', ("TEXT", "Html", (("CHARSET", "UTF-8"),))),
    (
        "text/plain; format=flowed (c); delsp=yes",
        ("text", "plain", (("format", "flowed"), ("delsp", "yes"))),
    ),
    ('a/b; name="x \\"y\\".txt"', ("a", "b", (("name", 'x "y".txt'),))),
    ("a/b; name=foo bar.pdf", ("a", "b", (("name", "foo bar.pdf"),))),
    ("a/b;;; junk; x=1", ("a", "b", (("x", "1"),))),
    ("(comment) text / plain ; a = 1", ("text", "plain", (("a", "1"),))),
    ("a/b; t*0*=us-ascii'en'A%20; t*1=B", ("a", "b", (("t*", "us-ascii'en'A%20B"),))),
    ("a/b; t*1=B; t*0=A", ("a", "b", (("t", "AB"),))),
    ("garbage", None),
    ("", None),
    ("text/", None),
    ('a/b; name="unterminated', ("a", "b", (("name", "unterminated"),))),
]


@pytest.mark.parametrize(("value", "expected"), CT)
def test_content_type(value: str, expected: object) -> None:
    assert parse_content_type(value) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ((("filename*", "utf-8''%C3%A9t%C3%A9.txt"),), "été.txt"),
        ((("filename*", "iso-8859-1'fr'd%E9j%E0"),), "déjà"),
        ((("filename*", "bogus-cs''a%41"),), "aA"),
        ((("filename*", "no-quotes"),), "no-quotes"),
        ((("FileName", "plain.txt"),), "plain.txt"),
        ((), None),
    ],
)
def test_decode_param(params: tuple[tuple[str, str], ...], expected: str | None) -> None:
    assert decode_param(params, "filename") == expected


N = None
ADDR = [
    ("a@b.c", [(N, N, "a", "b.c")]),
    ('"Joe Q." <j@x>', [("Joe Q.", N, "j", "x")]),
    ("Mary  Smith <m@x>", [("Mary Smith", N, "m", "x")]),
    ("j@x (Joe)", [("Joe", N, "j", "x")]),
    ("<@a,@b:c@d>", [(N, "@a,@b", "c", "d")]),
    ("G: a@b, c@d;", [(N, N, "G", N), (N, N, "a", "b"), (N, N, "c", "d"), (N, N, N, N)]),
    ("G:;", [(N, N, "G", N), (N, N, N, N)]),
    ("G: a@b", [(N, N, "G", N), (N, N, "a", "b"), (N, N, N, N)]),
    ("a@b, , c@d", [(N, N, "a", "b"), (N, N, "c", "d")]),
    ("joe", [(N, N, "joe", "MISSING_DOMAIN")]),
    ("<>", [(N, N, "MISSING_MAILBOX", "MISSING_DOMAIN")]),
    ('"odd, name" <o@x>', [("odd, name", N, "o", "x")]),
    ('"a b"@x', [(N, N, '"a b"', "x")]),
    ("=?utf-8?q?J=C3=B6rg?= <j@x>", [("=?utf-8?q?J=C3=B6rg?=", N, "j", "x")]),
    ("a@[1.2.3.4]", [(N, N, "a", "[1.2.3.4]")]),
    ("<a@b", [(N, N, "a", "b")]),
    ("", []),
    ("(((", []),
]


@pytest.mark.parametrize(("value", "expected"), ADDR)
def test_address_list(value: str, expected: list[tuple[str | None, ...]]) -> None:
    assert parse_address_list(value) == tuple(Address(*a) for a in expected)


DECODE = [
    ("plain", "plain"),
    ("=?utf-8?q?caf=C3=A9?=", "café"),
    ("=?ISO-8859-1?Q?a_b?= c", "a b c"),
    ("=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "éé"),  # RFC 2047 §6.2 adjacent words join
    ("=?utf-8?b?4g==?= =?utf-8?b?iIA=?=", "∀"),  # a character split across two words
    ("=?x-unknown?q?abc?=", "abc"),
    ("=?utf\0?q?caf=C3=A9?=", "café"),  # codecs.lookup raises ValueError on NUL
    ("=?utf-8?b?!!!?=", ""),
    ("=?utf-8*en?q?hi?=", "hi"),  # RFC 2231 §5 language
    ("a =?utf-8?q?b?=\r\n =?utf-8?q?c?= d", "a bc d"),
    ("=?utf-8?q?unterminated", "=?utf-8?q?unterminated"),
    ("Caf\udcc3\udca9", "Café"),  # raw UTF-8 (RFC 6532) via surrogateescape
    ("Caf\udce9", "Café"),  # raw Latin-1
]


@pytest.mark.parametrize(("value", "expected"), DECODE)
def test_decode_header(value: str, expected: str) -> None:
    assert decode_header(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "hello",
        "Grüße aus Köln",
        "日本語のテキスト" * 10,
        "a =?fake?= word",
        "x " * 80,
        "mixed ascii and ünïcödé words here",
    ],
)
def test_encode_header_round_trip(value: str) -> None:
    enc = encode_header(value, len("Subject: "))
    assert enc.isascii()
    lines = enc.split("\r\n")
    assert len(lines[0]) + 9 <= 78 and all(len(line) <= 78 for line in lines[1:])
    assert decode_header(enc.replace("\r\n", "")) == value


def test_encode_header_leaves_ascii_alone() -> None:
    assert encode_header("Just ASCII", 9) == "Just ASCII"
