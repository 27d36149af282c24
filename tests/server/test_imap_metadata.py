"""METADATA and METADATA-SERVER (RFC 5464) and LIST-METADATA (RFC 9590) over real sockets:
server and mailbox entries, DEPTH and MAXSIZE, limits, users kept apart, hostile input."""

from __future__ import annotations

import re

from tests.conftest import Server
from tests.server.imap_helpers import RawImap, unique

ALICE = "alice@example.test"
BOB = "bob@example.test"


def _session(server: Server, user: str = ALICE) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    raw.login(user)
    return raw


def test_capabilities(server: Server) -> None:
    raw = _session(server)
    caps = raw.cmd("c", "CAPABILITY")[0].split()
    for cap in (b"METADATA", b"METADATA-SERVER", b"LIST-METADATA"):
        assert cap in caps
    raw.close()


def test_server_and_mailbox_entries(server: Server) -> None:
    raw = _session(server)
    box = unique("meta")
    raw.cmd("c", f"CREATE {box}")
    out = raw.cmd("s1", 'SETMETADATA "" (/private/comment "my server note")')
    assert out == [b"s1 OK SETMETADATA completed"], out
    out = raw.cmd("s2", f'SETMETADATA {box} (/shared/Comment "shared" /private/x/y "1" '
                        '/private/x/y/z {3+}\r\nabc /private/x/w "2")')  # fmt: skip
    assert out[-1] == b"s2 OK SETMETADATA completed", out
    out = raw.cmd("g1", 'GETMETADATA "" /private/comment')
    assert out[0] == b'* METADATA "" (/private/comment "my server note")', out
    out = raw.cmd("g2", f"GETMETADATA {box} (/shared/comment /private/nothing)")
    assert out[0] == b'* METADATA %s (/shared/comment "shared" /private/nothing NIL)' % (
        b'"' + box.encode() + b'"'
    ), out
    out = raw.cmd("g3", f"GETMETADATA (DEPTH 1) {box} /private/x")
    assert re.search(rb'/private/x/w "2" /private/x/y "1"\)', out[0]), out
    assert b"/private/x/y/z" not in out[0]
    out = raw.cmd("g4", f"GETMETADATA (DEPTH infinity) {box} /private")
    assert b'/private/x/y/z "abc"' in out[0], out
    out = raw.cmd("g5", f"GETMETADATA (MAXSIZE 1 DEPTH infinity) {box} /private")
    assert out[-1] == b"g5 OK [METADATA LONGENTRIES 3] GETMETADATA completed", out
    assert b"/private/x/y/z" not in out[0]
    # removal; a RENAME carries the entries along
    assert raw.cmd("d", f"SETMETADATA {box} (/private/x/w NIL)")[-1].startswith(b"d OK")
    renamed = unique("meta")
    raw.cmd("r", f"RENAME {box} {renamed}")
    out = raw.cmd("g6", f"GETMETADATA (DEPTH infinity) {renamed} /private/x")
    assert b"/private/x/w" not in out[0] and b'/private/x/y "1"' in out[0], out
    # LIST RETURN (METADATA ...) (RFC 9590)
    out = raw.cmd("l", f'LIST "" {renamed} RETURN (METADATA (/shared/comment /private/none))')
    assert out[0].startswith(b"* LIST ") and renamed.encode() in out[0], out
    assert out[1] == b'* METADATA "%s" (/shared/comment "shared" /private/none NIL)' % (
        renamed.encode()
    ), out
    assert out[-1].startswith(b"l OK")
    out = raw.cmd("l2", f'LIST "" {renamed} RETURN (STATUS (MESSAGES) METADATA (/shared/comment))')
    assert [x[:8] for x in out[:3]] == [b"* LIST (", b"* STATUS", b"* METADA"], out
    # Bob sees none of it
    bob = _session(server, BOB)
    out = bob.cmd("b1", 'GETMETADATA "" /private/comment')
    assert out == [b'* METADATA "" (/private/comment NIL)', b"b1 OK GETMETADATA completed"]
    assert bob.cmd("b2", f"GETMETADATA {renamed} /shared/comment")[-1].startswith(b"b2 NO")
    bob.close()
    raw.close()


def test_limits_and_hostile_input(start_server: object) -> None:
    server: Server = start_server({"metadata_size": "8", "metadata_entries": "3"})  # type: ignore[operator]
    raw = _session(server)
    out = raw.cmd("a", 'SETMETADATA "" (/private/a "123456789")')
    assert out == [b"a NO [METADATA MAXSIZE 8] Value too large"], out
    assert raw.cmd("b", 'SETMETADATA "" (/private/a "1" /private/b "2")')[-1].startswith(b"b OK")
    out = raw.cmd("c", 'SETMETADATA INBOX (/private/c "3" /private/d "4")')
    assert out[-1].startswith(b"c NO [METADATA TOOMANY]"), out
    assert (
        raw.cmd("c2", "GETMETADATA INBOX /private/c")[0] == b'* METADATA "INBOX" (/private/c NIL)'
    )
    assert raw.cmd("c3", 'SETMETADATA INBOX (/private/c "3")')[-1].startswith(b"c3 OK")
    for tag, bad in (
        ("h1", 'SETMETADATA "" (/other/x "1")'),
        ("h2", 'SETMETADATA "" (/private/ "1")'),
        ("h3", 'SETMETADATA "" (/private//x "1")'),
        ("h4", 'SETMETADATA "" (/private/x* "1")'),
        ("h5", 'SETMETADATA "" (/private/x%y "1")'),
        ("h6", 'SETMETADATA "" (/private "1")'),
        ("h7", 'GETMETADATA (DEPTH 2) "" /private'),
        ("h8", 'GETMETADATA (MAXSIZE 1 MAXSIZE 2) "" /private'),
        ("h9", 'GETMETADATA (FOO 1) "" /private'),
        ("h10", 'GETMETADATA "" ()'),
        ("h11", 'SETMETADATA "" ()'),
        ("h12", 'GETMETADATA "" (' + " ".join(f"/private/e{i}" for i in range(101)) + ")"),
        ("h13", 'SETMETADATA "" (/private/' + "x" * 1100 + ' "1")'),
        ("h14", 'LIST "" "*" RETURN (METADATA ())'),
        ("h15", 'LIST "" "*" RETURN (METADATA (/nope))'),
    ):
        out = raw.cmd(tag, bad)
        assert out[-1].startswith(tag.encode() + b" BAD"), (bad, out)
    assert raw.cmd("n1", "GETMETADATA Nope /private/x")[-1].startswith(b"n1 NO [NONEXISTENT]")
    assert raw.cmd("n2", 'SETMETADATA Nope (/private/x "1")')[-1].startswith(b"n2 NO")
    assert raw.cmd("z", "NOOP")[-1].startswith(b"z OK")
    raw.close()
    unauth = RawImap(server.ports["imaps"])
    assert unauth.cmd("u", 'GETMETADATA "" /private/a')[-1].startswith(b"u BAD")
    unauth.close()
