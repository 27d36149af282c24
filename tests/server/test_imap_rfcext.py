"""IMAP extensions over real sockets: OBJECTID (RFC 8474), PREVIEW (RFC 8970), WITHIN
(RFC 5032), STATUS=SIZE (RFC 8438), CREATE-SPECIAL-USE (RFC 6154) and UNAUTHENTICATE
(RFC 8437); hostile forms of each get BAD or NO and the session goes on."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from tests.conftest import Server
from tests.server.imap_helpers import RawImap, imap, message, unique
from tests.server.jmap_helpers import Jmap

ALICE = "alice@example.test"
BOB = "bob@example.test"

HTML = (
    b"From: alice@example.test\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><style>p {color: red}</style></head><body><p>Caf\xc3\xa9   au\r\n"
    b"  lait</p></body></html>\r\n--b--\r\n"
)


def _session(server: Server, user: str = ALICE) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    raw.login(user)
    return raw


def _box(server: Server, *bodies: bytes) -> str:
    box = unique("ext")
    client = imap(server)
    assert client.create(box)[0] == "OK"
    for body in bodies:
        assert client.append(box, None, None, body)[0] == "OK"
    client.logout()
    return box


def test_capabilities(server: Server) -> None:
    raw = _session(server)
    caps = raw.cmd("c", "CAPABILITY")[0].split()
    for cap in (b"OBJECTID", b"PREVIEW", b"WITHIN", b"STATUS=SIZE", b"CREATE-SPECIAL-USE"):
        assert cap in caps, caps
    assert b"UNAUTHENTICATE" in caps
    raw.close()


def test_objectid_mailboxid_emailid_threadid(server: Server) -> None:
    one, two = message("one"), message("two")
    box = _box(server, one, two)
    raw = _session(server)
    out = raw.cmd("s", f"SELECT {box}")
    mailboxid = next(re.search(rb"\[MAILBOXID \((M\d+)\)\]", x) for x in out if b"MAILBOXID" in x)
    assert mailboxid is not None
    ident = mailboxid.group(1)
    status = raw.cmd("t", f"STATUS {box} (MAILBOXID SIZE MESSAGES)")
    assert re.search(rb"MAILBOXID \(" + ident + rb"\)", status[0]), status
    out = raw.cmd("f", "UID FETCH 1:* (EMAILID THREADID BODY.PEEK[])")
    assert out[-1].startswith(b"f OK"), out
    fetched = b"\r\n".join(out[:-1])
    ids = re.findall(rb"EMAILID \((E[0-9a-f]{24})\) THREADID \((T[0-9a-f]{24})\)", fetched)
    assert len(ids) == 2 and ids[0][0] != ids[1][0]
    # the id is the JMAP one: the SHA-256 of the stored octets
    bodies = re.findall(rb"BODY\[\] \{(\d+)\}\r\n", fetched)
    first = fetched.split(b"BODY[] {%s}\r\n" % bodies[0], 1)[1][: int(bodies[0])]
    assert ids[0][0] == b"E" + hashlib.sha256(first).hexdigest()[:24].encode()
    emailid = ids[0][0].decode()
    out = raw.cmd("x", f"UID SEARCH EMAILID {emailid}")
    assert out[0] == b"* SEARCH 1", out
    out = raw.cmd("y", f"SEARCH THREADID {ids[1][1].decode()}")
    assert out[0] == b"* SEARCH 2", out
    # a copy elsewhere is the same Email; a RENAME keeps the MAILBOXID (RFC 8474 §4.1)
    other = unique("ext")
    assert raw.cmd("c", f"CREATE {other}")[-1].startswith(b"c OK [MAILBOXID (M")
    assert raw.cmd("k", f"UID COPY 1 {other}")[-1].startswith(b"k OK")
    renamed = unique("ren")
    assert raw.cmd("r", f"RENAME {other} {renamed}")[-1].startswith(b"r OK")
    raw.cmd("u", "UNSELECT")
    out = raw.cmd("e", f"EXAMINE {renamed}")
    out = raw.cmd("f2", "FETCH 1 (EMAILID)")
    assert ids[0][0] in out[0], out
    # hostile: not an objectid
    assert raw.cmd("b1", "SEARCH EMAILID E!x")[-1].startswith(b"b1 BAD")
    assert raw.cmd("b2", "SEARCH EMAILID " + "a" * 300)[-1].startswith(b"b2 BAD")
    assert raw.cmd("b3", "SEARCH EMAILID Enope")[0] == b"* SEARCH"
    assert raw.cmd("n", "NOOP")[-1].startswith(b"n OK")
    raw.close()


def test_preview(server: Server) -> None:
    long_body = ("word " * 400 + "\r\n").encode()
    plain = message("p", "  Hello\r\n\r\n   preview  world.\r\n")
    box = _box(server, plain, HTML, message("long", long_body.decode()))
    raw = _session(server)
    raw.cmd("e", "ENABLE UTF8=ACCEPT")
    raw.cmd("s", f"EXAMINE {box}")
    out = raw.cmd("f", "FETCH 1:3 (PREVIEW)")
    assert out[0] == b'* 1 FETCH (PREVIEW "Hello preview world.")', out
    assert out[1] == '* 2 FETCH (PREVIEW "Café au lait")'.encode(), out
    text = re.search(rb'PREVIEW "([^"]*)"', out[2])
    assert text is not None and 0 < len(text.group(1)) <= 256
    out = raw.cmd("l", "FETCH 1 (PREVIEW (LAZY) UID)")
    assert b'PREVIEW "Hello preview world."' in out[0] and b"UID 1" in out[0], out
    assert raw.cmd("b", "FETCH 1 (PREVIEW (EAGER))")[-1].startswith(b"b BAD")
    assert raw.cmd("b2", "FETCH 1 (PREVIEW (LAZY)")[-1].startswith(b"b2 BAD")
    assert raw.cmd("n", "NOOP")[-1].startswith(b"n OK")
    raw.close()


def test_preview_without_utf8_is_a_literal(server: Server) -> None:
    box = _box(server, HTML)
    raw = _session(server)
    raw.cmd("s", f"EXAMINE {box}")
    out = raw.cmd("f", "FETCH 1 PREVIEW")
    data = "Café au lait".encode()
    assert out[0] == b"* 1 FETCH (PREVIEW {%d}\r\n%s)" % (len(data), data), out
    raw.close()


def test_within_older_younger(server: Server) -> None:
    box = unique("within")
    client = imap(server)
    client.create(box)
    client.append(box, None, '"01-Jan-2020 10:00:00 +0000"', message("old"))
    client.append(box, None, None, message("new"))
    client.logout()
    raw = _session(server)
    raw.cmd("s", f"EXAMINE {box}")
    assert raw.cmd("a", "SEARCH OLDER 86400")[0] == b"* SEARCH 1"
    assert raw.cmd("b", "SEARCH YOUNGER 86400")[0] == b"* SEARCH 2"
    assert raw.cmd("c", "SEARCH NOT YOUNGER 3600 OLDER 3600")[0] == b"* SEARCH 1"
    assert raw.cmd("d", "SEARCH OLDER 0")[-1].startswith(b"d BAD")  # nz-number
    assert raw.cmd("e", "SEARCH YOUNGER -5")[-1].startswith(b"e BAD")
    assert raw.cmd("f", "SEARCH OLDER 99999999999")[-1].startswith(b"f BAD")
    assert raw.cmd("n", "NOOP")[-1].startswith(b"n OK")
    raw.close()


def test_status_size(server: Server) -> None:
    one, two = message("a"), message("b", "x" * 1000)
    box = _box(server, one, two)
    raw = _session(server)
    out = raw.cmd("s", f"STATUS {box} (SIZE MESSAGES)")
    m = re.search(rb"SIZE (\d+)", out[0])
    assert m is not None and int(m.group(1)) == len(one) + len(two), out
    raw.close()


def test_create_special_use(server: Server) -> None:
    raw = _session(server)
    box = unique("arch")
    out = raw.cmd("c", f"CREATE {box} (USE (\\Archive))")
    assert out[-1].startswith(b"c OK"), out
    listed = raw.cmd("l", f'LIST "" {box}')
    assert b"\\Archive" in listed[0], listed
    listed = raw.cmd("l2", '''LIST (SPECIAL-USE) "" "*"''')
    assert any(box.encode() in x and b"\\Archive" in x for x in listed), listed
    for tag, use in (("u1", "\\All"), ("u2", "\\Bogus"), ("u3", "\\Sent \\Trash")):
        other = unique("use")
        out = raw.cmd(tag, f"CREATE {other} (USE ({use}))")
        assert out[-1].startswith(tag.encode() + b" NO [USEATTR]"), out
        assert other.encode() not in b"".join(raw.cmd("x" + tag, f'LIST "" {other}'))
    assert raw.cmd("b", f"CREATE {unique()} (USE (Archive))")[-1].startswith(b"b BAD")
    assert raw.cmd("b2", f"CREATE {unique()} (USE ())")[-1].startswith(b"b2 BAD")
    assert raw.cmd("b3", f"CREATE {unique()} (NOPE (\\Sent))")[-1].startswith(b"b3 BAD")
    assert raw.cmd("n", "NOOP")[-1].startswith(b"n OK")
    raw.close()


def test_unauthenticate(server: Server) -> None:
    box = _box(server, message("mine"))
    raw = _session(server)
    assert raw.cmd("e", "ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE"
    raw.cmd("s", f"SELECT {box}")
    out = raw.cmd("u", "UNAUTHENTICATE")
    assert out == [b"u OK UNAUTHENTICATE completed"], out
    # not authenticated: alice's mailbox is out of reach, the session goes on
    assert raw.cmd("f", "FETCH 1 FLAGS")[-1].startswith(b"f BAD")
    assert raw.cmd("l", 'LIST "" "*"')[-1].startswith(b"l BAD")
    caps = raw.cmd("c", "CAPABILITY")[0]
    assert b"AUTH=PLAIN" in caps and b"UNAUTHENTICATE" not in caps
    raw.login(BOB)
    assert raw.cmd("x", f"SELECT {box}")[-1].startswith(b"x NO")
    # ENABLE was reset: it can be given again
    assert raw.cmd("e2", "ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE"
    assert raw.cmd("u2", "UNAUTHENTICATE")[-1].startswith(b"u2 OK")
    assert raw.cmd("u3", "UNAUTHENTICATE")[-1].startswith(b"u3 BAD")
    raw.close()


def test_object_ids_are_the_jmap_ids(server: Server) -> None:
    """EMAILID, THREADID and MAILBOXID name what JMAP's id, threadId and mailbox id name."""
    box = unique("jmapids")
    root = message("plans", extra=f"Message-ID: <root-{box}@t>\r\n").replace(
        b"Message-ID: <", b"X-Old-Id: <", 1
    )
    reply = message("Re: plans", extra=f"In-Reply-To: <root-{box}@t>\r\n")
    _box_named(server, box, root, reply)
    raw = _session(server)
    out = raw.cmd("s", f"EXAMINE {box}")
    mailboxid = next(m.group(1) for x in out if (m := re.search(rb"MAILBOXID \((\w+)\)", x)))
    out = raw.cmd("f", "FETCH 1:2 (EMAILID THREADID)")
    pairs = re.findall(rb"EMAILID \((\w+)\) THREADID \((\w+)\)", b"".join(out))
    assert len(pairs) == 2 and pairs[0][1] == pairs[1][1], out  # one conversation
    assert raw.cmd("t", f"SEARCH THREADID {pairs[0][1].decode()}")[0] == b"* SEARCH 1 2"
    raw.close()
    jmap = Jmap(server)
    assert jmap.mailbox_id(box) == mailboxid.decode()
    got = jmap.call("Email/get", ids=jmap.email_ids(box), properties=["threadId"])["list"]
    assert sorted((e["id"], e["threadId"]) for e in got) == sorted(
        (e.decode(), t.decode()) for e, t in pairs
    )


def _box_named(server: Server, box: str, *bodies: bytes) -> None:
    client = imap(server)
    assert client.create(box)[0] == "OK"
    for body in bodies:
        assert client.append(box, None, None, body)[0] == "OK"
    client.logout()


def test_savedate(server: Server) -> None:
    box = unique("saved")
    client = imap(server)
    client.create(box)
    client.append(box, None, '"01-Jan-2020 10:00:00 +0000"', message("old"))
    client.append(box, None, None, message("new"))
    client.logout()
    raw = _session(server)
    caps = raw.cmd("c", "CAPABILITY")[0].split()
    assert b"SAVEDATE" in caps
    raw.cmd("s", f"SELECT {box}")
    out = raw.cmd("f", "FETCH 1:2 (INTERNALDATE SAVEDATE)")
    today = dt.datetime.now().strftime("%d-%b-%Y").encode()
    saved = re.findall(rb'SAVEDATE "([^"]+)"', b"".join(out))
    assert len(saved) == 2 and all(today.lstrip(b"0") in s for s in saved), out
    assert b'INTERNALDATE " 1-Jan-2020' in out[0]
    on = dt.date.today().strftime("%d-%b-%Y")
    assert raw.cmd("a", f"SEARCH SAVEDON {on}")[0] == b"* SEARCH 1 2"
    assert raw.cmd("b", f"SEARCH SAVEDBEFORE {on}")[0] == b"* SEARCH"
    assert raw.cmd("d", "SEARCH SAVEDSINCE 1-Jan-2021")[0] == b"* SEARCH 1 2"
    assert raw.cmd("e", "SEARCH SINCE 1-Jan-2021")[0] == b"* SEARCH 2"
    assert raw.cmd("g", "SEARCH SAVEDATESUPPORTED")[0] == b"* SEARCH 1 2"
    assert raw.cmd("h", "SEARCH SAVEDON 32-Jan-2020")[-1].startswith(b"h BAD")
    assert raw.cmd("i", "SEARCH SAVEDBEFORE")[-1].startswith(b"i BAD")
    assert raw.cmd("n", "NOOP")[-1].startswith(b"n OK")
    raw.close()


def test_replace(server: Server) -> None:
    box, other = unique("repl"), unique("repl")
    _box_named(server, box, message("draft 1"), message("keep"))
    _box_named(server, other)
    raw = _session(server)
    assert b"REPLACE" in raw.cmd("c", "CAPABILITY")[0].split()
    raw.cmd("s", f"SELECT {box}")
    new = message("draft 2")
    raw.send(b"r1 REPLACE 1 %s (\\Draft) {%d}\r\n" % (box.encode(), len(new)))
    assert raw.line() == b"+ OK"
    raw.send(new + b"\r\n")
    out = raw.until(b"r1")
    assert re.fullmatch(rb"\* OK \[APPENDUID \d+ 3\] Replacement Message ID", out[0]), out
    assert out[1:3] == [b"* 1 EXPUNGE", b"* 2 EXISTS"], out  # (rev1: RECENT too)
    assert out[-1] == b"r1 OK REPLACE completed", out
    out = raw.cmd("f", "UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert len(out) == 3 and b"UID 2)" in out[0] and b"UID 3)" in out[1], out
    assert b"\\Draft" in out[1]
    assert b"draft 2" in b"".join(out)
    raw.send(b"r4 REPLACE 1:* %s {%d}\r\n" % (box.encode(), len(new)))
    assert raw.until(b"r4")[-1].startswith(b"r4 BAD")
    # UID REPLACE into another mailbox, with LITERAL+
    raw.send(b"r2 UID REPLACE 3 %s {%d+}\r\n%s\r\n" % (other.encode(), len(new), new))
    out = raw.until(b"r2")
    assert out[0].startswith(b"* OK [APPENDUID ") and out[1] == b"* 2 EXPUNGE", out
    assert out[-1] == b"r2 OK REPLACE completed", out
    # refusals: no such message, more than one, not selected, read-only
    raw.send(b"r3 UID REPLACE 99 %s {%d}\r\n" % (box.encode(), len(new)))
    assert raw.until(b"r3")[-1].startswith(b"r3 NO [NONEXISTENT]")
    raw.send(b"r5 REPLACE 1 %s {%d+}\r\n%s {%d+}\r\n%s\r\n" % (
        box.encode(), len(new), new, len(new), new))  # fmt: skip
    assert raw.until(b"r5")[-1].startswith(b"r5 BAD")
    assert raw.cmd("n", "NOOP")[-1].startswith(b"n OK")
    assert raw.cmd("u", f"STATUS {other} (MESSAGES)")[0].endswith(b"(MESSAGES 1)")
    raw.cmd("e", f"EXAMINE {box}")
    raw.send(b"r6 REPLACE 1 %s {%d}\r\n" % (box.encode(), len(new)))
    assert raw.until(b"r6")[-1].startswith(b"r6 NO [READ-ONLY]")
    raw.cmd("x", "UNSELECT")
    raw.send(b"r7 REPLACE 1 %s {%d}\r\n" % (box.encode(), len(new)))
    assert raw.until(b"r7")[-1].startswith(b"r7 BAD")
    assert raw.cmd("n2", "NOOP")[-1].startswith(b"n2 OK")
    raw.close()


def test_multisearch(server: Server) -> None:
    top = unique("multi")
    raw = _session(server)
    assert b"MULTISEARCH" in raw.cmd("c", "CAPABILITY")[0].split()
    for name in (top, f"{top}/a", f"{top}/a/deep", f"{top}/b"):
        raw.cmd("m", f"CREATE {name}")
    client = imap(server)
    for name in (top, f"{top}/a", f"{top}/a/deep"):
        client.append(name, None, None, message("needle here"))
        client.append(name, None, None, message("hay"))
    client.logout()
    raw.cmd("sub", f"SUBSCRIBE {top}/a/deep")
    out = raw.cmd("a", f'ESEARCH IN (SUBTREE "{top}") SUBJECT needle')
    assert len(out) == 4 and out[-1] == b"a OK ESEARCH completed", out
    for line, name in zip(out, (top, f"{top}/a", f"{top}/a/deep"), strict=False):
        assert re.fullmatch(
            rb'\* ESEARCH \(TAG "a" MAILBOX "%s" UIDVALIDITY \d+\) UID ALL 1' % name.encode(),
            line,
        ), out
    out = raw.cmd("b", f'ESEARCH IN (SUBTREE-ONE "{top}") RETURN (COUNT MIN) ALL')
    assert len(out) == 4 and b"COUNT 2" in out[0] and b"MIN 1" in out[0], out  # b: COUNT 0
    assert any(f'"{top}/b"'.encode() in x and b"COUNT 0" in x for x in out), out
    out = raw.cmd("c2", f'ESEARCH IN (MAILBOXES ("{top}/b" "nope") SUBSCRIBED) RETURN (COUNT) ALL')
    found = [x.split(b'"')[3] for x in out[:-1]]  # the special-use ones are subscribed too
    assert f"{top}/a/deep".encode() in found and f"{top}/b".encode() in found, out
    assert f"{top}/a".encode() not in found and b"INBOX" in found
    raw.cmd("s", f"EXAMINE {top}/a")
    out = raw.cmd("d", "ESEARCH SUBJECT hay")  # no IN: the selected mailbox
    assert len(out) == 2 and out[0].endswith(b"UID ALL 2"), out
    out = raw.cmd("e", "ESEARCH IN (SELECTED INBOXES) RETURN () UID 1:*")
    assert len(out) >= 2 and f'"{top}/a"'.encode() in out[0], out
    for tag, bad in (
        ("h1", f'ESEARCH IN (SUBTREE "{top}") 1:2'),  # sequence numbers
        ("h2", f'ESEARCH IN (SUBTREE "{top}") UID $'),
        ("h3", "ESEARCH IN (BOGUS) ALL"),
        ("h4", "ESEARCH IN () ALL"),
        ("h5", "ESEARCH IN (PERSONAL) RETURN (SAVE) ALL"),
        ("h6", "ESEARCH IN (PERSONAL) RETURN (PARTIAL 1:5) ALL"),
        ("h7", "ESEARCH IN (PERSONAL)"),
        ("h8", "ESEARCH IN (MAILBOXES (" + " ".join(["x"] * 1001) + ")) ALL"),
    ):
        assert raw.cmd(tag, bad)[-1].startswith(tag.encode() + b" BAD"), bad
    out = raw.cmd("h9", "ESEARCH IN (PERSONAL) CHARSET KOI8-R ALL")
    assert out[-1].startswith(b"h9 NO [BADCHARSET"), out
    assert raw.cmd("n", "NOOP")[-1].startswith(b"n OK")
    raw.close()
    bob = _session(server, BOB)  # another user's sources are his own mailboxes
    out = bob.cmd("x", f'ESEARCH IN (SUBTREE "{top}" MAILBOXES "{top}") ALL')
    assert out == [b"x OK ESEARCH completed"], out
    bob.close()


def test_uidonly(server: Server) -> None:
    box = unique("uidonly")
    _box_named(server, box, message("one"), message("two"), message("three"))
    raw = _session(server)
    assert b"UIDONLY" in raw.cmd("c", "CAPABILITY")[0].split()
    assert raw.cmd("e", "ENABLE UIDONLY")[0] == b"* ENABLED UIDONLY"
    raw.cmd("s", f"SELECT {box}")
    for tag, bad in (
        ("b1", "FETCH 1 FLAGS"),
        ("b2", "STORE 1 +FLAGS (\\Seen)"),
        ("b3", "SEARCH ALL"),
        ("b4", "UID SEARCH 1:2"),
        ("b5", f"COPY 1 {box}"),
        ("b6", f"MOVE 1 {box}"),
        ("b7", "SORT (DATE) UTF-8 ALL"),
    ):
        out = raw.cmd(tag, bad)
        assert out == [tag.encode() + b" BAD [UIDREQUIRED] use UIDs, not message numbers"], out
    raw.send(b"b8 REPLACE 1 %s {3}\r\n" % box.encode())
    assert raw.until(b"b8")[-1].startswith(b"b8 BAD [UIDREQUIRED]")
    out = raw.cmd("f", "UID FETCH 2:3 (FLAGS)")
    assert out[:2] == [
        b"* 2 UIDFETCH (FLAGS (\\Recent) UID 2)",
        b"* 3 UIDFETCH (FLAGS (\\Recent) UID 3)",
    ], out
    out = raw.cmd("f2", "UID FETCH 1 (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert out[0].startswith(b"* 1 UIDFETCH (RFC822.SIZE "), out
    out = raw.cmd("t", "UID STORE 2 +FLAGS (\\Deleted)")
    assert out[0] == b"* 2 UIDFETCH (UID 2 FLAGS (\\Deleted \\Recent))", out
    out = raw.cmd("x", "EXPUNGE")
    assert out == [b"* VANISHED 2", b"x OK EXPUNGE completed"], out
    assert raw.cmd("u", "UID SEARCH UID 1:*")[0] == b"* SEARCH 1 3"
    # another session's change arrives as UIDFETCH and VANISHED too
    other = _session(server)
    other.cmd("s", f"SELECT {box}")
    other.cmd("t", "UID STORE 3 +FLAGS (\\Flagged \\Deleted)")
    other.cmd("x", "EXPUNGE")
    other.close()
    out = raw.cmd("n", "NOOP")
    assert b"* VANISHED 3" in out, out
    assert out[-1].startswith(b"n OK")
    raw.close()
