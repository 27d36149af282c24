"""Shared mailboxes (RFC 4314) over real sockets: COPY and MOVE to and from another
account's mailbox, the rights k, x, a and p each checked positive and negative, and the
abuse cases — rights taken away mid-session, racing APPENDs at the owner's quota, and
name guessing, which must never tell an unshared mailbox from a missing one."""

from __future__ import annotations

import re
import threading
import uuid

from tests.conftest import Server, correo
from tests.server.imap_helpers import RawImap, unique

PASSWORD = "shared-secret-7"


def _user(server: Server, prefix: str) -> str:
    address = f"{prefix}{uuid.uuid4().hex[:8]}@example.test"
    r = correo(server.data, "user", "add", address, stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    return address


def _login(server: Server, user: str) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    out = raw.cmd("L", f'LOGIN "{user}" "{PASSWORD}"')
    assert out[-1].startswith(b"L OK"), out
    return raw


def _append(raw: RawImap, box: str, subject: str, flags: str = "", size: int = 0) -> bytes:
    body = "x" * size
    msg = f"From: a@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject} {body}\r\n"
    flag_list = f"({flags}) " if flags else ""
    out = raw.cmd("a", f'APPEND "{box}" {flag_list}{{{len(msg)}+}}\r\n{msg}')
    return out[-1]


def _uidvalidity(raw: RawImap, box: str) -> int:
    out = raw.cmd("v", f'STATUS "{box}" (UIDVALIDITY)')
    m = re.search(rb"UIDVALIDITY (\d+)", out[0])
    assert m, out
    return int(m.group(1))


def _fetch(raw: RawImap, box: str, items: str = "(FLAGS)") -> list[bytes]:
    raw.cmd("ex", f'EXAMINE "{box}"')
    out = raw.cmd("ff", f"FETCH 1:* {items}")
    raw.cmd("un", "UNSELECT")
    return [line for line in out if line.startswith(b"* ")]


def test_copy_and_move_to_and_from_a_shared_mailbox(server: Server) -> None:
    owner, guest, stranger = _user(server, "own"), _user(server, "gst"), _user(server, "str")
    alice, bob, carol = (_login(server, u) for u in (owner, guest, stranger))
    team, own = unique("team"), unique("own")
    alice.cmd("c", f"CREATE {team}")
    assert _append(alice, team, "team-one", "\\Seen $Work").startswith(b"a OK")
    assert _append(alice, team, "team-two").startswith(b"a OK")
    alice.cmd("s", f'SETACL {team} "{guest}" lr')
    bob.cmd("c", f"CREATE {own}")
    shared = f"Other Users/{owner}/{team}"
    # out of it with "r": a copy into the user's own mailbox, flags and all
    assert bob.cmd("x", f'SELECT "{shared}"')[-1].startswith(b"x OK [READ-ONLY]")
    out = bob.cmd("cp", f"UID COPY 1 {own}")
    assert out[-1].startswith(f"cp OK [COPYUID {_uidvalidity(bob, own)} 1 1]".encode()), out
    assert b"$Work" in _fetch(bob, own)[0] and b"team-one" in b"".join(
        _fetch(bob, own, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    )
    # MOVE needs "t" and "e" as well (and write rights make the view read-write)
    alice.cmd("s2", f'SETACL {team} "{guest}" lrt')
    bob.cmd("x2", f'SELECT "{shared}"')
    assert bob.cmd("mv", f"MOVE 2 {own}")[-1].startswith(b"mv NO [NOPERM]")
    alice.cmd("s3", f'SETACL {team} "{guest}" lrte')
    out = bob.cmd("mv2", f"MOVE 2 {own}")
    assert out[-1] == b"mv2 OK MOVE completed" and b"* 2 EXPUNGE" in out, out
    assert len(_fetch(alice, team)) == 1 and len(_fetch(bob, own)) == 2
    # into it: "i" there; without any right it is exactly a missing mailbox
    bob.cmd("x3", f"SELECT {own}")
    bob.cmd("st", "STORE 1:* +FLAGS (\\Seen \\Deleted $Mine)")
    out = bob.cmd("in", f'COPY 1 "{shared}"')
    assert out[-1].startswith(b"in NO [NOPERM]"), out
    assert _append(carol, "INBOX", "carol-own").startswith(b"a OK")
    carol.cmd("x", "SELECT INBOX")
    refused = carol.cmd("in", f'COPY 1 "{shared}"')
    assert refused == [b"in NO [NONEXISTENT] No such mailbox"], refused
    assert carol.cmd("in", f'COPY 1 "Other Users/{owner}/Nope{team}"') == refused
    assert carol.cmd("in", f'MOVE 1 "{shared}"') == refused
    # with "i" (and "t", not "s" nor "w"): only \Deleted comes along; the owner's IDLE
    # sees it; COPYUID names the owner's mailbox
    alice.cmd("s4", f'SETACL {team} "{guest}" lrtei')
    alice.cmd("x", f"EXAMINE {team}")
    alice.send(b"i IDLE\r\n")
    assert alice.line().startswith(b"+")
    out = bob.cmd("in2", f'UID COPY 1 "{shared}"')
    valid = _uidvalidity(bob, shared)
    assert out[-1].startswith(f"in2 OK [COPYUID {valid} 1 3]".encode()), out
    assert alice.line() == b"* 2 EXISTS"
    alice.send(b"DONE\r\n")
    alice.until(b"i")
    alice.cmd("un", "UNSELECT")
    flags = _fetch(alice, team)
    assert b"\\Deleted" in flags[1] and b"\\Seen" not in flags[1] and b"$Mine" not in flags[1]
    # MOVE in takes the message out of the user's own mailbox
    out = bob.cmd("in3", f'MOVE 2 "{shared}"')
    assert out[-1] == b"in3 OK MOVE completed", out
    assert len(_fetch(alice, team)) == 3 and len(_fetch(bob, own)) == 1
    for raw in (alice, bob, carol):
        raw.close()


def test_copy_into_shared_is_charged_to_the_owner(server: Server) -> None:
    owner, guest = _user(server, "qown"), _user(server, "qgst")
    assert correo(server.data, "user", "quota", owner, "none", "--messages", "2").returncode == 0
    alice, bob = _login(server, owner), _login(server, guest)
    team = unique("team")
    alice.cmd("c", f"CREATE {team}")
    alice.cmd("s", f'SETACL {team} "{guest}" lri')
    for n in range(3):
        assert _append(bob, "INBOX", f"b{n}").startswith(b"a OK")
    bob.cmd("x", "SELECT INBOX")
    shared = f"Other Users/{owner}/{team}"
    out = bob.cmd("c1", f'COPY 1:3 "{shared}"')  # three do not fit: none is copied
    assert out[-1].startswith(b"c1 NO [OVERQUOTA]"), out
    out = bob.cmd("m1", f'MOVE 1:3 "{shared}"')
    assert out[-1].startswith(b"m1 NO [OVERQUOTA]") and b"EXPUNGE" not in b"".join(out), out
    assert _fetch(alice, team) == []
    assert bob.cmd("c2", f'COPY 1:2 "{shared}"')[-1].startswith(b"c2 OK [COPYUID")
    assert bob.cmd("c3", f'COPY 3 "{shared}"')[-1].startswith(b"c3 NO [OVERQUOTA]")
    assert len(_fetch(alice, team)) == 2
    out = bob.cmd("q", "GETQUOTAROOT INBOX")  # the guest's own usage: its three only
    assert not any(b"MESSAGE" in line and b"MESSAGE 3" not in line for line in out), out
    for raw in (alice, bob):
        raw.close()


def test_create_rename_delete_by_rights_k_and_x(server: Server) -> None:
    owner, guest = _user(server, "kown"), _user(server, "kgst")
    alice, bob = _login(server, owner), _login(server, guest)
    team, secret = unique("team"), unique("secret")
    alice.cmd("c", f"CREATE {team}")
    alice.cmd("c2", f"CREATE {secret}")
    alice.cmd("s", f'SETACL {team} "{guest}" lr')
    base = f"Other Users/{owner}"
    # k: a child of the shared mailbox
    assert bob.cmd("k1", f'CREATE "{base}/{team}/Sub"')[-1].startswith(b"k1 NO [NOPERM]")
    none = bob.cmd("k2", f'CREATE "{base}/{secret}/Sub"')
    assert none == [b"k2 NO [NONEXISTENT] No such mailbox"], none
    assert bob.cmd("k2", f'CREATE "{base}/Nope{secret}/Sub"') == none
    top = bob.cmd("k3", f'CREATE "{base}/Top{team}"')
    assert top[-1].startswith(b"k3 NO [CANNOT]"), top
    alice.cmd("s2", f'SETACL {team} "{guest}" lrk')
    out = bob.cmd("k4", f'CREATE "{base}/{team}/Sub"')
    assert out[-1].startswith(b"k4 OK [MAILBOXID"), out
    lines = alice.cmd("l", f'LIST "" "{team}/*"')
    assert lines[0].endswith(f'"{team}/Sub"'.encode()), lines
    out = bob.cmd("m", f'MYRIGHTS "{base}/{team}/Sub"')  # inherited from its parent
    assert out[0].endswith(b'"lrk"'), out
    # x: RENAME takes the mailbox away (and k puts it below its new parent)
    rename = f'RENAME "{base}/{team}/Sub" "{base}/{team}/Sub2"'
    assert bob.cmd("x1", rename)[-1].startswith(b"x1 NO [NOPERM]")
    alice.cmd("s3", f'SETACL {team}/Sub "{guest}" lrkx')
    assert bob.cmd("x2", rename)[-1] == b"x2 OK RENAME completed"
    assert alice.cmd("l2", f'LIST "" "{team}/*"')[0].endswith(f'"{team}/Sub2"'.encode())
    out = bob.cmd("x3", f'RENAME "{base}/{team}/Sub2" "Mine{team}"')  # not across accounts
    assert out[-1].startswith(b"x3 NO [CANNOT]"), out
    bob.cmd("c", f"CREATE Mine{team}")
    out = bob.cmd("x4", f'RENAME "Mine{team}" "{base}/{team}/Mine"')
    assert out[-1].startswith(b"x4 NO [CANNOT]"), out
    out = bob.cmd("x5", f'RENAME "{base}/{secret}" "{base}/{team}/Stolen"')
    assert out == [b"x5 NO [NONEXISTENT] No such mailbox"], out
    # x: DELETE
    assert bob.cmd("d1", f'DELETE "{base}/{team}"')[-1].startswith(b"d1 NO [NOPERM]")
    out = bob.cmd("d2", f'DELETE "{base}/{secret}"')
    assert out == [b"d2 NO [NONEXISTENT] No such mailbox"], out
    assert bob.cmd("d3", f'DELETE "{base}/{team}/Sub2"')[-1] == b"d3 OK DELETE completed"
    assert alice.cmd("l3", f'LIST "" "{team}/*"') == [b"l3 OK LIST completed"]
    assert bob.cmd("d4", f'DELETE "{base}/INBOX"') == [b"d4 NO [NONEXISTENT] No such mailbox"]
    for raw in (alice, bob):
        raw.close()


def test_admin_right_and_post_right(server: Server) -> None:
    owner, guest, third = _user(server, "aown"), _user(server, "agst"), _user(server, "athd")
    alice, bob = _login(server, owner), _login(server, guest)
    team = unique("team")
    alice.cmd("c", f"CREATE {team}")
    alice.cmd("s", f'SETACL {team} "{guest}" lr')
    shared = f'"Other Users/{owner}/{team}"'
    for tag, verb in (
        ("a1", f'SETACL {shared} "{third}" lr'),
        ("a2", f'DELETEACL {shared} "{guest}"'),
        ("a3", f"GETACL {shared}"),
        ("a4", f'LISTRIGHTS {shared} "{third}"'),
    ):
        assert bob.cmd(tag, verb)[-1].startswith(f"{tag} NO [NOPERM]".encode()), verb
    alice.cmd("s2", f'SETACL {team} "{guest}" lra')
    assert bob.cmd("b1", f'SETACL {shared} "{third}" lr')[-1] == b"b1 OK SETACL completed"
    out = bob.cmd("b2", f"GETACL {shared}")
    assert f'"{third}" "lr"'.encode() in out[0] and f'"{owner}"'.encode() in out[0], out
    out = bob.cmd("b3", f'LISTRIGHTS {shared} "{third}"')
    assert out[-1] == b"b3 OK LISTRIGHTS completed", out
    assert bob.cmd("b4", f'DELETEACL {shared} "{third}"')[-1] == b"b4 OK DELETEACL completed"
    assert f'"{third}"'.encode() not in alice.cmd("g", f"GETACL {team}")[0]
    # p alone (post, RFC 4314 §2.1: not an IMAP right): the mailbox stays out of reach
    alice.cmd("s3", f'SETACL {team} "{guest}" p')
    out = bob.cmd("p1", f"MYRIGHTS {shared}")
    assert out[0].endswith(b'"p"'), out
    assert bob.cmd("p2", f"SELECT {shared}") == [b"p2 NO [NONEXISTENT] No such mailbox"]
    assert shared.strip('"').encode() not in b"".join(bob.cmd("p3", 'LIST "" "*"'))
    for raw in (alice, bob):
        raw.close()


def test_rights_taken_away_mid_session_leak_nothing(server: Server) -> None:
    owner, guest = _user(server, "rown"), _user(server, "rgst")
    alice, bob = _login(server, owner), _login(server, guest)
    team = unique("team")
    alice.cmd("c", f"CREATE {team}")
    _append(alice, team, "before")
    alice.cmd("s", f'SETACL {team} "{guest}" lrswte')
    shared = f"Other Users/{owner}/{team}"
    assert bob.cmd("x", f'SELECT "{shared}"')[-1].startswith(b"x OK [READ-WRITE]")
    for tag, command in (
        ("n", "NOOP"),
        ("f", "UID FETCH 1:* (BODY.PEEK[])"),
        ("s", "STORE 1 +FLAGS (\\Flagged)"),
        ("e", "SEARCH TEXT after-removal"),
        ("c", "COPY 1 INBOX"),
        ("m", "MOVE 1 INBOX"),
        ("x", "EXPUNGE"),
    ):
        alice.cmd("d", f'DELETEACL {team} "{guest}"')
        _append(alice, team, "after-removal")
        out = bob.cmd(tag, command)
        assert out == [f"{tag} NO [NONEXISTENT] No such mailbox".encode()], (command, out)
        assert bob.cmd("b", "FETCH 1 (FLAGS)")[-1].startswith(b"b BAD")  # nothing selected
        alice.cmd("s", f'SETACL {team} "{guest}" lrswte')
        assert bob.cmd("x", f'SELECT "{shared}"')[-1].startswith(b"x OK")
    assert len(_fetch(bob, "INBOX")) == 0  # nothing was copied out
    assert b"\\Flagged" not in b"".join(_fetch(alice, team))
    for raw in (alice, bob):
        raw.close()


def test_racing_appends_into_a_shared_mailbox_at_the_quota(server: Server) -> None:
    owner, guest = _user(server, "zown"), _user(server, "zgst")
    assert correo(server.data, "user", "quota", owner, "none", "--messages", "5").returncode == 0
    setup = _login(server, owner)
    team = unique("team")
    setup.cmd("c", f"CREATE {team}")
    setup.cmd("s", f'SETACL {team} "{guest}" lri')
    setup.close()
    results: list[bytes] = []
    lock = threading.Lock()

    def appender(user: str, box: str) -> None:
        raw = _login(server, user)
        try:
            for n in range(5):
                line = _append(raw, box, f"race {n}", size=400)
                with lock:
                    results.append(line)
        finally:
            raw.close()

    threads = [
        threading.Thread(target=appender, args=(owner, team)),
        threading.Thread(target=appender, args=(guest, f"Other Users/{owner}/{team}")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.startswith(b"a OK")]
    refused = [r for r in results if r.startswith(b"a NO [OVERQUOTA]")]
    assert len(ok) == 5 and len(refused) == 5, results
    check = _login(server, owner)
    assert len(_fetch(check, team)) == 5
    check.close()


def _norm(lines: list[bytes], name: str) -> list[bytes]:
    return [line.replace(name.encode(), b"NAME") for line in lines]


def test_name_guessing_tells_unshared_from_missing_never(server: Server) -> None:
    owner, guest = _user(server, "gown"), _user(server, "ggst")
    alice, bob = _login(server, owner), _login(server, guest)
    secret = unique("secret")
    alice.cmd("c", f"CREATE {secret}")
    for box in ("INBOX", secret):
        assert _append(alice, box, "private-words").startswith(b"a OK")
    alice.cmd("m", f'SETMETADATA {secret} (/shared/comment "hidden-note")')
    assert _append(bob, "INBOX", "bob-own").startswith(b"a OK")
    msg = "Subject: x\r\n\r\nx\r\n"
    commands = [
        'SELECT "{n}"',
        'EXAMINE "{n}"',
        'STATUS "{n}" (MESSAGES UIDNEXT)',
        'CREATE "{n}/Child"',
        'DELETE "{n}"',
        'RENAME "{n}" "{n}2"',
        'GETACL "{n}"',
        'SETACL "{n}" "' + guest + '" lrswipkxtea',
        'DELETEACL "{n}" "' + guest + '"',
        'LISTRIGHTS "{n}" anyone',
        'MYRIGHTS "{n}"',
        'GETMETADATA "{n}" /shared/comment',
        'SETMETADATA "{n}" (/shared/comment "x")',
        'GETQUOTAROOT "{n}"',
        'APPEND "{n}" {' + str(len(msg)) + "+}\r\n" + msg,
        'COPY 1 "{n}"',
        'MOVE 1 "{n}"',
        'RENAME INBOX "{n}"',
    ]
    for pattern in commands:
        answers = []
        for name in ("INBOX", secret, f"Nope{secret}"):
            bob.cmd("x", "SELECT INBOX")
            full = f"Other Users/{owner}/{name}"
            out = bob.cmd("t", pattern.replace("{n}", full))
            text = b"\n".join(out)
            assert b"private-words" not in text and b"hidden-note" not in text, out
            assert out[-1].startswith(b"t NO"), (pattern, name, out)
            answers.append(_norm(out, name))
        assert answers[0] == answers[1] == answers[2], (pattern, answers)
    bob.cmd("x2", "SELECT INBOX")
    out = bob.cmd("f", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert [line[:10] for line in out if line.startswith(b"* ")] == [b"* 1 FETCH "], out
    for pattern in ('LIST "" "*"', f'LIST "Other Users/{owner}/" "*"', 'LIST "" "%/%/%"',
                    f'LIST (SUBSCRIBED) "" "Other Users/{owner}/*"', 'LSUB "" "*"'):  # fmt: skip
        out = b"".join(bob.cmd("l", pattern))
        assert secret.encode() not in out and owner.encode() not in out, (pattern, out)
    for raw in (alice, bob):
        raw.close()


def test_notify_tells_of_shared_mailboxes_the_user_may_read(server: Server) -> None:
    owner, guest = _user(server, "nown"), _user(server, "ngst")
    alice, bob = _login(server, owner), _login(server, guest)
    team, secret, mine = unique("team"), unique("secret"), unique("mine")
    for box in (team, secret):
        alice.cmd("c", f"CREATE {box}")
    alice.cmd("s", f'SETACL {team} "{guest}" lr')
    bob.cmd("c", f"CREATE {mine}")
    base = f"Other Users/{owner}"
    watched = f'"{base}/{team}" "{base}/{secret}" {mine}'
    out = bob.cmd("n", f"NOTIFY SET STATUS (MAILBOXES ({watched}) (MessageNew MessageExpunge))")
    assert out[-1] == b"n OK NOTIFY completed", out
    assert any(line.startswith(f'* STATUS "{base}/{team}" ('.encode()) for line in out), out
    assert not any(secret.encode() in line for line in out), out
    writer = _login(server, owner)
    assert _append(writer, secret, "hidden").startswith(b"a OK")  # never told
    assert _append(writer, team, "shared").startswith(b"a OK")
    line = bob.line()
    assert line.startswith(f'* STATUS "{base}/{team}" (MESSAGES 1 UIDNEXT 2'.encode()), line
    # rights taken away: its changes are no longer told; the user's own still are
    alice.cmd("d", f'DELETEACL {team} "{guest}"')
    assert _append(writer, team, "after").startswith(b"a OK")
    assert _append(bob, mine, "own").startswith(b"a OK")
    assert _append(writer, secret, "hidden2").startswith(b"a OK")
    other = _login(server, guest)
    assert _append(other, mine, "own2").startswith(b"a OK")
    seen = [bob.line()]
    while not seen[-1].startswith(f'* STATUS "{mine}" (MESSAGES 2'.encode()):
        seen.append(bob.line())
    assert not any(team.encode() in line or secret.encode() in line for line in seen), seen
    for raw in (alice, bob, writer, other):
        raw.close()


def test_metadata_and_urlauth_of_shared_mailboxes(server: Server) -> None:
    owner, guest = _user(server, "mown"), _user(server, "mgst")
    alice, bob = _login(server, owner), _login(server, guest)
    team = unique("team")
    alice.cmd("c", f"CREATE {team}")
    assert _append(alice, team, "url-words").startswith(b"a OK")
    # a literal8 value (RFC 5464 §5) keeps its NUL; it comes back as a literal8
    out = alice.cmd(
        "m1", f'SETMETADATA {team} (/shared/bin ~{{3+}}\r\na\x00b /private/note "mine")'
    )
    assert out == [b"m1 OK SETMETADATA completed"], out
    out = alice.cmd("m2", f"GETMETADATA {team} /shared/bin")
    assert out[0] == f'* METADATA "{team}" (/shared/bin ~{{3}}\r\na\x00b)'.encode(), out
    shared = f'"Other Users/{owner}/{team}"'
    get = f"GETMETADATA {shared} (/shared/bin /private/note)"
    assert bob.cmd("g1", get) == [b"g1 NO [NONEXISTENT] No such mailbox"]
    alice.cmd("s", f'SETACL {team} "{guest}" lr')
    out = bob.cmd("g2", get)  # the owner's private entry is never shown
    assert out[-1] == b"g2 OK GETMETADATA completed" and b"mine" not in b"".join(out), out
    assert b"/shared/bin ~{3}\r\na\x00b" in out[0], out
    setm = f'SETMETADATA {shared} (/shared/comment "from guest")'
    assert bob.cmd("g3", setm)[-1].startswith(b"g3 NO [NOPERM]")
    alice.cmd("s2", f'SETACL {team} "{guest}" lrw')
    assert bob.cmd("g4", setm) == [b"g4 OK SETMETADATA completed"]
    out = bob.cmd("g5", f'SETMETADATA {shared} (/private/x "y")')
    assert out[-1].startswith(b"g5 NO [CANNOT]"), out
    assert b"from guest" in alice.cmd("g6", f"GETMETADATA {team} /shared/comment")[0]
    # URLAUTH: the guest signs a URL of the shared mailbox only while it may read it
    rump = f"imap://{owner}/{team}/;uid=1;urlauth=user+{guest}"
    out = bob.cmd("u1", f'GENURLAUTH "{rump}" INTERNAL')
    assert out[-1] == b"u1 OK GENURLAUTH completed", out
    url = re.findall(rb'"([^"]+)"', out[0])[0].decode()
    out = bob.cmd("u2", f'URLFETCH "{url}"')
    assert b"url-words" in out[0], out
    plain = f"imap://{owner}/{team}/;uid=1"  # no URLAUTH: what FETCH could read
    assert b"url-words" in bob.cmd("u3", f'URLFETCH "{plain}"')[0]
    alice.cmd("d", f'DELETEACL {team} "{guest}"')
    assert bob.cmd("u4", f'URLFETCH "{plain}"')[0] == f'* URLFETCH "{plain}" NIL'.encode()
    assert bob.cmd("u5", f'GENURLAUTH "{rump}" INTERNAL')[-1].startswith(b"u5 BAD")
    assert bob.cmd("g7", get) == [b"g7 NO [NONEXISTENT] No such mailbox"]
    for raw in (alice, bob):
        raw.close()
