"""NOTIFY (RFC 5465) over real sockets: a second session's changes reach the first one
while it sends nothing, as STATUS for other mailboxes, EXISTS/EXPUNGE/FETCH for the
selected one, LIST for names and subscriptions; refusals are BAD or NO [BADEVENT]."""

from __future__ import annotations

import re

from tests.conftest import Server
from tests.server.imap_helpers import RawImap, imap, message, unique

ALICE = "alice@example.test"


def _session(server: Server) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    raw.login(ALICE)
    return raw


def _box(server: Server, n: int = 1) -> str:
    box = unique("ntf")
    client = imap(server)
    assert client.create(box)[0] == "OK"
    for i in range(n):
        assert client.append(box, None, None, message(f"m{i}"))[0] == "OK"
    client.logout()
    return box


def _append(raw: RawImap, box: str) -> None:
    body = message("new")
    out = raw.cmd("ap", f"APPEND {box} {{{len(body)}+}}\r\n".encode() + body)
    assert out[-1].startswith(b"ap OK"), out


def _status(line: bytes) -> dict[str, int]:
    m = re.fullmatch(rb'\* STATUS "?([^" ]+)"? \(([^)]*)\)', line)
    assert m is not None, line
    words = m.group(2).split()
    return {words[i].decode(): int(words[i + 1]) for i in range(0, len(words), 2)}


def test_capability(server: Server) -> None:
    raw = _session(server)
    assert b"NOTIFY" in raw.cmd("c", "CAPABILITY")[0].split()
    raw.close()


def test_status_now_and_when_another_session_changes_a_mailbox(server: Server) -> None:
    watched, other = _box(server), _box(server)
    raw = _session(server)
    out = raw.cmd("n", f"NOTIFY SET STATUS (MAILBOXES {watched} (MessageNew MessageExpunge))")
    assert out[-1] == b"n OK NOTIFY completed"
    (line,) = out[:-1]
    first = _status(line)
    assert line.startswith(b'* STATUS "%s" (' % watched.encode())
    assert first["MESSAGES"] == 1 and first["UNSEEN"] == 1 and "UIDVALIDITY" in first
    writer = _session(server)
    _append(writer, other)  # not watched: nothing
    _append(writer, watched)
    # RFC 5465 §5.2: unasked, while this session sends nothing
    now = _status(raw.line())
    assert now == {"MESSAGES": 2, "UIDNEXT": first["UIDNEXT"] + 1, "UNSEEN": 2}
    # §5.3: an expunge elsewhere
    assert writer.cmd("s", f"SELECT {watched}")[-1].startswith(b"s OK")
    writer.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    writer.cmd("e", "EXPUNGE")
    assert _status(raw.line()) == {"MESSAGES": 1, "UIDNEXT": first["UIDNEXT"] + 1, "UNSEEN": 1}
    # FlagChange (with the message events) tells of flags with HIGHESTMODSEQ (§5.1)
    out = raw.cmd("f", f"NOTIFY SET (MAILBOXES {watched} (MessageNew MessageExpunge FlagChange))")
    assert out == [b"f OK NOTIFY completed"]  # no STATUS without the STATUS indicator
    writer.cmd("g", "STORE 1 +FLAGS.SILENT (\\Seen)")
    flags = _status(raw.line())
    assert flags["UNSEEN"] == 0 and "HIGHESTMODSEQ" in flags and "UIDVALIDITY" in flags
    raw.close()
    writer.close()


def test_selected_mailbox_events_and_fetch_items(server: Server) -> None:
    box = _box(server)
    raw = _session(server)
    assert raw.cmd("s", f"SELECT {box}")[-1].startswith(b"s OK")
    out = raw.cmd("n", "NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange))")
    assert out == [b"n OK NOTIFY completed"]
    writer = _session(server)
    _append(writer, box)
    assert raw.line() == b"* 2 EXISTS"
    assert raw.line() == b"* 2 RECENT"
    fetch = raw.line()
    assert re.fullmatch(rb"\* 2 FETCH \(UID \d+ FLAGS \(\\Recent\)\)", fetch), fetch
    # SELECTED: an expunge by another session arrives at once (§6.1)
    assert writer.cmd("w", f"SELECT {box}")[-1].startswith(b"w OK")
    writer.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert re.fullmatch(rb"\* 1 FETCH \(FLAGS \(\\Deleted( \\Recent)?\)\)", raw.line())
    writer.cmd("e", "EXPUNGE")
    assert raw.line() == b"* 1 EXPUNGE"
    raw.close()
    writer.close()


def test_selected_delayed_keeps_expunges_for_the_next_command(server: Server) -> None:
    box, other = _box(server, 2), _box(server)
    raw = _session(server)
    raw.cmd("s", f"SELECT {box}")
    out = raw.cmd(
        "n",
        f"NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge))"
        f" (MAILBOXES {other} (MessageNew MessageExpunge))",
    )
    assert out == [b"n OK NOTIFY completed"]
    writer = _session(server)
    writer.cmd("w", f"SELECT {box}")
    writer.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    writer.cmd("e", "EXPUNGE")
    _append(writer, other)  # after the expunge: its STATUS is the next thing said
    line = raw.line()
    assert line.startswith(b'* STATUS "%s"' % other.encode()), line
    assert raw.cmd("x", "NOOP") == [b"* 1 EXPUNGE", b"x OK NOOP completed"]
    raw.close()
    writer.close()


def test_mailbox_names_and_subscriptions(server: Server) -> None:
    prefix = unique("tree")
    raw = _session(server)
    out = raw.cmd("n", f"NOTIFY SET (SUBTREE {prefix} (MailboxName SubscriptionChange))")
    assert out == [b"n OK NOTIFY completed"]
    writer = _session(server)
    writer.cmd("c", f"CREATE {prefix}/a")
    assert raw.line() == b'* LIST () "/" "%s"' % prefix.encode()  # the superior made too
    assert raw.line() == b'* LIST () "/" "%s/a"' % prefix.encode()
    writer.cmd("r", f"RENAME {prefix}/a {prefix}/b")
    assert raw.line() == b'* LIST () "/" "%s/b" ("OLDNAME" ("%s/a"))' % (
        prefix.encode(),
        prefix.encode(),
    )
    writer.cmd("u", f"SUBSCRIBE {prefix}/b")
    assert raw.line() == b'* LIST (\\Subscribed) "/" "%s/b"' % prefix.encode()
    writer.cmd("v", f"UNSUBSCRIBE {prefix}/b")
    assert raw.line() == b'* LIST () "/" "%s/b"' % prefix.encode()
    writer.cmd("d", f"DELETE {prefix}/b")
    assert raw.line() == b'* LIST (\\NonExistent) "/" "%s/b"' % prefix.encode()
    # this session's own changes are not told back (§5); another's still are, after
    own = raw.cmd("o", f"CREATE {prefix}/own")
    assert len(own) == 1 and re.fullmatch(rb"o OK \[MAILBOXID \(M\d+\)\] CREATE completed", own[0])
    writer.cmd("c2", f"CREATE {prefix}/theirs")
    assert raw.line() == b'* LIST () "/" "%s/theirs"' % prefix.encode()
    raw.close()
    writer.close()


def test_idle_hears_other_mailboxes(server: Server) -> None:
    watched = _box(server)
    raw = _session(server)
    raw.cmd("n", "NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
    raw.cmd("s", "SELECT INBOX")
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+")
    writer = _session(server)
    _append(writer, watched)
    assert raw.line().startswith(b'* STATUS "%s" (MESSAGES 2 ' % watched.encode())  # §4
    raw.send(b"DONE\r\n")
    assert raw.until(b"i")[-1] == b"i OK IDLE terminated"
    assert raw.cmd("z", "NOTIFY NONE") == [b"z OK NOTIFY completed"]
    raw.close()
    writer.close()


def test_refusals(server: Server) -> None:
    raw = _session(server)
    out = raw.cmd("a", "NOTIFY SET (SELECTED (MessageNew MessageExpunge AnnotationChange))")
    assert out == [
        b"a NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName"
        b" SubscriptionChange)] Unsupported NOTIFY event"
    ]
    assert raw.cmd("b", "NOTIFY SET (PERSONAL (Whatever))")[-1].startswith(b"b NO [BADEVENT")
    for bad in (
        "NOTIFY SET (SELECTED (MessageNew))",  # §5: with MessageExpunge only
        "NOTIFY SET (PERSONAL (FlagChange))",  # §5: needs the message events
        "NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)",  # §6.1: one SELECTED
        "NOTIFY SET (BOGUS (MailboxName))",
        "NOTIFY SET (MAILBOXES (MailboxName))",
        "NOTIFY SET (PERSONAL ())",
        "NOTIFY SET",
        "NOTIFY MAYBE",
        "NOTIFY NONE NONE",
    ):
        assert raw.cmd("c", bad)[-1].startswith(b"c BAD"), bad
    # §3.1: too many names to watch is NO [NOTIFICATIONOVERFLOW], not a session's burden
    names = " ".join(f"box{i}" for i in range(101))
    out = raw.cmd("e", f"NOTIFY SET (MAILBOXES ({names}) (MessageNew MessageExpunge))")
    assert out[-1].startswith(b"e NO [NOTIFICATIONOVERFLOW]"), out
    assert raw.cmd("d", "NOTIFY SET (PERSONAL NONE)") == [b"d OK NOTIFY completed"]
    raw.close()
