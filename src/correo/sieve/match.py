"""Comparators (RFC 4790, RFC 5228 §2.7.3), match types (RFC 5228 §2.7.1)
and relational matches (RFC 5231).

``:matches`` is compiled into star-separated fixed-length segments matched
leftmost-first, so a pattern never backtracks exponentially: the cost is
O(len(value) * len(pattern)) whatever the input.  That product can still be large
(a 1 MiB body against a pattern of many ``?``), so a segment is searched in windows
of bounded work — no single regex call holds the interpreter for long — and every
window is paid for through the caller's ``charge`` before it runs.

``charge(n)`` counts work in steps of :data:`WORK_PER_STEP` character comparisons;
the interpreter raises from it when a run's budget is spent.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "COMPARATORS",
    "MATCH_TYPES",
    "RELATIONS",
    "WORK_PER_STEP",
    "Charge",
    "Glob",
    "Matcher",
    "ascii_casemap",
    "compile_glob",
    "numeric_value",
    "quote_wildcards",
]

COMPARATORS = frozenset({"i;octet", "i;ascii-casemap", "i;ascii-numeric"})
MATCH_TYPES = frozenset({"is", "contains", "matches", "value", "count"})
RELATIONS = frozenset({"gt", "ge", "lt", "le", "eq", "ne"})  # RFC 5231 §4

#: Character comparisons one step of a run's budget pays for.
WORK_PER_STEP = 1024
#: Character comparisons one regex call may do (about a millisecond).
_WORK_PER_CALL = 1 << 20

Charge = Callable[[int], None]


def _free(_steps: int) -> None:
    """The charge of callers without a budget (tests, tools)."""


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_LEADING_DIGITS = re.compile(r"[0-9]+")
_GLOB_TOKEN = re.compile(r"\\(.)|\\$|(\*)|(\?)|([^\\*?]+)", re.DOTALL)
_GLOB_META = re.compile(r"([\\*?])")


def ascii_casemap(value: str) -> str:
    """i;ascii-casemap folds only A-Z (RFC 4790 §9.2), never other letters."""
    return value.translate(_ASCII_LOWER)


def numeric_value(value: str) -> int | None:
    """i;ascii-numeric (RFC 4790 §9.1): leading digits; None is +infinity."""
    m = _LEADING_DIGITS.match(value)
    if m is None:
        return None
    return int(m.group()[:4000])


def quote_wildcards(value: str) -> str:
    """Escape ``* ? \\`` so the value matches itself under :matches."""
    return _GLOB_META.sub(r"\\\1", value)


@dataclass(frozen=True, slots=True)
class _Segment:
    regex: re.Pattern[str]
    length: int


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled :matches pattern: segments separated by ``*``."""

    segments: tuple[_Segment, ...]

    def match(self, folded: str, original: str, charge: Charge = _free) -> tuple[str, ...] | None:
        """Match ``folded``; return ${0}, ${1}… sliced from ``original``."""
        segs = self.segments
        n = len(folded)
        first = segs[0]
        if len(segs) == 1:
            if n != first.length:
                return None  # no '*': the lengths must agree
            m = first.regex.fullmatch(folded)
            return None if m is None else (original, *_groups(m, original))
        m = first.regex.match(folded)
        if m is None:
            return None
        captures: list[str] = list(_groups(m, original))
        pos = m.end()
        last = segs[-1]
        last_start = n - last.length
        if last_start < pos:
            return None
        for seg in segs[1:-1]:
            # RFC 5229 §3.2: each '*' takes as little as possible (leftmost).
            m = _search(seg, folded, pos, last_start, charge)
            if m is None:
                return None
            captures.append(original[pos : m.start()])
            captures.extend(_groups(m, original))
            pos = m.end()
        m = last.regex.match(folded, last_start)
        if m is None:
            return None
        captures.append(original[pos:last_start])
        captures.extend(_groups(m, original))
        return (original, *captures)


def _search(
    seg: _Segment, text: str, pos: int, endpos: int, charge: Charge
) -> re.Match[str] | None:
    """The leftmost match of ``seg`` within ``text[pos:endpos]``, searched window by
    window so that one regex call costs at most about ``_WORK_PER_CALL`` comparisons."""
    length = max(seg.length, 1)
    span = max(1, _WORK_PER_CALL // length)  # start positions tried per call
    start = pos
    while start + seg.length <= endpos:
        stop = min(endpos, start + span - 1 + seg.length)
        charge(1 + (stop - start) * length // WORK_PER_STEP)
        m = seg.regex.search(text, start, stop)
        if m is not None:
            return m
        start += span
    return None


def _groups(m: re.Match[str], original: str) -> list[str]:
    return [original[m.start(i) : m.end(i)] for i in range(1, (m.re.groups or 0) + 1)]


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> Glob:
    """Compile a :matches key (RFC 5228 §2.7.1: ``*``, ``?``, ``\\`` escapes)."""
    segments: list[_Segment] = []
    parts: list[str] = []
    length = 0
    for m in _GLOB_TOKEN.finditer(pattern):
        escaped, star, question, literal = m.groups()
        if star is not None:
            segments.append(_Segment(re.compile("".join(parts), re.DOTALL), length))
            parts, length = [], 0
        elif question is not None:
            parts.append("(.)")
            length += 1
        else:
            text = literal if literal is not None else escaped
            if text is None:  # a lone trailing backslash stands for itself
                text = "\\"
            parts.append(re.escape(text))
            length += len(text)
    segments.append(_Segment(re.compile("".join(parts), re.DOTALL), length))
    return Glob(tuple(segments))


def _order(comparator: str, a: str, b: str) -> int:
    """Three-way comparison under ``comparator`` (RFC 4790 §9)."""
    if comparator == "i;ascii-numeric":
        x, y = numeric_value(a), numeric_value(b)
        if x == y:
            return 0
        if x is None:
            return 1
        if y is None:
            return -1
        return -1 if x < y else 1
    if comparator == "i;ascii-casemap":
        a, b = ascii_casemap(a), ascii_casemap(b)
    # i;octet: UTF-8 byte order equals code point order, so compare str directly.
    return (a > b) - (a < b)


_RELATION: dict[str, Callable[[int], bool]] = {
    "gt": lambda c: c > 0,
    "ge": lambda c: c >= 0,
    "lt": lambda c: c < 0,
    "le": lambda c: c <= 0,
    "eq": lambda c: c == 0,
    "ne": lambda c: c != 0,
}


@dataclass(frozen=True, slots=True)
class Matcher:
    """A comparator plus match type; ``relation`` is for :value/:count."""

    comparator: str = "i;ascii-casemap"
    match_type: str = "is"
    relation: str = "eq"

    def match(
        self, values: Iterable[str], keys: Sequence[str], charge: Charge = _free
    ) -> tuple[str, ...] | None:
        """True (a tuple) if any value matches any key; None if none does.

        For :matches the tuple holds the match variables ${0}, ${1}, …
        (RFC 5229 §3.2) of the first successful pair; otherwise it is empty.
        ``charge`` is told the work before it is done (see the module docstring).
        """
        mt = self.match_type
        if mt == "count":  # RFC 5231 §4.1: compare the number of values
            count = str(sum(1 for _ in values))
            rel = _RELATION[self.relation]
            ok = any(rel(_order(self.comparator, count, k)) for k in keys)
            return () if ok else None
        casemap = self.comparator == "i;ascii-casemap"
        key_chars = sum(len(k) for k in keys)
        if mt == "matches":
            globs = [compile_glob(ascii_casemap(k) if casemap else k) for k in keys]
            for value in values:
                charge((len(value) * (1 + len(globs)) + key_chars) // WORK_PER_STEP)
                folded = ascii_casemap(value) if casemap else value
                for glob in globs:
                    found = glob.match(folded, value, charge)
                    if found is not None:
                        return found
            return None
        if mt == "value":
            rel = _RELATION[self.relation]
            for value in values:
                charge((len(value) * len(keys) + key_chars) // WORK_PER_STEP)
                if any(rel(_order(self.comparator, value, k)) for k in keys):
                    return ()
            return None
        if self.comparator == "i;ascii-numeric":
            for value in values:
                charge(len(keys) * min(len(value), 4000) // WORK_PER_STEP)
                if any(_order("i;ascii-numeric", value, k) == 0 for k in keys):
                    return ()
            return None
        folded_keys = [ascii_casemap(k) for k in keys] if casemap else list(keys)
        for value in values:
            # str search is linear (two-way for long needles): value plus key per key
            charge((len(value) * (1 + len(keys)) + key_chars) // WORK_PER_STEP)
            folded = ascii_casemap(value) if casemap else value
            if mt == "contains":
                if any(k in folded for k in folded_keys):
                    return ()
            elif folded in folded_keys:
                return ()
        return None
