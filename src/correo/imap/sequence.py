"""Sequence sets (RFC 9051 §9 ``sequence-set``) and the SEARCHRES ``$`` (RFC 5182)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from correo.imap.errors import ParseError

__all__ = ["MAX_NUMBER", "STAR", "SequenceSet", "format_sequence", "ranges_contain"]

MAX_NUMBER = 0xFFFFFFFF  # RFC 9051 §9: nz-number / uniqueid fit in 32 bits
STAR = 0  # stands for "*": the largest number in use (never a valid nz-number)
_ELEMENT = re.compile(rb"([1-9][0-9]{0,9}|\*)(?::([1-9][0-9]{0,9}|\*))?")


def _value(tok: bytes) -> int:
    if tok == b"*":
        return STAR
    n = int(tok)
    if n > MAX_NUMBER:
        raise ParseError("number out of range in sequence set")
    return n


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """Parsed but unresolved: ``*`` is kept as STAR until the mailbox size is known."""

    ranges: tuple[tuple[int, int], ...] = ()
    saved: bool = False  # "$": the saved search result (RFC 5182 §2)

    @classmethod
    def parse(
        cls, text: str | bytes, *, allow_star: bool = True, max_ranges: int = 10_000
    ) -> SequenceSet:
        """Parse strictly; raise ParseError (BAD) on any deviation from the grammar."""
        data = text.encode("ascii", "replace") if isinstance(text, str) else text
        if data.isdigit() and data[0] != 0x30 and len(data) <= 10:  # one number: most common
            n = int(data)
            if n <= MAX_NUMBER:
                return cls(((n, n),))
        if data == b"$":
            return cls((), saved=True)  # RFC 5182 §2
        if data.count(b",") >= max_ranges:
            raise ParseError("too many ranges in sequence set", "TOOBIG")
        out: list[tuple[int, int]] = []
        for part in data.split(b","):
            m = _ELEMENT.fullmatch(part)
            if m is None:
                raise ParseError("invalid sequence set")
            lo = _value(m.group(1))
            hi = lo if m.group(2) is None else _value(m.group(2))
            if not allow_star and STAR in (lo, hi):
                raise ParseError("'*' not allowed here")
            out.append((lo, hi))
        return cls(tuple(out))

    def resolve(self, max_value: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges; ``*`` = max_value, ``n:m`` with n>m swapped.

        A ``$`` set resolves to nothing: the caller substitutes its saved result.
        """
        spans: list[tuple[int, int]] = []
        for lo, hi in self.ranges:
            a = max_value if lo == STAR else lo
            b = max_value if hi == STAR else hi
            if a > b:
                a, b = b, a  # RFC 9051 §9: "4:2" equals "2:4"
            if b < 1:
                continue  # "*" in an empty mailbox
            spans.append((max(a, 1), b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return merged

    def contains(self, n: int, max_value: int) -> bool:
        """Whether ``n`` is in the set once ``*`` means max_value."""
        return ranges_contain(self.resolve(max_value), n)

    def matcher(self, max_value: int) -> Callable[[int], bool]:
        """A membership test resolved once, for evaluating many messages."""
        spans = self.resolve(max_value)
        return lambda n: ranges_contain(spans, n)

    def __str__(self) -> str:
        if self.saved:
            return "$"

        def one(v: int) -> str:
            return "*" if v == STAR else str(v)

        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)


def ranges_contain(spans: list[tuple[int, int]], n: int) -> bool:
    """Binary search in resolved (sorted, disjoint) ranges."""
    i = bisect.bisect_right(spans, (n, MAX_NUMBER + 1)) - 1
    return i >= 0 and spans[i][0] <= n <= spans[i][1]


def format_sequence(values: Iterable[int]) -> str:
    """Compact form of a set of numbers: ``[1,2,3,5]`` → ``"1:3,5"`` (empty → "")."""
    out: list[str] = []
    start = prev = -2
    for v in sorted(set(values)):
        if v == prev + 1:
            prev = v
            continue
        if prev >= 0:
            out.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = v
    if prev >= 0:
        out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out)
