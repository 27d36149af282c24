"""LIST/LSUB wildcard matching: the same answers as a regular expression, in linear work."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.imap.wildcard import MAX_PATTERN, MAX_PATTERNS, PatternError, Wildcard

_ALPHABET = "ab/*%"
_NAMES = st.text(alphabet="ab/", max_size=12)
_PATTERNS = st.text(alphabet=_ALPHABET, max_size=10)


def reference(pattern: str, name: str) -> bool:
    """The obvious translation (backtracking, fine on short inputs)."""
    regex = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


@settings(max_examples=2000, deadline=None)
@given(_PATTERNS, _NAMES)
def test_one_pattern_agrees_with_the_regex(pattern: str, name: str) -> None:
    assert Wildcard([pattern]).match(name) == reference(pattern, name)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_PATTERNS, max_size=4), _NAMES)
def test_several_patterns_match_if_any_does(patterns: list[str], name: str) -> None:
    assert Wildcard(patterns).match(name) == any(reference(p, name) for p in patterns)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_PATTERNS, min_size=1, max_size=3), _NAMES)
def test_levels_answer_for_every_superior_name(patterns: list[str], name: str) -> None:
    levels = name.split("/")
    expected = [
        any(reference(p, "/".join(levels[: i + 1])) for p in patterns) for i in range(len(levels))
    ]
    assert Wildcard(patterns).match_levels(name) == expected


def test_non_ascii_and_regex_metacharacters_are_literal() -> None:
    w = Wildcard(["Été/[a-z].*+?(x)|%"])
    assert w.match("Été/[a-z].*+?(x)|anything")
    assert not w.match("Été/b.*+?(x)|anything")
    assert not w.match("Été/[a-z].*+?(x)|a/b")


def test_percent_stops_at_the_delimiter_star_does_not() -> None:
    assert Wildcard(["a/%"]).match("a/b") and not Wildcard(["a/%"]).match("a/b/c")
    assert Wildcard(["a/*"]).match("a/b/c")
    assert Wildcard(["%/%/c"]).match("a/b/c") and not Wildcard(["%/c"]).match("a/b/c")
    assert Wildcard(["*%"]).match("x/y") and Wildcard(["%*"]).match("x/y")


def test_adversarial_pattern_costs_one_step_per_character() -> None:
    """The pattern that took seconds as a regex: the work is one pass over the name."""
    pattern = "*a" * 400 + "*b"  # 801 octets, under the limit
    name = "a" * 500
    w = Wildcard([pattern])
    assert not w.match(name)
    assert w.steps <= len(name)
    # several adversarial patterns at once still cost one pass per name
    w = Wildcard([pattern, "%a" * 400 + "%b", "*a*a*a*a*a*a*a*a*a*b"])
    for n in range(100, 120):
        assert not w.match("a" * n)
    assert w.steps <= sum(range(100, 120))
    levels = w.match_levels("a/" * 200 + "b")
    assert len(levels) == 201 and w.steps <= sum(range(100, 120)) + 401


def test_length_limits() -> None:
    Wildcard(["x" * MAX_PATTERN])
    with pytest.raises(PatternError):
        Wildcard(["x" * (MAX_PATTERN + 1)])
    with pytest.raises(PatternError):
        Wildcard(["é" * (MAX_PATTERN // 2 + 1)])  # octets, not characters
    with pytest.raises(PatternError):
        Wildcard(["x" * (MAX_PATTERNS // 4)] * 5)
