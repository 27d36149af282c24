"""SASLprep (RFC 4013), the stringprep profile SCRAM applies to passwords (RFC 5802 §2.2).

Built on the standard library's :mod:`stringprep` tables; the stored-string rules apply
(unassigned code points are refused), since the result feeds a stored verifier.
"""

from __future__ import annotations

import stringprep
import unicodedata

__all__ = ["SaslprepError", "saslprep"]


class SaslprepError(ValueError):
    """The string cannot be prepared (a prohibited character or a bidi violation)."""


_PROHIBITED = (
    stringprep.in_table_c12,  # RFC 4013 §2.3: non-ASCII space
    stringprep.in_table_c21_c22,  # control characters
    stringprep.in_table_c3,  # private use
    stringprep.in_table_c4,  # non-character code points
    stringprep.in_table_c5,  # surrogates
    stringprep.in_table_c6,  # inappropriate for plain text
    stringprep.in_table_c7,  # inappropriate for canonical representation
    stringprep.in_table_c8,  # change display properties / deprecated
    stringprep.in_table_c9,  # tagging characters
    stringprep.in_table_a1,  # RFC 4013 §2.5: unassigned, for stored strings
)


def saslprep(text: str) -> str:
    """``text`` mapped, NFKC-normalised and checked as RFC 4013 §2 says."""
    # §2.1: non-ASCII space to SPACE, "commonly mapped to nothing" removed
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    prepared = unicodedata.normalize("NFKC", mapped)  # §2.2
    for ch in prepared:
        if any(check(ch) for check in _PROHIBITED):
            raise SaslprepError(f"prohibited character U+{ord(ch):04X}")
    # §2.4 (RFC 3454 §6): bidirectional text
    if any(stringprep.in_table_d1(ch) for ch in prepared):
        if any(stringprep.in_table_d2(ch) for ch in prepared):
            raise SaslprepError("mixed right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise SaslprepError("right-to-left text must start and end right-to-left")
    return prepared
