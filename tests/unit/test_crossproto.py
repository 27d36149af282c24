"""The HTTP request screen on mail ports: tables, and a property test that feeding
byte by byte gives the same verdict as feeding at once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.server.crossproto import HttpGuard


def verdict(data: bytes, *, tagged: bool = False) -> bool | None:
    return HttpGuard(tagged=tagged).feed(data)


def bytewise(data: bytes, *, tagged: bool = False) -> bool | None:
    guard = HttpGuard(tagged=tagged)
    result: bool | None = None
    for i in range(len(data)):
        result = guard.feed(data[i : i + 1])
        if result is not None:
            return result
    return result


HTTP = [
    b"POST /form HTTP/1.1\r\nHost: a\r\n\r\nLHLO x\r\n",
    b"GET / HTTP/1.1\r\n",
    b"GET /",  # an HTTP method and a space: enough, before the line ends
    b"CONNECT mail.example:25 HTTP/1.1\r\n",
    b"PROPFIND /x HTTP/1.1\r\n",  # any method, in the request-line shape
    b"get / HTTP/1.0\n",
    b"\r\n\r\nPUT /x HTTP/1.1\r\n",  # RFC 9112 §2.2: leading empty lines
    b"Host: mail.example\r\n",
    b"User-Agent: x\r\n",
    b"Content-Type: text/plain\r\n",
    b"X /" + b"a" * 100000 + b" HTTP/1.1\r\n",  # judged however long the line
]
MAIL = [
    b"EHLO client.example\r\n",
    b"LHLO mta\r\nMAIL FROM:<a@b>\r\n",
    b"HELO HTTP/1.1\r\n",
    b"USER alice@example.test\r\n",
    b"AUTH PLAIN AGFsaWNl\r\n",
    b"a1 LOGIN alice HTTP/1.1\r\n",  # three spaces: not a request line
    b"CAPABILITY\r\n",
    b'AUTHENTICATE "PLAIN" "x"\r\n',
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # a TLS hello on a plain port
]


@pytest.mark.parametrize("data", HTTP)
def test_http_is_recognised(data: bytes) -> None:
    assert verdict(data) is True
    assert bytewise(data) is True


@pytest.mark.parametrize("data", MAIL)
def test_mail_commands_pass(data: bytes) -> None:
    assert verdict(data) is False and verdict(data, tagged=True) is False
    assert bytewise(data) is False


def test_imap_tags_are_free_form() -> None:
    # On IMAP only a whole request line counts: "GET" or "Host:" could be tags.
    assert verdict(b"GET NOOP\r\n", tagged=True) is False
    assert verdict(b"Host: NOOP\r\n", tagged=True) is False
    assert verdict(b"GET / HTTP/1.1\r\n", tagged=True) is True
    assert bytewise(b"GET / HTTP/1.1\r\n", tagged=True) is True


def test_incomplete_first_line_needs_more() -> None:
    guard = HttpGuard()
    assert guard.feed(b"\r\n") is None
    assert guard.feed(b"EH") is None
    assert guard.feed(b"LO x") is None
    assert guard.feed(b"\r\nMAIL FROM:<>\r\n") is False


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"GET",
                b"POST",
                b"EHLO",
                b"a1",
                b" ",
                b"/",
                b"x",
                b"HTTP/1.1",
                b"HTTP/2.0",
                b"Host",
                b":",
                b"\r",
                b"\n",
                b"\r\n",
                b"\xff",
                b"\t",
            ]
        ),
        max_size=20,
    ),
    st.booleans(),
)
def test_split_feeding_equals_whole_feeding(pieces: list[bytes], tagged: bool) -> None:
    """Invariant: the verdict depends on the bytes, not on how reads split them."""
    data = b"".join(pieces)
    assert bytewise(data, tagged=tagged) == verdict(data, tagged=tagged)
