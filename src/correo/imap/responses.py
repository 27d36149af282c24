"""Serialising server responses (RFC 9051 §7, §4).

Strings pick their own form: an atom where the grammar allows one, a quoted
string when it is short and clean, a literal otherwise (CR, LF, NUL, 8-bit in
a non-UTF-8 session, or very long).  Text supplied by the shell that would
break a line (CR/LF) raises :class:`LocalProtocolError` rather than letting
our own code inject a response.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping, Sequence

from correo.imap.errors import LocalProtocolError
from correo.imap.sequence import format_sequence
from correo.imap.utf7 import encode_mutf7

__all__ = [
    "Item",
    "Raw",
    "capability_line",
    "continuation",
    "encode_item",
    "encode_list",
    "esearch",
    "exists",
    "expunge",
    "fetch_response",
    "flags_line",
    "format_internal_date",
    "internal_datetime",
    "list_response",
    "literal",
    "mailbox_name",
    "nstring",
    "quote_string",
    "search_response",
    "status_response",
    "tagged",
    "untagged",
    "vanished",
]

CRLF = b"\r\n"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_QUOTABLE_MAX = 1024  # longer strings go as literals: easier for clients, no escaping cost
_NEEDS_LITERAL = re.compile(rb"[\r\n\x00]")
_ATOM_OUT = re.compile(rb"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~\[]+")
_CODE = re.compile(r"[A-Za-z0-9.\-]+(?: [^\]\r\n\x00]+)?")


class Raw(bytes):
    """Already-encoded response text, written as-is by :func:`encode_item`."""


Item = Raw | bytes | str | int | None | Sequence["Item"]


def _text(text: str) -> bytes:
    data = text.encode("utf-8")
    if _NEEDS_LITERAL.search(data):
        raise LocalProtocolError("response text must not contain CR, LF or NUL")
    return data


def _status_line(lead: bytes, status: str, text: str, code: str | None) -> bytes:
    parts = [lead, status.encode("ascii")]
    if code is not None:
        if not _CODE.fullmatch(code):
            raise LocalProtocolError(f"invalid response code {code!r}")
        parts.append(b"[" + code.encode("utf-8") + b"]")  # RFC 9051 §7.1 resp-text-code
    parts.append(_text(text) if text else b"done")  # RFC 9051 §9: text = 1*TEXT-CHAR
    return b" ".join(parts) + CRLF


#: What follows the tag of the few tagged replies a session sends over and over ("OK
#: FETCH completed"): built and checked once, bounded (texts with names in them vary).
_TAILS: dict[tuple[str, str, str | None], bytes] = {}
_TAILS_KEPT = 256


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """``tag OK|NO|BAD [code] text`` (RFC 9051 §7.1)."""
    lead = tag.encode("ascii")
    key = (status, text, code)
    tail = _TAILS.get(key)
    if tail is None:
        if status not in ("OK", "NO", "BAD"):
            raise LocalProtocolError(f"invalid tagged status {status!r}")
        tail = _status_line(b"", status, text, code)  # b" OK [code] text\r\n"
        if len(_TAILS) >= _TAILS_KEPT:
            _TAILS.clear()
        _TAILS[key] = tail
    return lead + tail


def untagged(data: str | bytes, text: str = "", code: str | None = None) -> bytes:
    """``* data`` or, for a status (OK NO BAD PREAUTH BYE), ``* STATUS [code] text``."""
    if isinstance(data, str) and data in ("OK", "NO", "BAD", "PREAUTH", "BYE"):
        return _status_line(b"*", data, text, code)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if isinstance(data, str) and _NEEDS_LITERAL.search(raw):
        raise LocalProtocolError("untagged data must not contain CR, LF or NUL")
    return b"* " + raw + CRLF


def continuation(text: str = "OK") -> bytes:
    """``+ text`` (RFC 9051 §7.6)."""
    return b"+ " + (_text(text) if text else b"") + CRLF


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """``{n}CRLF data`` or literal8 ``~{n}`` (RFC 3516 §4.2) for BINARY fetch items."""
    return (b"~{" if binary else b"{") + str(len(data)).encode() + b"}\r\n" + data


def quote_string(s: str | bytes, utf8_ok: bool = True) -> bytes:
    """A string as quoted when safe, else a literal (RFC 9051 §4.3)."""
    data = s.encode("utf-8") if isinstance(s, str) else s
    if (
        len(data) > _QUOTABLE_MAX
        or _NEEDS_LITERAL.search(data)
        or (not utf8_ok and not data.isascii())
    ):
        return literal(data)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def nstring(s: str | bytes | None, utf8_ok: bool = True) -> bytes:
    return b"NIL" if s is None else quote_string(s, utf8_ok)


def _astring(s: str | bytes, utf8_ok: bool = True) -> bytes:
    data = s.encode("utf-8") if isinstance(s, str) else s
    if _ATOM_OUT.fullmatch(data) and data.upper() != b"NIL":
        return data
    return quote_string(data, utf8_ok)


def encode_item(item: Item) -> bytes:
    """Raw → as-is; int → number; None → NIL; str/bytes → astring; sequence → list."""
    if isinstance(item, Raw):
        return bytes(item)
    if isinstance(item, bool):
        raise LocalProtocolError("booleans have no IMAP form")
    if isinstance(item, int):
        if item < 0:
            raise LocalProtocolError("IMAP numbers are unsigned")
        return str(item).encode()
    if item is None:
        return b"NIL"
    if isinstance(item, str | bytes):
        return _astring(item)
    return encode_list(item)


def encode_list(items: Iterable[Item]) -> bytes:
    """A parenthesised list of :data:`Item` values."""
    return b"(" + b" ".join(encode_item(i) for i in items) + b")"


def fetch_response(seq: int, items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``* seq FETCH (name value ...)``; values are pre-encoded (RFC 9051 §7.5.2)."""
    body = b" ".join(name + b" " + value for name, value in items)
    return b"* %d FETCH (" % seq + body + b")" + CRLF


def flags_line(flags: Iterable[str]) -> bytes:
    """A flag list ``(\\Seen $Junk)`` as used in FETCH, FLAGS and PERMANENTFLAGS."""
    return b"(" + " ".join(flags).encode("ascii") + b")"


def exists(n: int) -> bytes:
    return b"* %d EXISTS\r\n" % n


def expunge(seq: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % seq


def search_response(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """Classic ``* SEARCH 2 3 5`` (RFC 3501 §7.2.5), ``(MODSEQ n)`` per RFC 7162 §3.1.5."""
    out = b"* SEARCH"
    nums = " ".join(map(str, numbers)).encode()  # one join: 10,000 numbers in ~1 ms
    if nums:
        out += b" " + nums
        if modseq is not None:
            out += b" (MODSEQ %d)" % modseq
    return out + CRLF


def esearch(
    tag: str | None,
    uid: bool,
    *,
    min: int | None = None,
    max: int | None = None,
    count: int | None = None,
    all: Iterable[int] | None = None,
    modseq: int | None = None,
) -> bytes:
    """``* ESEARCH (TAG "t") UID MIN 1 MAX 9 COUNT 3 ALL 1,5:9`` (RFC 9051 §7.3.4)."""
    out = b"* ESEARCH"
    if tag is not None:
        out += b" (TAG " + quote_string(tag) + b")"
    if uid:
        out += b" UID"
    if min is not None:
        out += b" MIN %d" % min
    if max is not None:
        out += b" MAX %d" % max
    if count is not None:
        out += b" COUNT %d" % count
    if all is not None:
        text = format_sequence(all)
        if text:  # RFC 4731 §3.1: ALL is omitted when nothing matched
            out += b" ALL " + text.encode()
    if modseq is not None:
        out += b" MODSEQ %d" % modseq
    return out + CRLF


def mailbox_name(name: str, utf8: bool) -> bytes:
    """A mailbox name as a wire string: UTF-8 or modified UTF-7 (RFC 9051 §5.1)."""
    if utf8:
        return quote_string(name, True)
    return quote_string(encode_mutf7(name), False)


def list_response(
    flags: Iterable[str],
    delimiter: str | None,
    name: str,
    utf8: bool,
    extended: Mapping[str, Item] | None = None,
    *,
    kind: str = "LIST",
) -> bytes:
    """``* LIST (\\HasNoChildren) "/" "name" (CHILDINFO ("SUBSCRIBED"))`` (RFC 5258 §3)."""
    delim = b"NIL" if delimiter is None else quote_string(delimiter)
    out = b"* " + kind.encode("ascii") + b" " + flags_line(flags) + b" " + delim
    out += b" " + mailbox_name(name, utf8)
    if extended:
        pairs: list[bytes] = []
        for key, value in extended.items():
            pairs.append(quote_string(key) + b" " + encode_item(value))
        out += b" (" + b" ".join(pairs) + b")"
    return out + CRLF


def status_response(mailbox: str, items: Mapping[str, int | str], utf8: bool) -> bytes:
    """``* STATUS "name" (MESSAGES 2 UIDNEXT 7)`` (RFC 9051 §7.2.4); a str value is
    written as it is (``MAILBOXID (M7)``, RFC 8474 §4.2)."""
    body = b" ".join(
        k.encode("ascii") + (b" %d" % v if isinstance(v, int) else b" " + v.encode("ascii"))
        for k, v in items.items()
    )
    return b"* STATUS " + mailbox_name(mailbox, utf8) + b" (" + body + b")" + CRLF


def capability_line(caps: Iterable[str]) -> bytes:
    """``* CAPABILITY IMAP4rev2 ...`` (RFC 9051 §7.2.2)."""
    words = list(caps)
    for w in words:
        if not _ATOM_OUT.fullmatch(w.encode("ascii", "replace")):
            raise LocalProtocolError(f"invalid capability {w!r}")
    return b"* CAPABILITY " + " ".join(words).encode("ascii") + CRLF


def vanished(uids: Iterable[int], earlier: bool = False) -> bytes:
    """``* VANISHED (EARLIER) 1:3,7`` (RFC 7162 §3.2.10)."""
    text = format_sequence(uids)
    if not text:
        raise LocalProtocolError("VANISHED needs at least one UID")
    lead = b"* VANISHED (EARLIER) " if earlier else b"* VANISHED "
    return lead + text.encode() + CRLF


@functools.lru_cache(maxsize=256)
def _zone(minutes: int) -> dt.tzinfo:
    if minutes == 0 or not -1440 < minutes < 1440:
        return dt.UTC
    return dt.timezone(dt.timedelta(minutes=minutes))


def internal_datetime(ts: float, zone: int = 0) -> dt.datetime:
    """A stored INTERNALDATE (UTC timestamp, zone in minutes east of UTC) as the client set it.

    RFC 9051 §6.4.4: SEARCH BEFORE/ON/SINCE compare the date of this value, in its own zone.
    """
    return dt.datetime.fromtimestamp(ts, _zone(zone))


def format_internal_date(ts: dt.datetime | float, zone: int = 0) -> bytes:
    """Quoted ``"17-Jul-1996 02:44:25 -0700"`` (RFC 9051 §9 date-time).

    A float is a UTC timestamp shown in ``zone`` (minutes east of UTC): RFC 9051 §2.3.3
    returns INTERNALDATE in the zone APPEND gave it.
    """
    when = ts if isinstance(ts, dt.datetime) else internal_datetime(ts, zone)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f'"{when.day:2d}-{_MONTHS[when.month - 1]}-{when.year:04d} '
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode("ascii")
