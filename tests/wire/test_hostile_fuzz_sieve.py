"""Sieve's encoded characters (RFC 5228 §2.4.2.4) under hostile scripts: the
``${unicode:…}`` pattern once nested one repetition in another ("(?:[0-9A-F]+[ ]*)+"),
so 26 hex digits without the closing brace backtracked for 25 s, with the GIL held:
one PUTSCRIPT (or JMAP SieveScript/set) of 40 bytes froze the whole server.  The
pattern now follows the grammar (hex runs split by blanks) and matches the same
strings."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.sieve import SieveError, check
from correo.sieve.parser import _ENCODED, decode_encoded_characters

# the former pattern: correct, but exponential on a digit run with no closing brace
_FORMER = re.compile(
    r"\$\{(?:(hex):([ \t\r\n]*(?:[0-9A-Fa-f]{2}[ \t\r\n]*)+)"
    r"|(unicode):([ \t\r\n]*(?:[0-9A-Fa-f]+[ \t\r\n]*)+))\}",
    re.IGNORECASE,
)


@pytest.mark.parametrize("digits", [40, 10_000, 60_000])
def test_an_unclosed_unicode_run_stays_literal_at_once(digits: int) -> None:
    """A run of hex digits that never meets its "}" is literal text (and, in a script,
    a valid string); with the former pattern 40 digits would have run for days."""
    text = "${unicode:" + "0" * digits + "x"
    assert decode_encoded_characters(text) == text
    script = 'require ["encoded-character", "variables"];\nset "v" "' + text + '";\n'
    assert check(script) == []


def test_the_forms_the_grammar_allows_still_decode() -> None:
    assert decode_encoded_characters("${unicode: 41 42 }") == "AB"
    assert decode_encoded_characters("${unicode:\t0041\r\n 1F600 }") == "A\U0001f600"
    assert decode_encoded_characters("${UNICODE:4142}") == "\u4142"
    assert decode_encoded_characters("${hex:41 42}x${hex: 4 }") == "ABx${hex: 4 }"
    assert decode_encoded_characters("${unicode:}") == "${unicode:}"
    with pytest.raises(SieveError):
        decode_encoded_characters("${unicode:D800}")  # RFC 5228 §2.4.2.4: a surrogate


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(alphabet="${}unicodehx:0123456789abcdefABCDEF \t\r\nz", max_size=14))
def test_the_new_pattern_matches_what_the_former_matched(text: str) -> None:
    """On strings short enough for the former pattern, both find the same matches."""
    former = [(m.span(), m.groups()) for m in _FORMER.finditer(text)]
    now = [(m.span(), m.groups()) for m in _ENCODED.finditer(text)]
    assert now == former
