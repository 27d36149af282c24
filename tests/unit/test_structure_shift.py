"""The stored part tree moved in place equals the tree rebuilt and moved."""

from __future__ import annotations

import json

import pytest

from correo.delivery.facts import facts_from_bytes, load_tree, shift_facts, shift_part
from correo.message.structure import shift_tree

_NESTED = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: nested\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--XX\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: c@example.org\r\nSubject: inner\r\n"
    b"Content-Type: multipart/alternative; boundary=YY\r\n\r\n"
    b"--YY\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
    b"--YY\r\nContent-Type: text/html\r\n\r\n<p>inner</p>\r\n--YY--\r\n"
    b"--XX--\r\n"
)
_PLAIN = b"From: a@example.org\r\nSubject: plain\r\n\r\nbody\r\n"


@pytest.mark.parametrize("message", [_NESTED, _PLAIN])
@pytest.mark.parametrize(("at", "delta"), [(0, 17), (20, 40), (len(_PLAIN), 5)])
def test_shift_tree_equals_shift_part(message: bytes, at: int, delta: int) -> None:
    facts = facts_from_bytes(message)
    moved = shift_tree(json.loads(facts.tree), at, delta)
    assert moved == shift_part(load_tree(facts), at, delta).to_json()
    # the bytes stored are the same as the old path's
    assert json.dumps(moved, separators=(",", ":")).encode() == shift_facts(facts, at, delta).tree
    assert moved != json.loads(facts.tree)
