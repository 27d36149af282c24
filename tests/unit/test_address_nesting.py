"""Address readers on hostile nesting: no RecursionError, whatever the depth."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.mailauth.inbound import from_domain_of
from correo.message.headers import addresses_in

DEEP = [
    ("(" * 5000 + ")" * 5000 + " <a@b.test>", ["a@b.test"]),
    ("a@b.test " + "(" * 5000, ["a@b.test"]),  # an unclosed comment runs to the end
    ("x <a@b.test> (" + "(\\)" * 5000 + ")" * 5001, ["a@b.test"]),
    ("(" * 100_000 + "c)" + ")" * 99_999 + " a@b.test", ["a@b.test"]),
]


@pytest.mark.parametrize(("value", "expected"), DEEP)
def test_deep_nesting_is_read(value: str, expected: list[str]) -> None:
    assert addresses_in(value) == expected


def test_many_group_openers_are_read_without_recursion() -> None:
    """The stdlib recursed per ":" too; groups do not nest, so this is junk, read flat."""
    assert isinstance(addresses_in("g:" * 5000 + " a@b.test;"), list)


def test_from_domain_of_a_deeply_commented_from() -> None:
    header = b"From: " + b"(" * 5000 + b")" * 5000 + b" <a@b.test>\r\n\r\n"
    assert from_domain_of(header) == ("b.test", "")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='()<>,:;"\\@[]. ab', max_size=300))
def test_any_value_gives_a_list(value: str) -> None:
    """Invariant: any field value yields a list of strings, never an exception."""
    found = addresses_in(value)
    assert isinstance(found, list) and all(isinstance(a, str) for a in found)
