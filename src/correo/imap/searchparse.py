"""SEARCH, SORT and THREAD commands (RFC 9051 §6.4.4, RFC 5256, RFC 4731, RFC 5267)."""

from __future__ import annotations

from collections.abc import Callable

from correo.imap.cmdparse import paren_keywords
from correo.imap.cmdtypes import Command, ParseOptions, Search, Sort, SortCriterion, Thread
from correo.imap.errors import ParseError
from correo.imap.fetchparse import fetch_att_list
from correo.imap.reader import Reader
from correo.imap.returnopts import Returns, parse_returns
from correo.imap.search import parse_search_keys


def _return_opts(r: Reader) -> Returns:
    # RFC 9051 §6.4.4 / RFC 4731 §3 / RFC 5267 §5: "RETURN" SP "(" [opt *(SP opt)] ")"
    return parse_returns(r, fetch_att_list)


def read_charset(r: Reader) -> str:
    name = r.astring().decode("ascii", "replace").upper()
    if name not in ("UTF-8", "US-ASCII"):
        # RFC 9051 §6.4.4: unsupported charset is NO [BADCHARSET (...)]
        raise ParseError(f"unsupported charset {name}", "BADCHARSET (UTF-8 US-ASCII)", "NO")
    return name


def search_parser(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        returns: Returns | None = None
        if r.peek_keyword(b"RETURN"):
            r.keyword()
            returns = _return_opts(r)
            r.sp()
        charset: str | None = None
        if r.peek_keyword(b"CHARSET"):
            r.keyword()
            r.sp()
            charset = read_charset(r)
            r.sp()
        criteria = parse_search_keys(r, max_keys=o.max_search_keys)
        if returns is None:
            return Search(uid, criteria, charset)
        return Search(
            uid, criteria, charset, returns.options, returns.partial, returns.update_fetch
        )

    return parse


_SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


def sort_parser(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        returns: Returns | None = None
        if r.peek_keyword(b"RETURN"):  # RFC 5267 §3 ESORT
            r.keyword()
            returns = _return_opts(r)
            r.sp()
        words = paren_keywords(r)
        criteria: list[SortCriterion] = []
        reverse = False
        for word in words:  # RFC 5256 §3: ["REVERSE" SP] sort-key
            if word == "REVERSE" and not reverse:
                reverse = True
                continue
            if word not in _SORT_KEYS:
                raise ParseError(f"invalid sort criterion {word}")
            criteria.append(SortCriterion(word, reverse))
            reverse = False
        if reverse:
            raise ParseError("REVERSE without sort key")
        r.sp()
        charset = read_charset(r)
        r.sp()
        program = parse_search_keys(r, max_keys=o.max_search_keys)
        if returns is None:
            return Sort(uid, tuple(criteria), charset, program)
        return Sort(
            uid,
            tuple(criteria),
            charset,
            program,
            returns.options,
            returns.partial,
            returns.update_fetch,
        )

    return parse


def thread_parser(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        algorithm = r.keyword()
        if algorithm not in ("ORDEREDSUBJECT", "REFERENCES"):
            raise ParseError(f"unsupported THREAD algorithm {algorithm}", "CANNOT", "NO")
        r.sp()
        charset = read_charset(r)
        r.sp()
        program = parse_search_keys(r, max_keys=o.max_search_keys)
        return Thread(uid, algorithm, charset, program)

    return parse
