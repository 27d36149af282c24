"""HTML to text in linear time: what search, Sieve ``:text`` and the reader show.

html.parser rescans unfinished markup on every step (minutes for ``"<a" * 300_000``);
the scanner reads each character a bounded number of times.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.message.encoded import decode_header
from correo.message.html import html_to_text
from correo.message.mime import decode_param
from correo.message.text import decode_text


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>Hi&amp;<script>x</script>there</p>", "Hi&there"),
        (
            "<head><title>T</title><style>p{}</style></head>a<br>b<div>c</div> d &lt; e",
            "a\nb\nc d < e",
        ),
        ('<a href="x>y">link</a> after', "link after"),
        ("<!-- c --> x <!DOCTYPE html> y <?php z ?> w", "x y w"),
        ("a < b > c", "a < b > c"),
        ("<SCRIPT>alert('<p>')</SCRIPT>visible", "visible"),
        ("<p>unclosed <b", "unclosed <b"),
        ("<table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>", "12\n3"),
    ],
)
def test_html_to_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


@pytest.mark.parametrize(
    "markup",
    ["<a" * 300_000, "</" * 300_000, "<!" * 300_000, "<a '>\"" * 200_000, "<" * 300_000],
)
def test_html_to_text_is_linear(markup: str) -> None:
    """html.parser needs minutes for these; the scanner reads each character once."""
    started = time.thread_time()  # CPU time: a loaded machine's waits do not count
    html_to_text(markup)
    assert time.thread_time() - started < 1.5


_MARKUP = st.text(alphabet=st.sampled_from(list("<>/!?-\"'= abscriptyle&;#x1\n")), max_size=200)


@settings(max_examples=300, deadline=None)
@given(_MARKUP)
def test_html_to_text_is_total(markup: str) -> None:
    """Invariant: any input gives text, and text without markup keeps its words."""
    out = html_to_text(markup)
    if "<" not in markup and "&" not in markup:
        assert out.split() == markup.split()


def test_charsets_that_are_not_charsets_fall_back_to_utf8() -> None:
    """idna raises even with errors="replace", base64 is no text encoding, punycode
    decodes in quadratic time: all are read as UTF-8 instead of failing or stalling."""
    for name in ("idna", "base64", "punycode", "no-such-charset"):
        assert decode_text(b"caf\xc3\xa9", name) == "café"
    started = time.thread_time()  # CPU time: a loaded machine's waits do not count
    decode_text(b"a" * 1000 + b"-" + b"b" * 300_000, "punycode")
    assert time.thread_time() - started < 1.0
    assert decode_param((("charset*", "idna''%41"),), "charset") == "A"
    # RFC 2047 encoded words: decode_header promises never to raise
    assert decode_header("=?idna?q?" + "a" * 100 + "?=") == "a" * 100
    started = time.thread_time()
    decode_header("=?punycode?q?" + "a" * 1000 + "-" + "b" * 200_000 + "?=")
    assert time.thread_time() - started < 1.0


def test_search_text_and_reader_decode_idna_labelled_parts() -> None:
    """A text part labelled charset=idna raised UnicodeError in SEARCH and the reader."""
    from correo.delivery.textindex import body_texts
    from correo.message.structure import parse_structure
    from correo.mua.render import charset_decode

    raw = (
        b"From: a@example.test\r\nContent-Type: text/plain; charset=idna\r\n\r\n"
        b"xn--" + b"a" * 2000 + b" hello\r\n"
    )
    texts = body_texts(raw, parse_structure(raw))
    assert any("hello" in t for t in texts)
    assert "hello" in charset_decode(b"caf\xc3\xa9 hello", "idna")
