"""The HTTP request-head parser: target forms (RFC 9112 §3.2), bounded queries, and
a property test that any input is a request or an HTTP error, never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.http import HttpError, Request
from correo.http import parse_request as parse
from correo.http.request import MAX_QUERY_FIELDS

POLICY = "/.well-known/mta-sts.txt"


@pytest.mark.parametrize(
    ("target", "host", "path"),
    [
        (b"https://MTA-STS.Example.Test/.well-known/mta-sts.txt", "mta-sts.example.test", POLICY),
        (
            b"http://mta-sts.example.test:8443/.well-known/mta-sts.txt",
            "mta-sts.example.test",
            POLICY,
        ),
        (b"HTTPS://mta-sts.example.test./.well-known/mta-sts.txt", "mta-sts.example.test", POLICY),
        (b"https://[2001:db8::1]:443/x?y=1", "[2001:db8::1]", "/x"),
        (b"https://example.test", "example.test", "/"),  # RFC 9110 §4.2.3: empty path is "/"
        (b"https://example.test?emailaddress=a", "example.test", "/"),
    ],
)
def test_absolute_form_is_accepted_and_names_the_host(target: bytes, host: str, path: str) -> None:
    # RFC 9112 §3.2.2: a server MUST accept it; its authority replaces the Host field.
    r = parse(b"GET " + target + b" HTTP/1.1\r\nHost: elsewhere.test")
    assert (r.method, r.host, r.path) == ("GET", host, path)


@pytest.mark.parametrize(
    "target",
    [
        b"ftp://example.test/x",  # not an http(s) URI
        b"https://user:pw@example.test/x",  # RFC 9110 §4.2.4: userinfo is an error
        b"https:///x",  # no host
        b"https://exa mple.test/",
        b"https://[::1/x",
        b"https://example.test:port/",
        b"*",  # asterisk-form is for OPTIONS only, which is not served
        b"example.test:443",  # authority-form is for CONNECT only
    ],
)
def test_bad_targets_are_400(target: bytes) -> None:
    with pytest.raises(HttpError) as info:
        parse(b"GET " + target + b" HTTP/1.1\r\nHost: a")
    assert info.value.status == 400


def test_origin_form_paths_are_paths() -> None:
    # "//x" is an absolute-path (RFC 3986 §3.3), not a network-path reference.
    r = parse(b"GET //mta-sts.evil.test/a%20b?q=1 HTTP/1.1\r\nHost: example.test")
    assert (r.host, r.path, r.query) == ("example.test", "//mta-sts.evil.test/a b", {"q": ["1"]})
    assert parse(b"GET //[ HTTP/1.1\r\nHost: a").path == "//["


def test_extra_query_fields_are_ignored() -> None:
    fields = "&".join(f"f{i}={i}" for i in range(200))
    r = parse(
        f"GET /mail/config-v1.1.xml?emailaddress=a%40b.test&{fields} HTTP/1.1\r\nHost: a".encode()
    )
    assert len(r.query) == MAX_QUERY_FIELDS
    assert r.query["emailaddress"] == ["a@b.test"]


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a\nX: b",  # bare LF inside a field (RFC 9112 §2.2)
        b"GET / HTTP/1.1\r\nHost: a\rb",  # bare CR
        b"GET / HTTP/1.1\r\nHost: a\x00b",  # NUL in a field value (RFC 9110 §5.5)
        b"GET / HTTP/1.1\r\nHost: a b",  # not a valid Host
        b"GET / HTTP/1.1\r\nHost: a:b",  # port not numeric
        b"GET / HTTP/1.x\r\nHost: a",  # not an HTTP version at all
    ],
)
def test_malformed_heads_are_400(head: bytes) -> None:
    with pytest.raises(HttpError) as info:
        parse(head)
    assert info.value.status == 400


_ALLOWED = {400, 405, 431, 505}
_PIECES = [
    b"GET",
    b"HEAD",
    b"POST",
    b" ",
    b"/",
    b"//",
    b"?",
    b"&",
    b"=",
    b"%",
    b"%2",
    b"%zz",
    b"#",
    b"https://",
    b"http://",
    b"[",
    b"]",
    b":",
    b"@",
    b".",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"\r\n",
    b"\n",
    b"\r",
    b"Host:",
    b"host: ",
    b"X-A: b",
    b"\x00",
    b"\xff",
    b"\xe3\x80\x82",
    b"a",
    b"example.test",
    b"443",
    b"\t",
]


def _check(head: bytes) -> None:
    try:
        r = parse(head)
    except HttpError as exc:
        assert exc.status in _ALLOWED, (head, exc.status)
        return
    assert isinstance(r, Request)
    assert r.method in ("GET", "HEAD") and r.path.startswith("/")
    assert r.host == r.host.lower() and not r.host.endswith(".")
    assert len(r.query) <= MAX_QUERY_FIELDS


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_an_http_error(head: bytes) -> None:
    """Invariant: parse_request returns a Request or raises HttpError with a 4xx (or
    505 for an HTTP version it does not speak); no other exception escapes."""
    _check(head)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_request_shaped_input_is_a_request_or_an_http_error(pieces: list[bytes]) -> None:
    _check(b"".join(pieces))
    _check(b"GET " + b"".join(pieces) + b" HTTP/1.1\r\nHost: a")
