"""Commands of the extensions beyond :mod:`correo.imap.commands`, and one parser for all.

NOTIFY (RFC 5465), GENURLAUTH / RESETKEY / URLFETCH (RFC 4467), CANCELUPDATE
(RFC 5267 §4.3.5), GETMETADATA / SETMETADATA (RFC 5464), the ACL commands (RFC 4314).
:func:`parse_any` parses every command the connection knows;
:data:`ALL_COMMAND_NAMES` lists them for the state table check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from correo.imap.acl import PARSERS as ACL_PARSERS
from correo.imap.acl import DeleteAcl, GetAcl, ListRights, MyRights, SetAcl
from correo.imap.commands import COMMAND_NAMES, Command, ParseOptions, parse_command
from correo.imap.errors import ParseError
from correo.imap.metadata import PARSERS as METADATA_PARSERS
from correo.imap.metadata import GetMetadata, SetMetadata
from correo.imap.multisearch import MultiSearch, parse_esearch
from correo.imap.notify import Notify, parse_notify
from correo.imap.reader import Reader
from correo.imap.urlauth import PARSERS as URLAUTH_PARSERS
from correo.imap.urlauth import GenUrlAuth, ResetKey, UrlFetch

__all__ = [
    "ALL_COMMAND_NAMES",
    "EXTENSION_PARSERS",
    "AnyCommand",
    "CancelUpdate",
    "parse_any",
]

#: Tags one CANCELUPDATE may name (a session holds only a few contexts anyway).
_MAX_TAGS = 100


@dataclass(frozen=True, slots=True)
class CancelUpdate:
    """``CANCELUPDATE "tag" ...`` (RFC 5267 §4.3.5)."""

    tags: tuple[str, ...]


def _cancelupdate(r: Reader, o: ParseOptions) -> CancelUpdate:
    tags: list[str] = []
    while True:
        r.sp()  # RFC 5267 §5: "CANCELUPDATE" 1*(SP quoted)
        if r.peek() != 0x22:
            raise ParseError("CANCELUPDATE takes quoted tags")
        tags.append(r.quoted().decode("utf-8", "replace"))
        if len(tags) > _MAX_TAGS:
            raise ParseError("too many tags", "LIMIT")
        if r.at_end():
            return CancelUpdate(tuple(tags))


AnyCommand = (
    Command
    | Notify
    | GenUrlAuth
    | ResetKey
    | UrlFetch
    | CancelUpdate
    | GetMetadata
    | SetMetadata
    | MultiSearch
    | SetAcl
    | DeleteAcl
    | GetAcl
    | ListRights
    | MyRights
)

EXTENSION_PARSERS: dict[str, Callable[[Reader, ParseOptions], AnyCommand]] = {
    "NOTIFY": parse_notify,
    "CANCELUPDATE": _cancelupdate,
    **URLAUTH_PARSERS,
    **METADATA_PARSERS,
    "ESEARCH": parse_esearch,  # RFC 7377
    **ACL_PARSERS,  # RFC 4314
}
ALL_COMMAND_NAMES = COMMAND_NAMES | frozenset(EXTENSION_PARSERS)


def parse_any(
    lines: Sequence[bytes],
    literals: Sequence[bytes],
    *,
    binary: Sequence[bool] = (),
    options: ParseOptions | None = None,
) -> AnyCommand:
    """:func:`correo.imap.commands.parse_command` for every command, extensions included."""
    o = options if options is not None else ParseOptions()
    r = Reader(lines, literals, binary=binary, max_depth=o.max_depth)
    r.tag()
    r.sp()
    parser = EXTENSION_PARSERS.get(r.keyword())
    if parser is None:
        return parse_command(lines, literals, binary=binary, options=o)
    return parser(r, o)
