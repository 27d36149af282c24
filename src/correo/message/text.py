"""Decoded text of a message for full-text search: header values and every text/* part."""

from __future__ import annotations

from collections.abc import Iterator

from .encoded import decode_header, text_codec
from .html import html_to_text
from .imapfmt import decode_transfer
from .mime import decode_param, split_header_fields
from .structure import Part

__all__ = ["decode_text", "html_to_text", "searchable_text"]

_SEARCH_HEADERS = ("subject", "from", "to", "cc", "bcc", "reply-to", "sender")
_MAX_PART = 16 * 1024 * 1024  # larger text parts are indexed only up to this size


def decode_text(raw: bytes, charset: str | None) -> str:
    """Bytes of a text part in its declared charset; never raises.

    Unknown names, codecs that are not text encodings and the slow ones fall back to
    UTF-8; undecodable UTF-8 is read as cp1252, the commonest unlabelled charset.
    """
    name = (charset or "utf-8").strip().lower()
    if name in ("us-ascii", "ascii", ""):
        name = "utf-8"  # mislabelled 8-bit is usually UTF-8
    name = text_codec(name)
    try:
        text = raw.decode(name, "replace")
    except (LookupError, UnicodeError):
        name, text = "utf-8", raw.decode("utf-8", "replace")
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
        text = decode_text(body, decode_param(p.params, "charset"))
        yield html_to_text(text) if p.subtype.lower() == "html" else text
