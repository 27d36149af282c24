"""ACL (RFC 4314) over real sockets: SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS on
the owner's mailboxes, and what another account learns of them (nothing unshared)."""

from __future__ import annotations

from tests.conftest import Server
from tests.server.imap_helpers import RawImap, unique

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"


def _session(server: Server, user: str = ALICE) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    raw.login(user)
    return raw


def test_capabilities(server: Server) -> None:
    raw = _session(server)
    caps = raw.cmd("c", "CAPABILITY")[0].split()
    assert b"ACL" in caps and b"RIGHTS=texk" in caps
    raw.close()


def test_owner_sets_reads_and_removes_entries(server: Server) -> None:
    alice = _session(server)
    box = unique("acl")
    alice.cmd("c", f"CREATE {box}")
    assert alice.cmd("m", f"MYRIGHTS {box}") == [
        f'* MYRIGHTS "{box}" "lrswipkxtea"'.encode(),
        b"m OK MYRIGHTS completed",
    ]
    assert alice.cmd("g0", f"GETACL {box}")[0] == (
        f'* ACL "{box}" "{ALICE}" "lrswipkxtea"'.encode()
    )
    assert alice.cmd("s1", f'SETACL {box} "{BOB}" lr') == [b"s1 OK SETACL completed"]
    assert alice.cmd("s2", f'SETACL {box} "{BOB}" +sw')[-1] == b"s2 OK SETACL completed"
    assert alice.cmd("s3", f"SETACL {box} anyone l")[-1] == b"s3 OK SETACL completed"
    assert alice.cmd("s4", f'SETACL {box} "{BOB}" -w')[-1] == b"s4 OK SETACL completed"
    out = alice.cmd("g1", f"GETACL {box}")
    assert out == [
        f'* ACL "{box}" "{ALICE}" "lrswipkxtea" "anyone" "l" "{BOB}" "lrs"'.encode(),
        b"g1 OK GETACL completed",
    ], out
    out = alice.cmd("l1", f'LISTRIGHTS {box} "{BOB}"')
    assert out[0] == f'* LISTRIGHTS "{box}" "{BOB}" "" l r s w i p k x t e a'.encode(), out
    out = alice.cmd("l2", f'LISTRIGHTS {box} "{ALICE}"')
    assert out[0] == f'* LISTRIGHTS "{box}" "{ALICE}" "lrswipkxtea"'.encode(), out
    # the owner's own rights, unknown users, negative rights, missing mailboxes: refused
    assert alice.cmd("n1", f'SETACL {box} "{ALICE}" l')[-1].startswith(b"n1 NO [CANNOT]")
    assert alice.cmd("n2", f"SETACL {box} nobody@example.test l")[-1].startswith(b"n2 NO [CANNOT]")
    assert alice.cmd("n3", f'SETACL {box} "-{BOB}" l')[-1].startswith(b"n3 NO [CANNOT]")
    assert alice.cmd("n4", f'SETACL Nope-{box} "{BOB}" l')[-1].startswith(b"n4 NO [NONEXISTENT]")
    assert alice.cmd("n5", f'SETACL {box} "{BOB}" lz')[-1].startswith(b"n5 BAD")
    assert alice.cmd("d1", f'DELETEACL {box} "{BOB}"') == [b"d1 OK DELETEACL completed"]
    out = alice.cmd("g2", f"GETACL {box}")
    assert out[0] == f'* ACL "{box}" "{ALICE}" "lrswipkxtea" "anyone" "l"'.encode(), out
    alice.close()


def test_other_users_see_only_what_is_shared(server: Server) -> None:
    alice = _session(server)
    box = unique("acl")
    secret = unique("acl")
    alice.cmd("c1", f"CREATE {box}")
    alice.cmd("c2", f"CREATE {secret}")
    alice.cmd("s", f'SETACL {box} "{BOB}" lr')
    bob = _session(server, BOB)
    shared = f"Other Users/{ALICE}/{box}"
    out = bob.cmd("m1", f'MYRIGHTS "{shared}"')
    assert out == [f'* MYRIGHTS "{shared}" "lr"'.encode(), b"m1 OK MYRIGHTS completed"], out
    # without "a" the entries stay hidden, and nothing is changed
    assert bob.cmd("g", f'GETACL "{shared}"')[-1].startswith(b"g NO [NOPERM]")
    assert bob.cmd("s", f'SETACL "{shared}" "{BOB}" lrswipkxtea')[-1].startswith(b"s NO [NOPERM]")
    assert bob.cmd("l", f'LISTRIGHTS "{shared}" "{BOB}"')[-1].startswith(b"l NO [NOPERM]")
    # an unshared mailbox answers exactly as a missing one
    for tag, name in (("u1", secret), ("u2", f"Nope-{secret}"), ("u3", "INBOX")):
        out = bob.cmd(tag, f'MYRIGHTS "Other Users/{ALICE}/{name}"')
        assert out == [f"{tag} NO [NONEXISTENT] No such mailbox".encode()], out
        out = bob.cmd(tag, f'GETACL "Other Users/{ALICE}/{name}"')
        assert out == [f"{tag} NO [NONEXISTENT] No such mailbox".encode()], out
    # an admin right lets another account manage the entries, never the owner's
    alice.cmd("s2", f'SETACL {box} "{BOB}" lra')
    assert bob.cmd("s2", f'SETACL "{shared}" "{CAROL}" l')[-1] == b"s2 OK SETACL completed"
    assert bob.cmd("s3", f'SETACL "{shared}" "{ALICE}" l')[-1].startswith(b"s3 NO [CANNOT]")
    out = alice.cmd("g", f"GETACL {box}")
    assert f'"{CAROL}" "l"'.encode() in out[0], out
    carol = _session(server, CAROL)
    assert carol.cmd("m", f'MYRIGHTS "{shared}"')[0].endswith(b'"l"')
    # rights removed: the mailbox is gone for that account at once
    alice.cmd("d", f'DELETEACL {box} "{CAROL}"')
    assert carol.cmd("m2", f'MYRIGHTS "{shared}"')[-1].startswith(b"m2 NO [NONEXISTENT]")
    for raw in (alice, bob, carol):
        raw.close()


def _append(raw: RawImap, box: str, subject: str) -> None:
    msg = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
    out = raw.cmd("a", f"APPEND {box} {{{len(msg)}+}}\r\n{msg}")
    assert out[-1].startswith(b"a OK"), out


def test_shared_mailbox_read_only_in_every_read_path(server: Server) -> None:
    alice = _session(server)
    box = unique("acl")
    alice.cmd("c", f"CREATE {box}")
    _append(alice, box, "alice-one")
    alice.cmd("s", f'SETACL {box} "{BOB}" lr')
    bob = _session(server, BOB)
    bob.cmd("c", f"CREATE {box}")  # a mailbox of bob's own under the same name
    _append(bob, box, "bob-own")
    shared = f"Other Users/{ALICE}/{box}"
    ns = bob.cmd("n", "NAMESPACE")
    assert ns[0] == b'* NAMESPACE (("" "/")) (("Other Users/" "/")) NIL', ns
    out = bob.cmd("l", 'LIST "" "*"')
    assert any(line.endswith(f'"{shared}"'.encode()) for line in out), out
    out = bob.cmd("x", f'SELECT "{shared}"')
    assert out[-1].startswith(b"x OK [READ-ONLY]"), out
    assert b"* 1 EXISTS" in out, out
    out = bob.cmd("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"alice-one" in b"".join(out) and b"bob-own" not in b"".join(out), out
    assert bob.cmd("st", "STORE 1 +FLAGS (\\Deleted)")[-1].startswith(b"st NO [READ-ONLY]")
    assert bob.cmd("e", "EXPUNGE")[-1].startswith(b"e NO [READ-ONLY]")
    assert bob.cmd("mv", f"MOVE 1 {box}")[-1].startswith(b"mv NO")  # neither "t" nor "e"
    out = bob.cmd("t", f'STATUS "{shared}" (MESSAGES UIDNEXT)')
    assert out[0] == f'* STATUS "{shared}" (MESSAGES 1 UIDNEXT 2)'.encode(), out
    out = bob.cmd("lr", f'LIST "" "{shared}" RETURN (STATUS (MESSAGES))')
    assert f'* STATUS "{shared}" (MESSAGES 1)'.encode() in out, out
    out = bob.cmd("se", "SEARCH SUBJECT alice-one")
    assert out[0] == b"* SEARCH 1", out
    out = bob.cmd("es", "ESEARCH IN (SELECTED) SUBJECT bob-own")  # not bob's own of the name
    assert out == [b"es OK ESEARCH completed"], out
    # IDLE sees the owner's delivery into the shared mailbox
    bob.send(b"i IDLE\r\n")
    assert bob.line().startswith(b"+")
    _append(alice, box, "alice-two")
    assert bob.line() == b"* 2 EXISTS"
    bob.send(b"DONE\r\n")
    assert bob.until(b"i")[-1].startswith(b"i OK")
    # rights taken away mid-session: the next command finds no mailbox, and it is closed
    alice.cmd("d", f'DELETEACL {box} "{BOB}"')
    out = bob.cmd("f2", "FETCH 1:* (FLAGS)")
    assert out == [b"f2 NO [NONEXISTENT] No such mailbox"], out
    assert bob.cmd("f3", "FETCH 1 (FLAGS)")[-1].startswith(b"f3 BAD")
    out = bob.cmd("x2", f'SELECT "{shared}"')
    assert out == [b"x2 NO [NONEXISTENT] No such mailbox"], out
    # bob's own mailbox of the name is untouched and still his
    out = bob.cmd("x3", f"SELECT {box}")
    assert out[-1].startswith(b"x3 OK [READ-WRITE]") and b"* 1 EXISTS" in out, out
    for raw in (alice, bob):
        raw.close()


def test_rights_short_of_read_and_no_rights(server: Server) -> None:
    alice = _session(server)
    box = unique("acl")
    secret = unique("acl")
    for name in (box, secret):
        alice.cmd("c", f"CREATE {name}")
        _append(alice, name, "private-words")
    alice.cmd("s", f'SETACL {box} "{BOB}" l')
    bob = _session(server, BOB)
    carol = _session(server, CAROL)
    out = bob.cmd("l", 'LIST "" "*"')
    text = b"\n".join(out)
    assert f"Other Users/{ALICE}/{box}".encode() in text, out
    assert secret.encode() not in text, out
    out = bob.cmd("x", f'SELECT "Other Users/{ALICE}/{box}"')
    assert out == [b"x NO [NOPERM] No such mailbox"], out
    # nothing shared: every path answers as for a mailbox that does not exist
    for raw in (bob, carol):
        for name in (secret, "INBOX", f"Nope-{secret}"):
            for verb in ("SELECT", "EXAMINE"):
                out = raw.cmd("y", f'{verb} "Other Users/{ALICE}/{name}"')
                assert out == [b"y NO [NONEXISTENT] No such mailbox"], (verb, name, out)
            out = raw.cmd("t", f'STATUS "Other Users/{ALICE}/{name}" (MESSAGES)')
            assert out[-1].startswith(b"t NO"), out
        assert secret.encode() not in b"".join(raw.cmd("l", 'LIST "" "*"'))
        assert box.encode() not in b"".join(carol.cmd("l", 'LIST "" "*"'))
        out = raw.cmd("z", 'SEARCH TEXT "private-words"')
        assert out[-1].startswith(b"z BAD"), out  # nothing selected
    for raw in (alice, bob, carol):
        raw.close()


def _flags(raw: RawImap, box: str) -> list[bytes]:
    raw.cmd("ex", f"EXAMINE {box}")
    out = raw.cmd("ff", "FETCH 1:* (FLAGS)")
    raw.cmd("un", "UNSELECT")
    return [line for line in out if line.startswith(b"* ")]


def test_write_rights_checked_on_each_command(server: Server) -> None:
    alice = _session(server)
    box = unique("acl")
    alice.cmd("c", f"CREATE {box}")
    for subject in ("one", "two", "three"):
        _append(alice, box, subject)
    alice.cmd("s", f'SETACL {box} "{CAROL}" lrs')
    carol = _session(server, CAROL)
    shared = f"Other Users/{ALICE}/{box}"
    out = carol.cmd("x", f'SELECT "{shared}"')
    assert out[-1].startswith(b"x OK [READ-WRITE]"), out
    carol.cmd("f", "FETCH 1 (BODY[TEXT])")  # "s": the read marks it \Seen, for the owner too
    assert b"\\Seen" in _flags(alice, box)[0]
    assert carol.cmd("d", "STORE 2 +FLAGS (\\Deleted)")[-1].startswith(b"d NO [NOPERM]")
    assert carol.cmd("k", "STORE 2 +FLAGS ($Work)")[-1].startswith(b"k NO [NOPERM]")
    assert carol.cmd("r", "STORE 2 FLAGS (\\Seen)")[-1].startswith(b"r NO [NOPERM]")
    assert carol.cmd("s2", "STORE 2 +FLAGS (\\Seen)")[-1].startswith(b"s2 OK")
    assert carol.cmd("e", "EXPUNGE")[-1].startswith(b"e NO [NOPERM]")
    carol.cmd("cc", f"CREATE {box}")  # carol's own mailbox of the name is never touched
    _append(carol, box, "carol-own")
    msg = "Subject: new\r\n\r\nx\r\n"
    out = carol.cmd("rp", f"REPLACE 1 {box} {{{len(msg)}+}}\r\n{msg}")
    assert out[-1].startswith(b"rp NO [CANNOT]"), out
    alice.cmd("g", f'SETACL {box} "{CAROL}" +te')
    assert carol.cmd("d2", "STORE 3 +FLAGS (\\Deleted)")[-1].startswith(b"d2 OK")
    out = carol.cmd("e2", "EXPUNGE")
    assert out[-1].startswith(b"e2 OK") and b"* 3 EXPUNGE" in out, out
    assert len(_flags(alice, box)) == 2  # gone from the owner's mailbox
    # without "e", CLOSE closes and expunges nothing
    assert carol.cmd("d3", "STORE 2 +FLAGS (\\Deleted)")[-1].startswith(b"d3 OK")
    alice.cmd("g2", f'SETACL {box} "{CAROL}" -e')
    assert carol.cmd("cl", "CLOSE") == [b"cl OK CLOSE completed"]
    assert len(_flags(alice, box)) == 2
    # "w" without "s": reading does not set \Seen
    alice.cmd("g3", f'SETACL {box} "{CAROL}" lrw')
    alice.cmd("x", f"SELECT {box}")
    alice.cmd("u", "STORE 1:* -FLAGS (\\Seen \\Deleted)")
    alice.cmd("un", "UNSELECT")
    out = carol.cmd("x2", f'SELECT "{shared}"')
    assert out[-1].startswith(b"x2 OK [READ-WRITE]"), out
    carol.cmd("f2", "FETCH 1 (BODY[TEXT])")
    assert carol.cmd("k2", "STORE 1 +FLAGS ($Work)")[-1].startswith(b"k2 OK")
    flags = _flags(alice, box)
    assert b"\\Seen" not in flags[0] and b"$Work" in flags[0], flags
    assert len(_flags(carol, box)) == 1  # carol's own: only her message, untouched
    for raw in (alice, carol):
        raw.close()


def test_append_into_shared_needs_insert(server: Server) -> None:
    alice = _session(server)
    box = unique("acl")
    alice.cmd("c", f"CREATE {box}")
    alice.cmd("s", f'SETACL {box} "{BOB}" lr')
    bob = _session(server, BOB)
    carol = _session(server, CAROL)
    shared = f"Other Users/{ALICE}/{box}"
    msg = "Subject: from bob\r\n\r\nhello\r\n"
    append = f'APPEND "{shared}" (\\Seen $Bob) {{{len(msg)}+}}\r\n{msg}'
    out = bob.cmd("a1", append)
    assert out[-1].startswith(b"a1 NO [NOPERM]"), out
    missing = carol.cmd("a2", append)  # no rights: exactly as a missing mailbox
    assert missing[-1].startswith(b"a2 NO [NONEXISTENT]"), missing
    nope = carol.cmd("a2", f'APPEND "Other Users/{ALICE}/Nope-{box}" {{{len(msg)}+}}\r\n{msg}')
    assert nope == missing, (nope, missing)
    assert _flags(alice, box) == []
    alice.cmd("s2", f'SETACL {box} "{BOB}" +i')
    out = bob.cmd("a3", append)
    assert out[-1].startswith(b"a3 OK [APPENDUID"), out
    flags = _flags(alice, box)  # in the owner's mailbox, without flags bob may not set
    assert len(flags) == 1 and b"\\Seen" not in flags[0] and b"$Bob" not in flags[0], flags
    alice.cmd("s3", f'SETACL {box} "{BOB}" +s')
    assert bob.cmd("a4", append)[-1].startswith(b"a4 OK")
    flags = _flags(alice, box)
    assert b"\\Seen" in flags[1] and b"$Bob" not in flags[1], flags
    for raw in (alice, bob, carol):
        raw.close()


def test_other_users_namespace_is_not_for_own_mailboxes(server: Server) -> None:
    bob = _session(server, BOB)
    box = unique("acl")
    spoof = f"Other Users/{ALICE}/{box}"
    assert bob.cmd("c", f'CREATE "{spoof}"')[-1].startswith(b"c NO [CANNOT]")
    bob.cmd("c2", f"CREATE {box}")
    assert bob.cmd("r", f'RENAME {box} "{spoof}"')[-1].startswith(b"r NO [CANNOT]")
    assert bob.cmd("x", f'SELECT "{spoof}"') == [b"x NO [NONEXISTENT] No such mailbox"]
    alice = _session(server)
    alice.cmd("c", f"CREATE {box}")
    alice.cmd("s", f'SETACL {box} "{BOB}" lr')
    out = bob.cmd("sub", f'SUBSCRIBE "{spoof}"')  # a shared mailbox may be subscribed
    assert out[-1].startswith(b"sub OK"), out
    out = bob.cmd("l", f'LIST (SUBSCRIBED) "" "{spoof}"')
    assert any(line.endswith(f'"{spoof}"'.encode()) for line in out[:-1]), out
    for raw in (alice, bob):
        raw.close()


def test_idle_ends_when_rights_are_taken_away(server: Server) -> None:
    alice = _session(server)
    box = unique("acl")
    alice.cmd("c", f"CREATE {box}")
    alice.cmd("s", f'SETACL {box} "{BOB}" lr')
    bob = _session(server, BOB)
    assert bob.cmd("x", f'EXAMINE "Other Users/{ALICE}/{box}"')[-1].startswith(b"x OK")
    bob.send(b"i IDLE\r\n")
    assert bob.line().startswith(b"+")
    alice.cmd("d", f'DELETEACL {box} "{BOB}"')
    _append(alice, box, "after-removal")  # wakes the IDLE: nothing of it is told
    assert bob.line() == b"* BYE The mailbox is no longer shared"
    assert bob.closed()
    alice.close()
