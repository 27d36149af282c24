"""Reverse/forward path parsing (RFC 5321 §4.1.2, RFC 6531)."""

from __future__ import annotations

from typing import Literal

import pytest

from correo.smtp import Address, RemoteProtocolError, parse_path

VALID: list[tuple[bytes, str, str | None, str | None, bool]] = [
    # raw, kind, local, domain, had_source_route
    (b"<a@b>", "mail", "a", "b", False),
    (b"<first.last@Example.COM>", "rcpt", "first.last", "Example.COM", False),
    (b"<>", "mail", None, None, False),
    (b"<@a,@b:user@c>", "mail", "user", "c", True),
    (b"<@relay.example:user@c>", "rcpt", "user", "c", True),
    (b'<"a@b"@x>', "mail", "a@b", "x", False),
    (b'<"a b"@x>', "mail", "a b", "x", False),
    (b'<"a\\"b\\\\c"@x>', "mail", 'a"b\\c', "x", False),
    (b"<a%b@c>", "rcpt", "a%b", "c", False),
    (b"<a!b@c>", "rcpt", "a!b", "c", False),
    (b"<a+tag@c>", "rcpt", "a+tag", "c", False),
    (b"<user@[192.0.2.1]>", "rcpt", "user", "[192.0.2.1]", False),
    (b"<user@[IPv6:2001:db8::1]>", "rcpt", "user", "[IPv6:2001:db8::1]", False),
    (b"<user@[ipv6:::1]>", "rcpt", "user", "[ipv6:::1]", False),
    (b"<user@[x-tag:anything]>", "rcpt", "user", "[x-tag:anything]", False),
    (b"<postmaster>", "rcpt", "postmaster", "", False),
    (b"<PostMaster>", "rcpt", "postmaster", "", False),
    (b"<a@sub-domain.x-y.z>", "rcpt", "a", "sub-domain.x-y.z", False),
    (b"<" + b"l" * 64 + b"@x>", "mail", "l" * 64, "x", False),
    (b"<a@" + b"d" * 255 + b">", "mail", "a", "d" * 255, False),
]


@pytest.mark.parametrize(("raw", "kind", "local", "domain", "route"), VALID)
def test_valid_paths(
    raw: bytes,
    kind: Literal["mail", "rcpt"],
    local: str | None,
    domain: str | None,
    route: bool,
) -> None:
    path, end = parse_path(raw + b" SIZE=1", kind=kind)
    assert end == len(raw)
    assert path.raw == raw.decode()
    assert path.had_source_route is route
    if local is None:
        assert path.address is None
    else:
        assert path.address == Address(local, domain or "")


INVALID = [
    b"a@b",  # no angle brackets
    b"<a@b",
    b"a@b>",
    b"<@b>",  # empty local part
    b'<""@b>',  # empty quoted local part
    b"<a@>",
    b"<a>",
    b"<a b@c>",
    b"<a..b@c>",
    b"<.a@c>",
    b"<a.@c>",
    b"<a@-b>",
    b"<a@b-.c>",
    b"<a@b..c>",
    b"<a\x00b@c>",
    b"<a@b\x00>",
    b"<a\tb@c>",
    b'<"a\rb"@c>',
    b"<a@[300.1.1.1]>",
    b"<a@[1.2.3]>",
    b"<a@[IPv6:zz::1]>",
    b"<a@[foo]>",
    b"<" + b"l" * 65 + b"@x>",
    b"<a@" + b"d" * 256 + b">",
    b"<@a,b:user@c>",
    b"<@a:>",
    "<j\u00f6rg@example.com>".encode(),  # 8-bit without SMTPUTF8
    "<a@b\u00fccher.example>".encode(),
    b"<\xff@x>",
]


@pytest.mark.parametrize("raw", INVALID)
@pytest.mark.parametrize(("kind", "code"), [("mail", (501, "5.1.7")), ("rcpt", (501, "5.1.3"))])
def test_invalid_paths(raw: bytes, kind: Literal["mail", "rcpt"], code: tuple[int, str]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_path(raw, kind=kind)
    assert (info.value.reply.code, info.value.reply.status) == code


def test_null_path_only_for_mail() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_path(b"<>", kind="rcpt")


def test_postmaster_without_domain_only_for_rcpt() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_path(b"<postmaster>", kind="mail")


@pytest.mark.parametrize(
    ("raw", "local", "domain"),
    [
        ("<j\u00f6rg@example.com>", "j\u00f6rg", "example.com"),
        ("<a@b\u00fccher.example>", "a", "b\u00fccher.example"),
        ('<"\u00e9 x"@example.com>', "\u00e9 x", "example.com"),
        ("<\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a>", "\u7528\u6237", "\u4f8b\u5b50.\u5e7f\u544a"),
    ],
)
def test_utf8_with_smtputf8(raw: str, local: str, domain: str) -> None:
    path, _ = parse_path(raw.encode(), kind="rcpt", smtputf8=True)
    assert path.address == Address(local, domain)


def test_utf8_must_be_valid_even_with_smtputf8() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_path(b"<\xc3@x>", kind="rcpt", smtputf8=True)


def test_local_part_length_counts_octets() -> None:
    local = "\u00e9" * 33  # 66 octets in UTF-8
    with pytest.raises(RemoteProtocolError):
        parse_path(f"<{local}@x>".encode(), kind="rcpt", smtputf8=True)


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (Address("a", "b"), "a@b"),
        (Address("a.b", "c"), "a.b@c"),
        (Address("a@b", "x"), '"a@b"@x'),
        (Address("a b", "x"), '"a b"@x'),
        (Address('a"b\\', "x"), '"a\\"b\\\\"@x'),
        (Address(".a", "x"), '".a"@x'),
        (Address("postmaster", ""), "postmaster"),
        (Address("j\u00f6rg", "x"), "j\u00f6rg@x"),
        (Address("a", "[1.2.3.4]"), "a@[1.2.3.4]"),
    ],
)
def test_str_requotes(address: Address, text: str) -> None:
    assert str(address) == text


def test_str_round_trips_through_parser() -> None:
    for local in ["a", "a b", 'x"y', "a@b", "a..b", "\\"]:
        addr = Address(local, "example.org")
        path, _ = parse_path(f"<{addr}>".encode(), kind="rcpt")
        assert path.address == addr
