"""The header fields of a message's parts, for SEARCH TEXT.

RFC 9051 §6.4.4 TEXT matches "the header or body of the message"; Dovecot reads that
as every header in the message: each part's MIME header and the header of every
attached message (message/rfc822, message/global), not only the message's own, and
clients built against it find an attachment's sender or a part's file name so.  BODY
stays the decoded text of the parts.  Preamble, epilogue and delimiter lines are in
neither (as Dovecot).
"""

from __future__ import annotations

from correo.message.encoded import decode_header
from correo.message.headers import parse_fields
from correo.message.structure import Part

__all__ = ["part_headers"]


def part_headers(data: bytes, tree: Part) -> list[str]:
    """The decoded field values of every header in ``data`` but the message's own, in
    document order (one parse of each header section: linear in the message)."""
    out: list[str] = []
    for part in tree.walk()[1:]:
        section = data[part.header_start : part.header_end]
        if not section.strip():
            continue
        for _name, value in parse_fields(section):
            if value.isascii() and "=?" not in value and "\n" not in value:
                out.append(value)
            else:
                out.append(decode_header(value))
    return out
