"""RETURN options of SEARCH and SORT (RFC 4731 ESEARCH, RFC 5267 ESORT and CONTEXT).

``RETURN (MIN MAX ALL COUNT SAVE CONTEXT UPDATE PARTIAL n:m)``: the result items an
ESEARCH response carries, whether the search becomes an updating context, and which
window of the results PARTIAL asks for.  RFC 5465 §7 lets UPDATE carry fetch
attributes, sent for the messages an ADDTO adds; the caller passes their parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from correo.imap.errors import ParseError
from correo.imap.reader import MAX_NUMBER, Reader

if TYPE_CHECKING:
    from correo.imap.commands import FetchAtt

__all__ = ["Returns", "format_ordered", "parse_returns"]

_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "PARTIAL"})
# RFC 5267 §5: partial-range = nz-number ":" nz-number (either order)
_RANGE = re.compile(rb"([1-9][0-9]{0,9}):([1-9][0-9]{0,9})")


@dataclass(frozen=True, slots=True)
class Returns:
    """``options`` upper-cased, in order, without duplicates; ``partial`` (low, high)."""

    options: tuple[str, ...]
    partial: tuple[int, int] | None = None
    update_fetch: tuple[FetchAtt, ...] = ()


def parse_returns(
    r: Reader, fetch_atts: Callable[[Reader], tuple[FetchAtt, ...]] | None = None
) -> Returns:
    """``SP "(" [opt *(SP opt)] ")"`` after RETURN; BAD on anything RFC 5267 §5 rejects."""
    r.sp()
    r.open_paren()
    options: list[str] = []
    partial: tuple[int, int] | None = None
    update_fetch: tuple[FetchAtt, ...] = ()
    while r.peek() != 0x29:
        if options:
            r.sp()
        opt = r.keyword()
        if opt not in _OPTIONS:
            raise ParseError(f"unknown RETURN option {opt}")
        if opt in options and opt in ("UPDATE", "PARTIAL"):
            raise ParseError(f"{opt} given twice")  # RFC 5267 §4.3, §4.4
        if opt == "PARTIAL":
            r.sp()
            m = _RANGE.fullmatch(r.atom())
            if m is None:
                raise ParseError("PARTIAL needs a range n:m")  # no "*", no single number
            low, high = sorted((int(m.group(1)), int(m.group(2))))
            if high > MAX_NUMBER:
                raise ParseError("PARTIAL range out of range")
            partial = (low, high)
        elif opt == "UPDATE" and fetch_atts is not None and r.peek_is(b" ("):
            r.sp()  # RFC 5465 §7: UPDATE (fetch-att ...)
            update_fetch = fetch_atts(r)
        if opt not in options:
            options.append(opt)
    r.close_paren()
    if partial is not None and "ALL" in options:
        raise ParseError("PARTIAL conflicts with ALL")  # RFC 5267 §4.4
    return Returns(tuple(options), partial, update_fetch)


def format_ordered(values: list[int]) -> str:
    """A sequence-set keeping ``values``' order (RFC 5267 §3.2): only ascending runs
    become ranges, so ``5,3,4,2`` is ``5,3:4,2``; "" when empty."""
    out: list[str] = []
    i, n = 0, len(values)
    while i < n:
        j = i
        while j + 1 < n and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}:{values[j]}")
        i = j + 1
    return ",".join(out)
