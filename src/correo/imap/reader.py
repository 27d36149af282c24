"""Tokenizer for one assembled IMAP command (RFC 9051 §4, §9).

The connection frames a command as ``lines`` (CRLF stripped) and the
``literals`` that followed them: line *i* ends with a literal marker
(``{n}``, ``{n+}`` or ``~{n}``) whose octets are ``literals[i]``.  The
:class:`Reader` walks that structure token by token; a literal is just a
string that happens to be at the marker's position.  Every scan uses compiled
regexes or bytes methods on the line, never a per-byte Python loop.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from correo.imap.errors import ParseError
from correo.imap.sequence import SequenceSet

__all__ = [
    "MAX_NUMBER64",
    "ImapLimits",
    "LiteralMarker",
    "Reader",
    "find_literal_marker",
    "parse_date_text",
    "parse_tag",
]

MAX_NUMBER = 0xFFFFFFFF  # RFC 9051 §9 number
MAX_NUMBER64 = 0x7FFFFFFFFFFFFFFF  # RFC 9051 §9 number64

# RFC 9051 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
# quoted-specials / resp-specials; 8-bit octets are never atom characters.
_ATOM = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\\]\x80-\xff]+')
_ASTRING = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\\x80-\xff]+')  # ASTRING-CHAR adds "]"
_LIST_CHARS = re.compile(rb'[^(){ \x00-\x1f\x7f"\\\x80-\xff]+')  # list-char adds % *
_TAG = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\+\x80-\xff]+')  # tag: ASTRING-CHAR minus "+"
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_NUMBER = re.compile(rb"[0-9]+")
_SEQSET = re.compile(rb"[0-9:*,$]+")
_FLAG = re.compile(rb'\\?[^(){ \x00-\x1f\x7f%*"\\\]\x80-\xff]+')
_MARKER = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")
_UNESCAPE = re.compile(rb"\\([\"\\])")
_MONTHS = {
    m: i + 1 for i, m in enumerate(b"JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())
}
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
# RFC 9051 §9 date-time: DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone
_DATE_TIME = re.compile(
    rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)


@dataclass(frozen=True, slots=True)
class LiteralMarker:
    """A literal announced at the end of a line."""

    size: int
    sync: bool  # False for LITERAL+ "{n+}" (RFC 7888 §3)
    binary: bool  # literal8 "~{n}" (RFC 3516 §4.1)
    start: int  # offset of the marker in its line


def find_literal_marker(line: bytes) -> LiteralMarker | None:
    """The marker ending ``line`` (CRLF stripped), if any; sizes above number64 count as huge."""
    if not line.endswith(b"}"):
        return None
    m = _MARKER.search(line, max(0, len(line) - 26))
    if m is None:
        return None
    size = int(m.group(2))
    return LiteralMarker(
        size=min(size, MAX_NUMBER64 + 1),
        sync=not m.group(3),
        binary=bool(m.group(1)),
        start=m.start(),
    )


def parse_tag(line: bytes) -> str | None:
    """The tag at the start of a command line, or None if it is not a valid tag (RFC 9051 §9)."""
    m = _TAG.match(line)
    if m is None or m.end() >= len(line) or line[m.end()] != 0x20:
        return None
    return m.group().decode("ascii")


def parse_date_text(data: bytes) -> dt.date:
    """``d-Mon-yyyy`` (RFC 9051 §9 date-text) into a date; ParseError if invalid."""
    m = _DATE.fullmatch(data)
    month = _MONTHS.get(m.group(2).upper()) if m else None
    if m is None or month is None:
        raise ParseError("invalid date")
    try:
        return dt.date(int(m.group(3)), month, int(m.group(1)))
    except ValueError as exc:
        raise ParseError("invalid date") from exc


class Reader:
    """Cursor over one command; every method raises ParseError on a grammar violation."""

    def __init__(
        self,
        lines: Sequence[bytes],
        literals: Sequence[bytes],
        *,
        binary: Sequence[bool] = (),
        max_depth: int = 32,
    ) -> None:
        self._lines = lines
        self._lits = literals
        self._binary = binary
        self._max_depth = max_depth
        self._depth = 0
        self._i = 0
        self._pos = 0
        self._ends: list[int] = []
        for line in lines:
            marker = find_literal_marker(line)
            self._ends.append(marker.start if marker is not None else len(line))
        self._line = lines[0] if lines else b""
        self._end = self._ends[0] if self._ends else 0

    # ---- position -------------------------------------------------------------

    @property
    def position(self) -> tuple[int, int]:
        """(line index, offset): lets a caller tell where a literal sits."""
        return self._i, self._pos

    def at_literal(self) -> bool:
        """A literal (present or still pending) starts here."""
        return self._pos == self._end and self._end < len(self._line)

    def at_literal8(self) -> bool:
        """A literal8 (``~{n}``, RFC 3516 §4.1) starts here."""
        return self.at_literal() and self._i < len(self._binary) and self._binary[self._i]

    def literal_pending(self) -> bool:
        """A literal starts here whose octets have not been read yet."""
        return self.at_literal() and self._i >= len(self._lits)

    def at_end(self) -> bool:
        return self._pos >= len(self._line) and self._i == len(self._lines) - 1

    def peek(self) -> int:
        """The next octet, or -1 at a literal or at the end."""
        if self._pos < self._end:
            return self._line[self._pos]
        return -1

    def peek_is(self, data: bytes) -> bool:
        return self._line.startswith(data, self._pos) and self._pos + len(data) <= self._end

    def peek_keyword(self, word: bytes) -> bool:
        """Whether the next atom is ``word`` (case-insensitive), without consuming it."""
        m = _ATOM.match(self._line, self._pos, self._end)
        return m is not None and m.group().upper() == word

    def plain_rest(self) -> bytes | None:
        """What is left of a one-line command without literals (None otherwise)."""
        if len(self._lines) == 1 and self._end == len(self._line):
            return self._line[self._pos :]
        return None

    def skip_rest(self) -> None:
        """Consume the rest of a one-line command (after :meth:`plain_rest`)."""
        self._pos = len(self._line)

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("unexpected data at end of command")

    # ---- single characters ------------------------------------------------------

    def expect(self, data: bytes) -> None:
        if not self.peek_is(data):
            what = "space" if data == b" " else repr(data.decode("ascii"))
            raise ParseError(f"expected {what}")
        self._pos += len(data)

    def sp(self) -> None:
        self.expect(b" ")

    def take(self, data: bytes) -> bool:
        """Consume ``data`` if it comes next."""
        if self.peek_is(data):
            self._pos += len(data)
            return True
        return False

    def open_paren(self) -> None:
        self.expect(b"(")
        self.enter()

    def close_paren(self) -> None:
        self.expect(b")")
        self._depth -= 1

    def enter(self) -> None:
        self._depth += 1
        if self._depth > self._max_depth:
            raise ParseError("nested too deeply", "LIMIT")

    def leave(self) -> None:
        self._depth -= 1

    # ---- tokens -----------------------------------------------------------------

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self._line, self._pos, self._end)
        if m is None:
            raise ParseError(f"expected {what}")
        self._pos = m.end()
        return m.group()

    def tag(self) -> str:
        return self._match(_TAG, "tag").decode("ascii")

    def atom_like(self, pattern: re.Pattern[bytes]) -> bytes:
        """A token matched by the caller's own pattern (FETCH item names, sections)."""
        m = pattern.match(self._line, self._pos, self._end)
        if m is None:
            raise ParseError("unexpected token")
        self._pos = m.end()
        return m.group()

    def atom(self) -> bytes:
        return self._match(_ATOM, "atom")

    def keyword(self) -> str:
        """An atom, upper-cased: command and item names are case-insensitive (RFC 9051 §9)."""
        return self.atom().upper().decode("ascii")

    def flag(self) -> str:
        return self._match(_FLAG, "flag").decode("ascii")

    def number(self, maximum: int = MAX_NUMBER, *, nonzero: bool = False) -> int:
        tok = self._match(_NUMBER, "number")
        if len(tok) > 20 or int(tok) > maximum:
            raise ParseError("number out of range")  # RFC 9051 §9 number / number64
        value = int(tok)
        if nonzero and value == 0:
            raise ParseError("number must not be zero")
        return value

    def sequence_set(self, *, allow_star: bool = True, max_ranges: int = 10_000) -> SequenceSet:
        tok = self._match(_SEQSET, "sequence set")
        return SequenceSet.parse(tok, allow_star=allow_star, max_ranges=max_ranges)

    def quoted(self) -> bytes:
        m = _QUOTED.match(self._line, self._pos, self._end)
        if m is None:
            raise ParseError("invalid quoted string")
        self._pos = m.end()
        return _UNESCAPE.sub(rb"\1", m.group(1))

    def literal(self, *, allow_binary: bool = False) -> bytes:
        if not self.at_literal() or self._i >= len(self._lits):
            raise ParseError("expected literal")
        if not allow_binary and self._i < len(self._binary) and self._binary[self._i]:
            raise ParseError("literal8 not allowed here", "CLIENTBUG")
        data = self._lits[self._i]
        if b"\x00" in data and not allow_binary:
            raise ParseError("NUL in literal")  # RFC 9051 §4.3: CHAR8 excludes NUL
        self._i += 1
        self._line = self._lines[self._i]
        self._end = self._ends[self._i]
        self._pos = 0
        return data

    def string(self) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        return self.literal()

    def astring(self) -> bytes:
        if self.peek() == 0x22 or self.at_literal():
            return self.string()
        return self._match(_ASTRING, "atom or string")

    def nstring(self) -> bytes | None:
        if self.peek_keyword(b"NIL"):
            self._pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        if self.peek() == 0x22 or self.at_literal():
            return self.string()
        return self._match(_LIST_CHARS, "mailbox pattern")

    def date(self) -> dt.date:
        """RFC 9051 §9 date: date-text, optionally quoted."""
        if self.take(b'"'):
            value = parse_date_text(self._match(_DATE, "date"))
            self.expect(b'"')
            return value
        return parse_date_text(self._match(_DATE, "date"))

    def date_time(self) -> dt.datetime:
        m = _DATE_TIME.match(self._line, self._pos, self._end)
        month = _MONTHS.get(m.group(2).upper()) if m else None
        if m is None or month is None:
            raise ParseError("invalid date-time")
        self._pos = m.end()
        offset = int(m.group(8)) * 60 + int(m.group(9))
        if m.group(7) == b"-":
            offset = -offset
        try:
            tz = dt.timezone(dt.timedelta(minutes=offset))
            return dt.datetime(
                int(m.group(3)),
                month,
                int(m.group(1).strip()),
                int(m.group(4)),
                int(m.group(5)),
                int(m.group(6)),
                tzinfo=tz,
            )
        except ValueError as exc:
            raise ParseError("invalid date-time") from exc


@dataclass(frozen=True, slots=True)
class ImapLimits:
    """Named bounds; every buffer is held to one of these while it is read.

    max_line: octets of command text outside literals, all lines of one command
        together, CRLFs included (RFC 9051 §4 sets no limit; RFC 7162 §4 asks
        for at least 8 KiB; 64 KiB fits huge UID sets).
    max_literal: one literal outside APPEND (mailbox names, passwords, search
        strings); larger ones get ``BAD [TOOBIG]`` before any ``+``.
    max_command_literals: all literals of one command together.
    max_append: one APPEND message (advertised as APPENDLIMIT, RFC 7889).
    max_auth_line: one SASL response line (RFC 4954 §4 suggests 12 KiB).
    max_depth: nesting of parentheses (search programs, LIST options).
    max_ranges: ranges in one sequence set.
    max_search_keys: keys in one search program, counting nested ones.
    max_bad_commands: consecutive rejected commands before ``* BYE``.
    max_skip: a refused LITERAL+ literal is read and dropped up to this size; a
        bigger one ends the connection after the BAD (RFC 7888 §4 allows closing).
    allow_plaintext_auth: LOGIN/AUTHENTICATE without TLS (RFC 9051 §6.2.3 LOGINDISABLED).
    """

    max_line: int = 64 * 1024
    max_literal: int = 64 * 1024
    max_command_literals: int = 1024 * 1024
    max_append: int = 50 * 1024 * 1024
    max_auth_line: int = 12 * 1024
    max_depth: int = 32
    max_ranges: int = 10_000
    max_search_keys: int = 1000
    max_bad_commands: int = 20
    max_skip: int = 128 * 1024 * 1024
    allow_plaintext_auth: bool = False

    def __post_init__(self) -> None:
        if min(self.max_line, self.max_auth_line) < 64:
            raise ValueError("line limits must be at least 64 octets")
        if min(self.max_literal, self.max_append, self.max_depth, self.max_ranges) < 1:
            raise ValueError("limits must be positive")
        if self.max_search_keys < 1 or self.max_bad_commands < 1:
            raise ValueError("limits must be positive")
