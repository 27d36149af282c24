"""Decoded text of a message for full-text search: header values and every text/* part."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from html.parser import HTMLParser

from .encoded import decode_header
from .imapfmt import decode_transfer
from .mime import decode_param, split_header_fields
from .structure import Part

__all__ = ["html_to_text", "searchable_text"]

_SEARCH_HEADERS = ("subject", "from", "to", "cc", "bcc", "reply-to", "sender")
_MAX_PART = 16 * 1024 * 1024  # larger text parts are indexed only up to this size


class _Stripper(HTMLParser):
    """Collects character data outside script/style; tolerant of broken markup."""

    _SKIP = frozenset({"script", "style", "head", "title"})
    _BREAK = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BREAK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document (tags dropped, entities resolved)."""
    p = _Stripper()
    p.feed(html)
    p.close()
    lines = (" ".join(line.split()) for line in "".join(p.out).splitlines())
    return "\n".join(line for line in lines if line)


def _charset_decode(raw: bytes, charset: str | None) -> str:
    name = (charset or "utf-8").strip().lower()
    if name in ("us-ascii", "ascii", ""):
        name = "utf-8"  # mislabelled 8-bit is usually UTF-8
    try:
        codecs.lookup(name)
    except LookupError:
        name = "utf-8"
    text = raw.decode(name, "replace")
    if "\ufffd" in text and name == "utf-8":
        text = raw.decode("cp1252", "replace")  # the commonest unlabelled legacy charset
    return text


def searchable_text(data: bytes, part: Part) -> Iterator[str]:
    """Yield decoded header values, then the text of each text/* part, one item at a time."""
    for p in part.walk():
        if p.envelope is not None:
            header = bytes(data[p.header_start : p.header_end])
            for name, raw in split_header_fields(header):
                if name in _SEARCH_HEADERS:
                    value = raw.partition(b":")[2].decode("utf-8", "surrogateescape")
                    yield decode_header(value.strip())
        if p.type.lower() != "text" or p.is_multipart:
            continue
        if (p.disposition or "").lower() == "attachment" and p.subtype.lower() != "plain":
            continue
        body = decode_transfer(
            bytes(data[p.header_end : min(p.body_end, p.header_end + _MAX_PART)]), p.encoding
        )
        text = _charset_decode(body, decode_param(p.params, "charset"))
        yield html_to_text(text) if p.subtype.lower() == "html" else text
