"""Sans-I/O METADATA (RFC 5464) and LIST-METADATA (RFC 9590): grammar, names, responses."""

from __future__ import annotations

import pytest

from correo.imap.commands import List, parse_command
from correo.imap.errors import ParseError
from correo.imap.extended import parse_any
from correo.imap.metadata import (
    INFINITY,
    GetMetadata,
    SetMetadata,
    check_entry,
    metadata_response,
    within_depth,
)


def test_getmetadata_grammar() -> None:
    cmd = parse_any([b'a GETMETADATA (MAXSIZE 10 DEPTH infinity) "" (/Private/A /shared/b)'], [])
    assert cmd == GetMetadata("", ("/private/a", "/shared/b"), 10, INFINITY)
    assert parse_any([b"a GETMETADATA INBOX /private"], []) == GetMetadata("INBOX", ("/private",))
    for bad in (
        b"a GETMETADATA (DEPTH 2) INBOX /private/a",
        b"a GETMETADATA () INBOX /private/a",
        b"a GETMETADATA INBOX",
        b"a GETMETADATA INBOX /private/a extra",
        b"a GETMETADATA INBOX (/private/a",
    ):
        with pytest.raises(ParseError):
            parse_any([bad], [])


def test_setmetadata_grammar_with_literals() -> None:
    cmd = parse_any([b"a SETMETADATA box (/private/a NIL /shared/b {3}", b")"], [b"x\r\n"])
    assert cmd == SetMetadata("box", (("/private/a", None), ("/shared/b", b"x\r\n")))
    with pytest.raises(ParseError):
        parse_any([b'a SETMETADATA box (/private "x")'], [])  # a root is not an entry
    many = b" ".join(b'/private/e%d "v"' % i for i in range(101))
    with pytest.raises(ParseError):
        parse_any([b"a SETMETADATA box (" + many + b")"], [])


@pytest.mark.parametrize(
    "name",
    [b"/private/", b"/private//a", b"/private/a/", b"/other/a", b"/private/a*", b"/private/%",
     b"private/a", b"/private/\xc3\xa9", b"/private/a b", b"/private/" + b"a" * 1100],
)  # fmt: skip
def test_bad_entry_names(name: bytes) -> None:
    with pytest.raises(ParseError):
        check_entry(name)


def test_depth_and_response() -> None:
    assert within_depth("/private/a", "/private/a", 0)
    assert not within_depth("/private/a/b", "/private/a", 0)
    assert within_depth("/private/a/b", "/private/a", 1)
    assert not within_depth("/private/a/b/c", "/private/a", 1)
    assert within_depth("/private/a/b/c", "/private/a", INFINITY)
    assert not within_depth("/private/ab", "/private/a", INFINITY)
    line = metadata_response("", [("/private/a", b"v"), ("/shared/b", None)], False)
    assert line == b'* METADATA "" (/private/a "v" /shared/b NIL)\r\n'
    assert metadata_response("x", [("/private/a", b"\x00")], False).endswith(b"~{1}\r\n\x00)\r\n")


def test_list_return_metadata() -> None:
    cmd = parse_command([b'a LIST "" "*" RETURN (METADATA (/shared/Color /private/x))'], [])
    assert isinstance(cmd, List)
    assert cmd.metadata == ("/shared/color", "/private/x") and "METADATA" in cmd.return_options
    with pytest.raises(ParseError):
        parse_command([b'a LIST "" "*" RETURN (METADATA ())'], [])


def test_setmetadata_takes_literal8_values_only() -> None:
    """RFC 5464 §5: value = nstring / literal8; a literal8 may carry NUL."""
    cmd = parse_any(
        [b"a SETMETADATA box (/shared/b ~{3}", b" /shared/c {1}", b")"],
        [b"a\x00b", b"z"],
        binary=[True, False],
    )
    assert cmd == SetMetadata("box", (("/shared/b", b"a\x00b"), ("/shared/c", b"z")))
    with pytest.raises(ParseError):  # an entry name is no literal8
        parse_any([b"a SETMETADATA box (~{9}", b' "v")'], [b"/shared/b"], binary=[True])
    with pytest.raises(ParseError):  # NUL only in a literal8
        parse_any([b"a SETMETADATA box (/shared/b {3}", b")"], [b"a\x00b"], binary=[False])
