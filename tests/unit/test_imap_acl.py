"""Sans-I/O ACL (RFC 4314): command grammar, rights arithmetic and responses."""

from __future__ import annotations

import pytest

from correo.imap.acl import (
    DeleteAcl,
    GetAcl,
    ListRights,
    MyRights,
    SetAcl,
    acl_response,
    apply_rights,
    listrights_response,
    myrights_response,
    parse_rights,
)
from correo.imap.errors import ParseError
from correo.imap.extended import parse_any
from correo.imap.states import LEGAL


def test_grammar() -> None:
    assert parse_any([b'a SETACL Team "bob@x.test" +rl'], []) == SetAcl(
        "Team", "bob@x.test", "+", "lr"
    )
    assert parse_any([b"a SETACL Team anyone lrswipkxtea"], []) == SetAcl(
        "Team", "anyone", "", "lrswipkxtea"
    )
    assert parse_any([b'a SETACL INBOX bob ""'], []) == SetAcl("INBOX", "bob", "", "")
    assert parse_any([b"a DELETEACL Team bob"], []) == DeleteAcl("Team", "bob")
    assert parse_any([b"a GETACL {4+}", b""], [b"Team"]) == GetAcl("Team")
    assert parse_any([b"a LISTRIGHTS Team bob"], []) == ListRights("Team", "bob")
    assert parse_any([b'a MYRIGHTS "Other Users/bob/x"'], []) == MyRights("Other Users/bob/x")
    for bad in (
        b"a SETACL Team bob lrz",  # an unknown right: BAD, nothing changes (§3.1)
        b"a SETACL Team bob",
        b"a SETACL Team bob l extra",
        b'a SETACL Team "" l',
        b"a DELETEACL Team",
        b"a GETACL",
        b"a GETACL Team extra",
        b"a MYRIGHTS",
        b"a LISTRIGHTS Team",
    ):
        with pytest.raises(ParseError):
            parse_any([bad], [])
    with pytest.raises(ParseError):
        parse_any([b"a SETACL Team " + b"x" * 300 + b" l"], [])
    for name in ("SETACL", "DELETEACL", "GETACL", "LISTRIGHTS", "MYRIGHTS"):
        assert name in LEGAL


def test_rights() -> None:
    assert parse_rights("rl") == ("", "lr")
    assert parse_rights("-w") == ("-", "w")
    assert parse_rights("+cd") == ("+", "kte")  # RFC 2086 rights: c is k, d is t and e
    with pytest.raises(ParseError):
        parse_rights("l+r")
    assert apply_rights("lrs", "+", "wl") == "lrsw"
    assert apply_rights("lrsw", "-", "sx") == "lrw"
    assert apply_rights("lrsw", "", "i") == "i"


def test_responses() -> None:
    assert acl_response("Team", [("alice", "lrswipkxtea"), ("anyone", "lr")], True) == (
        b'* ACL "Team" "alice" "lrswipkxtea" "anyone" "lr"\r\n'
    )
    assert listrights_response("Team", "bob", "", True) == (
        b'* LISTRIGHTS "Team" "bob" "" l r s w i p k x t e a\r\n'
    )
    assert listrights_response("Team", "me", "lrswipkxtea", True) == (
        b'* LISTRIGHTS "Team" "me" "lrswipkxtea"\r\n'
    )
    assert myrights_response("Team", "lr", True) == b'* MYRIGHTS "Team" "lr"\r\n'
