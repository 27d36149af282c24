"""ACL (RFC 4314): SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS, rights and responses.

Rights are the letters of RFC 4314 §2.1, each granted on its own (``RIGHTS=texk``:
no right is tied to another).  The obsolete ``c`` and ``d`` of RFC 2086 are accepted
in SETACL and stand for ``k`` and ``te`` (§2.1.1).  Negative rights (identifiers
starting with ``-``, §2) are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from correo.imap.cmdparse import decode_mailbox
from correo.imap.cmdtypes import ParseOptions
from correo.imap.errors import ParseError
from correo.imap.reader import Reader
from correo.imap.responses import mailbox_name, quote_string

__all__ = [
    "ALL_RIGHTS",
    "CAPABILITIES",
    "MAX_IDENTIFIER",
    "PARSERS",
    "DeleteAcl",
    "GetAcl",
    "ListRights",
    "MyRights",
    "SetAcl",
    "acl_response",
    "apply_rights",
    "listrights_response",
    "myrights_response",
]

#: Every right, in the order of RFC 4314 §2.1.
ALL_RIGHTS = "lrswipkxtea"
#: RFC 4314 §2.1 and §2.1.1: t, e, x and k are granted apart from one another.
CAPABILITIES = ("ACL", "RIGHTS=texk")
MAX_IDENTIFIER = 255
_OBSOLETE = {"c": "k", "d": "te"}


@dataclass(frozen=True, slots=True)
class SetAcl:
    """``SETACL mailbox identifier [+|-]rights`` (§3.1)."""

    mailbox: str
    identifier: str
    mode: str  # "", "+" or "-"
    rights: str  # sorted letters of ALL_RIGHTS


@dataclass(frozen=True, slots=True)
class DeleteAcl:
    """``DELETEACL mailbox identifier`` (§3.2)."""

    mailbox: str
    identifier: str


@dataclass(frozen=True, slots=True)
class GetAcl:
    """``GETACL mailbox`` (§3.3)."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class ListRights:
    """``LISTRIGHTS mailbox identifier`` (§3.4)."""

    mailbox: str
    identifier: str


@dataclass(frozen=True, slots=True)
class MyRights:
    """``MYRIGHTS mailbox`` (§3.5)."""

    mailbox: str


def _canonical(letters: Iterable[str]) -> str:
    got = set(letters)
    return "".join(r for r in ALL_RIGHTS if r in got)


def parse_rights(text: str) -> tuple[str, str]:
    """(mode, rights) of a SETACL argument; ParseError for a letter not known."""
    mode = text[:1] if text[:1] in ("+", "-") else ""
    letters: list[str] = []
    for ch in text[len(mode) :]:
        if ch in ALL_RIGHTS:
            letters.append(ch)
        elif ch in _OBSOLETE:
            letters.extend(_OBSOLETE[ch])
        else:
            raise ParseError(f"unknown right {ch!r}")  # §3.1: BAD, nothing changes
    return mode, _canonical(letters)


def apply_rights(current: str, mode: str, rights: str) -> str:
    """The rights after SETACL: replaced, added (``+``) or taken away (``-``)."""
    if mode == "+":
        return _canonical(current + rights)
    if mode == "-":
        return _canonical(r for r in current if r not in rights)
    return _canonical(rights)


def _identifier(r: Reader) -> str:
    raw = r.astring()
    if not raw or len(raw) > MAX_IDENTIFIER:
        raise ParseError("identifier empty or too long")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("identifier is not UTF-8") from exc


def _mailbox(r: Reader, o: ParseOptions) -> str:
    r.sp()
    return decode_mailbox(r.astring(), o.utf8)


def _setacl(r: Reader, o: ParseOptions) -> SetAcl:
    mailbox = _mailbox(r, o)
    r.sp()
    identifier = _identifier(r)
    r.sp()
    mode, rights = parse_rights(r.astring().decode("ascii", "replace"))
    r.end()
    return SetAcl(mailbox, identifier, mode, rights)


def _deleteacl(r: Reader, o: ParseOptions) -> DeleteAcl:
    mailbox = _mailbox(r, o)
    r.sp()
    identifier = _identifier(r)
    r.end()
    return DeleteAcl(mailbox, identifier)


def _getacl(r: Reader, o: ParseOptions) -> GetAcl:
    mailbox = _mailbox(r, o)
    r.end()
    return GetAcl(mailbox)


def _listrights(r: Reader, o: ParseOptions) -> ListRights:
    mailbox = _mailbox(r, o)
    r.sp()
    identifier = _identifier(r)
    r.end()
    return ListRights(mailbox, identifier)


def _myrights(r: Reader, o: ParseOptions) -> MyRights:
    mailbox = _mailbox(r, o)
    r.end()
    return MyRights(mailbox)


PARSERS: dict[
    str, Callable[[Reader, ParseOptions], SetAcl | DeleteAcl | GetAcl | ListRights | MyRights]
] = {
    "SETACL": _setacl,
    "DELETEACL": _deleteacl,
    "GETACL": _getacl,
    "LISTRIGHTS": _listrights,
    "MYRIGHTS": _myrights,
}


def _astring(text: str, utf8: bool) -> bytes:
    return quote_string(text, utf8)


def acl_response(mailbox: str, entries: Iterable[tuple[str, str]], utf8: bool) -> bytes:
    """``* ACL mailbox identifier rights ...`` (§3.6)."""
    parts = [b"* ACL " + mailbox_name(mailbox, utf8)]
    for identifier, rights in entries:
        parts.append(_astring(identifier, utf8) + b" " + _astring(rights, utf8))
    return b" ".join(parts) + b"\r\n"


def listrights_response(mailbox: str, identifier: str, required: str, utf8: bool) -> bytes:
    """``* LISTRIGHTS mailbox identifier required optional...`` (§3.7): each right not
    required may be granted on its own."""
    optional = " ".join(r for r in ALL_RIGHTS if r not in required)
    head = b"* LISTRIGHTS " + mailbox_name(mailbox, utf8) + b" " + _astring(identifier, utf8)
    tail = (b" " + optional.encode()) if optional else b""
    return head + b" " + _astring(required, utf8) + tail + b"\r\n"


def myrights_response(mailbox: str, rights: str, utf8: bool) -> bytes:
    """``* MYRIGHTS mailbox rights`` (§3.8)."""
    return b"* MYRIGHTS " + mailbox_name(mailbox, utf8) + b" " + _astring(rights, utf8) + b"\r\n"
