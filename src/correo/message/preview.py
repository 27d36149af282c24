"""The PREVIEW of a message (RFC 8970): the start of its first text part, as plain text.

Pure: the caller reads at most :data:`PREVIEW_READ` octets of the part's body (so a
large message costs a bounded read) and hands them here with the part.  HTML is
reduced to its text; runs of whitespace become one space (§3.1: no line breaks are
needed in a preview); the result is at most :data:`PREVIEW_CHARS` characters
(§3.1: "MUST NOT be more than 256 characters").
"""

from __future__ import annotations

import re

from correo.message.imapfmt import TransferDecoder
from correo.message.structure import Part
from correo.message.text import decode_text, html_to_text

__all__ = ["PREVIEW_CHARS", "PREVIEW_READ", "preview_part", "preview_text"]

PREVIEW_CHARS = 200
#: Octets of a part's body read to make its preview: enough for HTML whose text starts
#: after a long head of style sheets, bounded for any message size.
PREVIEW_READ = 64 << 10

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def preview_part(tree: Part) -> Part | None:
    """The part a preview is made from: the first text/plain, else the first text/html,
    outside attachments (a ``Content-Disposition: attachment`` part is skipped)."""
    html: Part | None = None
    for p in tree.walk():
        if p.is_multipart or p.type.lower() != "text":
            continue
        if (p.disposition or "").lower() == "attachment":
            continue
        sub = p.subtype.lower()
        if sub == "plain":
            return p
        if sub == "html" and html is None:
            html = p
    return html


def preview_text(body: bytes, part: Part) -> str:
    """Plain text of the start of ``part`` whose (transfer-encoded) body starts ``body``."""
    decoder = TransferDecoder(part.encoding)
    raw = decoder.feed(body) + decoder.finish()
    text = decode_text(raw, part.param("charset"))
    if part.subtype.lower() == "html":
        text = html_to_text(text)
    text = _SPACE.sub(" ", _CONTROL.sub("", text)).strip()
    return text[:PREVIEW_CHARS]
