"""URLAUTH commands (RFC 4467 §7, RFC 5524 §3): GENURLAUTH, RESETKEY, URLFETCH.

The URLs themselves are parsed when the command runs (:mod:`correo.imap.urls`): a
URL that is not valid is an answer (``NIL`` for URLFETCH, RFC 4467 §7), not a syntax
error of the command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from correo.imap.commands import ParseOptions, decode_mailbox
from correo.imap.errors import ParseError
from correo.imap.reader import Reader
from correo.imap.urls import MAX_URL

__all__ = [
    "MAX_URLS",
    "PARSERS",
    "FetchUrl",
    "GenUrlAuth",
    "ResetKey",
    "UrlFetch",
]

#: URLs (or URL/mechanism pairs) in one command: each costs a store lookup.
MAX_URLS = 100
_FETCH_PARAMS = frozenset({"BODY", "BINARY", "BODYPARTSTRUCTURE"})


@dataclass(frozen=True, slots=True)
class GenUrlAuth:
    """``GENURLAUTH url-rump mechanism ...`` (RFC 4467 §7)."""

    requests: tuple[tuple[str, str], ...]  # (rump URL, mechanism upper-cased)


@dataclass(frozen=True, slots=True)
class ResetKey:
    """``RESETKEY [mailbox *mechanism]``: no mailbox resets every key of the user."""

    mailbox: str | None = None
    mechanisms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchUrl:
    """One URLFETCH argument; ``params`` None for the plain form (RFC 5524 §3)."""

    url: str
    params: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class UrlFetch:
    urls: tuple[FetchUrl, ...]


def _url(r: Reader) -> str:
    raw = r.astring()
    if len(raw) > MAX_URL:
        raise ParseError("URL too long", "TOOBIG")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("URL is not UTF-8") from exc


def _genurlauth(r: Reader, o: ParseOptions) -> GenUrlAuth:
    requests: list[tuple[str, str]] = []
    while True:
        r.sp()  # RFC 4467 §9: genurlauth = "GENURLAUTH" 1*(SP url-rump SP mechanism)
        rump = _url(r)
        r.sp()
        requests.append((rump, r.keyword()))
        if len(requests) > MAX_URLS:
            raise ParseError("too many URLs", "LIMIT")
        if r.at_end():
            return GenUrlAuth(tuple(requests))


def _resetkey(r: Reader, o: ParseOptions) -> ResetKey:
    if r.at_end():
        return ResetKey()
    r.sp()  # RFC 4467 §9: resetkey = "RESETKEY" [SP mailbox *(SP mechanism)]
    mailbox = decode_mailbox(r.astring(), o.utf8)
    mechanisms: list[str] = []
    while r.take(b" "):
        mechanisms.append(r.keyword())
        if len(mechanisms) > MAX_URLS:
            raise ParseError("too many mechanisms", "LIMIT")
    r.end()
    return ResetKey(mailbox, tuple(mechanisms))


def _urlfetch(r: Reader, o: ParseOptions) -> UrlFetch:
    urls: list[FetchUrl] = []
    while True:
        r.sp()  # RFC 4467 §9 / RFC 5524 §3: 1*(SP (url / "(" url *(SP param) ")"))
        if r.peek() == 0x28:
            r.open_paren()
            url = _url(r)
            params: set[str] = set()
            while r.take(b" "):
                param = r.keyword()
                if param not in _FETCH_PARAMS:
                    raise ParseError(f"unknown URLFETCH parameter {param}")
                params.add(param)
            r.close_paren()
            if {"BODY", "BINARY"} <= params:
                raise ParseError("BODY and BINARY exclude each other")  # RFC 5524 §3
            urls.append(FetchUrl(url, frozenset(params or {"BODY"})))
        else:
            urls.append(FetchUrl(_url(r)))
        if len(urls) > MAX_URLS:
            raise ParseError("too many URLs", "LIMIT")
        if r.at_end():
            return UrlFetch(tuple(urls))


PARSERS: dict[str, Callable[[Reader, ParseOptions], GenUrlAuth | ResetKey | UrlFetch]] = {
    "GENURLAUTH": _genurlauth,
    "RESETKEY": _resetkey,
    "URLFETCH": _urlfetch,
}
