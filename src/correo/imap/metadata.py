"""METADATA (RFC 5464): GETMETADATA and SETMETADATA, their entry names and responses.

Entry names are checked here once (§3.2): they start with ``/private/`` or
``/shared/``, are printable ASCII without ``*``, ``%``, an empty component or a
trailing slash, at most :data:`MAX_ENTRY` octets; they compare case-insensitively,
so they are lower-cased.  A command names at most :data:`MAX_ENTRIES` entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from correo.imap.cmdparse import decode_mailbox
from correo.imap.cmdtypes import ParseOptions
from correo.imap.errors import ParseError
from correo.imap.reader import Reader
from correo.imap.responses import literal, mailbox_name, quote_string

__all__ = [
    "INFINITY",
    "MAX_ENTRIES",
    "MAX_ENTRY",
    "PARSERS",
    "GetMetadata",
    "SetMetadata",
    "check_entry",
    "metadata_response",
    "parse_entry_list",
    "within_depth",
]

MAX_ENTRY = 1024
MAX_ENTRIES = 100
#: DEPTH infinity (RFC 5464 §4.2.2).
INFINITY = -1

_ENTRY = re.compile(r"/(?:private|shared)(?:/[!-$&-)+-.0-~]+)+")  # no "*", "%", "/" inside
_ROOTS = ("/private", "/shared")


@dataclass(frozen=True, slots=True)
class GetMetadata:
    """``GETMETADATA [(MAXSIZE n DEPTH d)] mailbox entries`` (§4.2); mailbox "" is the server."""

    mailbox: str
    entries: tuple[str, ...]
    maxsize: int | None = None
    depth: int = 0  # 0, 1 or INFINITY


@dataclass(frozen=True, slots=True)
class SetMetadata:
    """``SETMETADATA mailbox (entry value ...)`` (§4.3); a None value removes the entry."""

    mailbox: str
    values: tuple[tuple[str, bytes | None], ...]


def check_entry(raw: bytes, *, root_ok: bool = False) -> str:
    """The entry name, lower-cased; ParseError unless it is valid (RFC 5464 §3.2)."""
    try:
        name = raw.decode("ascii").lower()
    except UnicodeDecodeError as exc:
        raise ParseError("invalid entry name") from exc
    if len(name) > MAX_ENTRY:
        raise ParseError("entry name too long")
    if _ENTRY.fullmatch(name) or (root_ok and name in _ROOTS):
        return name
    raise ParseError("invalid entry name")


def _entries(r: Reader, *, root_ok: bool) -> tuple[str, ...]:
    out: list[str] = []
    if r.peek() != 0x28:
        return (check_entry(r.astring(), root_ok=root_ok),)
    r.open_paren()
    while True:
        out.append(check_entry(r.astring(), root_ok=root_ok))
        if len(out) > MAX_ENTRIES:
            raise ParseError("too many entries", "LIMIT")
        if not r.take(b" "):
            break
    r.close_paren()
    return tuple(dict.fromkeys(out))


def parse_entry_list(r: Reader) -> tuple[str, ...]:
    """``entries`` as LIST RETURN (METADATA (...)) takes them (RFC 9590 §3)."""
    return _entries(r, root_ok=False)


def _getmetadata(r: Reader, o: ParseOptions) -> GetMetadata:
    r.sp()
    maxsize: int | None = None
    depth = 0
    if r.peek() == 0x28:  # getmetadata-options
        r.open_paren()
        seen: set[str] = set()
        while True:
            name = r.keyword()
            if name in seen:
                raise ParseError(f"{name} given twice")
            seen.add(name)
            r.sp()
            if name == "MAXSIZE":
                maxsize = r.number()
            elif name == "DEPTH":
                word = r.atom().lower()
                if word not in (b"0", b"1", b"infinity"):
                    raise ParseError("DEPTH is 0, 1 or infinity")
                depth = INFINITY if word == b"infinity" else int(word)
            else:
                raise ParseError(f"unknown GETMETADATA option {name}")
            if not r.take(b" "):
                break
        r.close_paren()
        r.sp()
    mailbox = decode_mailbox(r.astring(), o.utf8)
    r.sp()
    entries = _entries(r, root_ok=True)
    r.end()
    return GetMetadata(mailbox, entries, maxsize, depth)


def _setmetadata(r: Reader, o: ParseOptions) -> SetMetadata:
    r.sp()
    mailbox = decode_mailbox(r.astring(), o.utf8)
    r.sp()
    r.open_paren()
    values: dict[str, bytes | None] = {}
    while True:
        entry = check_entry(r.astring())
        r.sp()
        # RFC 5464 §5: value = nstring / literal8 (which may carry NUL)
        values[entry] = r.literal(allow_binary=True) if r.at_literal8() else r.nstring()
        if len(values) > MAX_ENTRIES:
            raise ParseError("too many entries", "LIMIT")
        if not r.take(b" "):
            break
    r.close_paren()
    r.end()
    return SetMetadata(mailbox, tuple(values.items()))


PARSERS: dict[str, Callable[[Reader, ParseOptions], GetMetadata | SetMetadata]] = {
    "GETMETADATA": _getmetadata,
    "SETMETADATA": _setmetadata,
}


def within_depth(name: str, asked: str, depth: int) -> bool:
    """Whether entry ``name`` answers ``asked`` at DEPTH ``depth`` (RFC 5464 §4.2.2)."""
    if name == asked:
        return True
    if not name.startswith(asked + "/"):
        return False
    return depth == INFINITY or (depth == 1 and "/" not in name[len(asked) + 1 :])


def _value(value: bytes | None, utf8: bool) -> bytes:
    if value is None:
        return b"NIL"
    if b"\x00" in value:
        return literal(value, binary=True)  # literal8 (RFC 5464 §5, RFC 3516)
    return quote_string(value, utf8)


def metadata_response(mailbox: str, items: Iterable[tuple[str, bytes | None]], utf8: bool) -> bytes:
    """``* METADATA "mailbox" (entry value ...)`` (RFC 5464 §4.4.1)."""
    body = b" ".join(e.encode("ascii") + b" " + _value(v, utf8) for e, v in items)
    return b"* METADATA " + mailbox_name(mailbox, utf8) + b" (" + body + b")\r\n"
