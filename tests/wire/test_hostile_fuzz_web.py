"""Mail HTML from a hostile sender through the webmail sanitizer: markup whose tree
building costs grow with the square of its nesting or worse (nested blocks, distinct
formatting elements, lists of lists) is cleaned in pieces of a bounded number of start
tags, so one message cannot occupy a worker for minutes (16,000 nested <div> took 2 s,
32,000 distinct <b class> 124 s; a 4 MiB part holds 800,000); and however the pieces
fall, nothing active comes out."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser
from typing import Any

import nh3
import pytest

from correo.web.sanitize import sanitize_html

START = re.compile(r"<[A-Za-z]")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of start tags each call of the sanitizer library was given."""
    seen: list[int] = []
    real = nh3.clean

    def counting(html: str, **kwargs: Any) -> str:
        seen.append(len(START.findall(html)))
        return real(html, **kwargs)

    monkeypatch.setattr(nh3, "clean", counting)
    return seen


class _Tags(HTMLParser):
    """Every start tag and attribute of the sanitized output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def _assert_inert(html: str) -> None:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag not in ("script", "style", "iframe", "object", "embed", "form", "svg"), tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            low = (value or "").strip().lower()
            if name in ("href", "src", "cite"):
                assert not low.startswith(("javascript:", "vbscript:", "data:text")), value


def clean(html: str) -> str:
    return sanitize_html(html, lambda cid: None, images=False).html


@pytest.mark.parametrize(
    "markup",
    [
        "<div>" * 100_000,
        "".join(f'<b class="c{i}">' for i in range(30_000)) + "<p>x</p>" * 3000,
        "<ul><li>" * 50_000,
        "<span>" * 20_000 + "<div>" * 20_000,
        "<table><tr><td>" * 20_000,
    ],
    ids=["divs", "distinct-b", "lists", "spans-then-divs", "tables"],
)
def test_costly_markup_is_cleaned_in_bounded_pieces(calls: list[int], markup: str) -> None:
    out = clean(markup)
    assert calls and max(calls) <= 2000  # each call's work is bounded by its tags
    assert len(calls) <= 20_000 // 500 + 1  # and so is the number of calls
    assert out.endswith("download it to read it.]</em></p>")  # the tail is left out, said so
    _assert_inert(out)


def test_an_ordinary_message_is_cleaned_whole(calls: list[int]) -> None:
    body = '<table><tr><td><p>Hello <b>you</b>, <a href="https://x.test/">read</a></p></td></tr></table>'
    markup = body * 150  # 900 start tags
    out = clean(markup)
    assert calls == [900]
    assert not out.endswith("]</em></p>")
    assert out.count('<a href="https://x.test/"') == 150


HOSTILE = [
    '<img src="javascript:alert(1)" onerror="alert(2)">',
    "<script>alert(3)</script>",
    '<a href="javascript:alert(4)">x</a>',
    '<a title="',
    "<a title='<img src=x onerror=alert(5)>'>",
    "<!-- <script>alert(6)</script> -->",
    '<style>body{background:url("https://evil.test/")}</style>',
    "<svg><script>alert(7)</script></svg>",
    "<textarea><img src=x onerror=alert(8)></textarea>",
    '<iframe src="https://evil.test/"></iframe>',
    '<form action="https://evil.test/"><input name=p></form>',
    '<div style="background-image:url(https://evil.test/)" onclick="x()">',
    '<b class="q">',
    "<p>",
    "</div>",
    "<div>",
    '"',
    "'",
    ">",
    "<",
    "x",
]


def test_pieces_never_let_anything_active_through() -> None:
    """Documents of 2,000 to 6,000 start tags whose pieces start anywhere: inside an
    attribute value, a comment, a script or a textarea; the output stays inert."""
    rng = random.Random(11)
    for _ in range(12):
        parts = [rng.choice(HOSTILE) for _ in range(rng.randrange(2500, 7000))]
        out = clean("".join(parts))
        _assert_inert(out)
