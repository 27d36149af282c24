"""APPEND message heads and CATENATE parts (RFC 3502 §6.3.11, RFC 4469 §5), token by token.

The connection reads an APPEND command as it arrives, one line at a time, so these
parsers work on the text of the current line and say where they stopped::

    append-message = [SP flag-list] [SP date-time] SP (literal / literal8 / catenate)
    catenate       = "CATENATE" SP "(" cat-part *(SP cat-part) ")"
    cat-part       = "TEXT" SP literal / "URL" SP astring

A literal always ends its line (its octets follow the CRLF), so TEXT is the last token
of a line and the parts go on at the start of the next one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from correo.imap.cmdparse import flag_list
from correo.imap.commands import Append, ParseOptions, decode_mailbox
from correo.imap.errors import ParseError
from correo.imap.reader import LiteralMarker, Reader, find_literal_marker

__all__ = [
    "MAX_PARTS",
    "MessageHead",
    "Part",
    "append_head",
    "message_head",
    "next_part",
]

#: Parts of one CATENATE message: each URL costs a store lookup.
MAX_PARTS = 256

Kind = Literal["literal", "catenate"]


@dataclass(frozen=True, slots=True)
class MessageHead:
    """What comes before one APPEND message's data, and where that data starts."""

    flags: tuple[str, ...]
    date: dt.datetime | None
    kind: Kind
    rest: bytes  # the line after "CATENATE (" (or the literal marker)


@dataclass(frozen=True, slots=True)
class Part:
    """One cat-part, or the list's end: ``kind`` "text", "url", "url-literal" or "end"."""

    kind: Literal["text", "url", "url-literal", "end"]
    url: bytes = b""
    marker: LiteralMarker | None = None  # for "text" and "url-literal"
    rest: bytes = b""  # the line after this part


def _message(r: Reader, line: bytes) -> MessageHead:
    r.sp()
    flags: tuple[str, ...] = ()
    date: dt.datetime | None = None
    if r.peek() == 0x28:
        flags = flag_list(r)
        r.sp()
    if r.peek() == 0x22:
        date = r.date_time()
        r.sp()
    if r.peek_keyword(b"CATENATE"):  # RFC 4469 §5
        r.keyword()
        r.sp()
        r.expect(b"(")
        return MessageHead(flags, date, "catenate", line[r.position[1] :])
    if not r.literal_pending():
        raise ParseError("expected message literal or CATENATE")
    return MessageHead(flags, date, "literal", line[r.position[1] :])


def message_head(line: bytes, max_depth: int = 32) -> MessageHead:
    """The next message of a MULTIAPPEND, from ``line`` (it starts with SP)."""
    return _message(Reader([line], [], max_depth=max_depth), line)


def append_head(
    lines: Sequence[bytes], literals: Sequence[bytes], options: ParseOptions
) -> tuple[Append, MessageHead] | None:
    """The APPEND command and its first message; None while the mailbox name itself is a
    literal still to be read.  ParseError when the line holds no message start."""
    r = Reader(lines, literals, max_depth=options.max_depth)
    r.tag()
    r.sp()
    name = r.keyword()
    uid = name == "UID"
    if uid:
        r.sp()
        name = r.keyword()
    r.sp()
    replace = None
    if name == "REPLACE":  # RFC 8508 §6: "REPLACE" SP sequence-set SP mailbox append-message
        replace = r.sequence_set(max_ranges=options.max_ranges)
        r.sp()
    if r.literal_pending():
        return None
    mailbox = decode_mailbox(r.astring(), options.utf8)
    head = _message(r, lines[-1])
    if replace is not None and head.kind == "catenate":
        raise ParseError("REPLACE takes a message literal here", "CANNOT", "NO")
    return Append(mailbox, head.flags, head.date, replace, uid), head


def next_part(line: bytes, first: bool) -> Part:
    """The cat-part at the start of ``line`` (after SP unless ``first``), or ")"."""
    r = Reader([line], [])
    if r.take(b")"):
        if first:
            raise ParseError("CATENATE needs at least one part")  # RFC 4469 §5: 1*cat-part
        return Part("end", rest=line[1:])
    if not first:
        r.sp()
    word = r.keyword()
    r.sp()
    if word == "TEXT":
        marker = find_literal_marker(line)
        if not r.literal_pending() or marker is None:
            raise ParseError("TEXT needs a literal")
        return Part("text", marker=marker, rest=line[r.position[1] :])
    if word != "URL":
        raise ParseError(f"unknown CATENATE part {word}")
    if r.literal_pending():
        marker = find_literal_marker(line)
        assert marker is not None
        return Part("url-literal", marker=marker, rest=line[r.position[1] :])
    url = r.astring()
    return Part("url", url=url, rest=line[r.position[1] :])
