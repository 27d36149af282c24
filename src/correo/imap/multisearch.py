"""MULTISEARCH (RFC 7377): ``ESEARCH [IN (sources)] [RETURN (...)] [CHARSET c] keys``.

One search over several mailboxes, answered per mailbox with an ESEARCH response
carrying MAILBOX and UIDVALIDITY (§2.1), always in UIDs.  The sources are those of
NOTIFY (RFC 5465 §6) plus ``subtree-one``; without IN the selected mailbox is
searched.  Message sequence numbers and ``$`` mean nothing in another mailbox, so a
program using them is BAD, as are the RETURN options that keep state (SAVE, CONTEXT,
UPDATE, PARTIAL).
"""

from __future__ import annotations

from dataclasses import dataclass

from correo.imap.cmdparse import decode_mailbox
from correo.imap.cmdtypes import ParseOptions
from correo.imap.errors import ParseError
from correo.imap.reader import Reader
from correo.imap.returnopts import parse_returns
from correo.imap.search import And, Not, Or, SearchKey, SeqKey, parse_search_keys
from correo.imap.searchparse import read_charset

__all__ = ["MAX_SOURCE_NAMES", "SOURCES", "MultiSearch", "parse_esearch"]

#: Mailbox names one ESEARCH may list.
MAX_SOURCE_NAMES = 1000
SOURCES = frozenset(
    {"SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE",
     "SUBTREE-ONE", "MAILBOXES"}
)  # fmt: skip
_NAMED = frozenset({"SUBTREE", "SUBTREE-ONE", "MAILBOXES"})
_RETURNS = frozenset({"MIN", "MAX", "ALL", "COUNT"})


@dataclass(frozen=True, slots=True)
class MultiSearch:
    """``sources``: (filter, mailbox names) pairs; ``returns``: MIN MAX ALL COUNT."""

    sources: tuple[tuple[str, tuple[str, ...]], ...]
    returns: tuple[str, ...]
    charset: str | None
    criteria: SearchKey


def _names(r: Reader, o: ParseOptions, budget: list[int]) -> tuple[str, ...]:
    names: list[str] = []
    if r.peek() != 0x28:
        names.append(decode_mailbox(r.astring(), o.utf8))
    else:
        r.open_paren()
        while True:
            names.append(decode_mailbox(r.astring(), o.utf8))
            if not r.take(b" "):
                break
        r.close_paren()
    budget[0] -= len(names)
    if budget[0] < 0:
        raise ParseError("too many mailbox names", "LIMIT")
    return tuple(names)


def _numbered(key: SearchKey) -> bool:
    match key:
        case SeqKey(seqset, uid):
            return not uid or seqset.saved
        case Not(inner):
            return _numbered(inner)
        case Or(left, right):
            return _numbered(left) or _numbered(right)
        case And(keys):
            return any(_numbered(k) for k in keys)
    return False


def parse_esearch(r: Reader, o: ParseOptions) -> MultiSearch:
    r.sp()
    sources: list[tuple[str, tuple[str, ...]]] = []
    if r.peek_keyword(b"IN"):  # RFC 7377 §6: "IN" SP "(" source-mbox ")"
        r.keyword()
        r.sp()
        r.open_paren()
        budget = [MAX_SOURCE_NAMES]
        while True:
            kind = r.keyword()
            if kind not in SOURCES:
                raise ParseError(f"unknown mailbox source {kind}")
            names: tuple[str, ...] = ()
            if kind in _NAMED:
                r.sp()
                names = _names(r, o, budget)
            sources.append((kind, names))
            if not r.take(b" "):
                break
        r.close_paren()
        r.sp()
    returns: tuple[str, ...] = ("ALL",)
    if r.peek_keyword(b"RETURN"):
        r.keyword()
        given = parse_returns(r)
        if not set(given.options) <= _RETURNS or given.partial is not None:
            raise ParseError("ESEARCH returns MIN, MAX, ALL and COUNT only")
        returns = given.options or ("ALL",)  # RFC 4731 §3.1: () is ALL
        r.sp()
    charset: str | None = None
    if r.peek_keyword(b"CHARSET"):
        r.keyword()
        r.sp()
        charset = read_charset(r)
        r.sp()
    criteria = parse_search_keys(r, max_keys=o.max_search_keys)
    if sources and _numbered(criteria):
        raise ParseError("message numbers and $ name no message in other mailboxes")
    return MultiSearch(tuple(sources), returns, charset, criteria)
