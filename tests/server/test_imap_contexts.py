"""ESORT, CONTEXT=SEARCH, CONTEXT=SORT (RFC 5267) and SORT=DISPLAY (RFC 5957) as
transcripts over real sockets: exact ESEARCH responses, a second session's changes
arriving as ADDTO/REMOVEFROM, and BAD for what the grammar refuses."""

from __future__ import annotations

from tests.conftest import Server
from tests.server.imap_helpers import RawImap, imap, message, unique


def _box(server: Server, n: int = 5, *, senders: list[str] | None = None) -> str:
    """A mailbox of ``n`` messages with subjects s1..sn (arrival order = UID order)."""
    box = unique("ctx")
    client = imap(server)
    assert client.create(box)[0] == "OK"
    for i in range(1, n + 1):
        sender = senders[i - 1] if senders else "alice@example.test"
        assert client.append(box, None, None, message(f"s{i}", sender=sender))[0] == "OK"
    client.logout()
    return box


def _session(server: Server, box: str) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    raw.login()
    assert raw.cmd("S", f"SELECT {box}")[-1].startswith(b"S OK")
    return raw


def test_capabilities(server: Server) -> None:
    raw = RawImap(server.ports["imaps"])
    raw.login()
    caps = raw.cmd("c", "CAPABILITY")[0].split()
    for cap in (b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"SORT=DISPLAY"):
        assert cap in caps
    raw.close()


def test_esort_return_options(server: Server) -> None:
    raw = _session(server, _box(server))
    assert raw.cmd("a", "SORT RETURN (MIN) (ARRIVAL) US-ASCII 1:5") == [
        b'* ESEARCH (TAG "a") MIN 1',
        b"a OK SORT completed",
    ]
    assert raw.cmd("b", "SORT RETURN (MAX COUNT) (REVERSE ARRIVAL) US-ASCII 2:4")[0] == (
        b'* ESEARCH (TAG "b") MAX 2 COUNT 3'  # RFC 5267 §3.1: last in sort order
    )
    # RFC 5267 §3.2: ALL keeps the sort order; only ascending runs become ranges
    assert raw.cmd("c", "SORT RETURN (ALL) (REVERSE ARRIVAL) US-ASCII ALL")[0] == (
        b'* ESEARCH (TAG "c") ALL 5,4,3,2,1'
    )
    assert raw.cmd("d", "SORT RETURN () (ARRIVAL) US-ASCII ALL")[0] == (
        b'* ESEARCH (TAG "d") ALL 1:5'
    )
    assert raw.cmd("e", "UID SORT RETURN (COUNT) (ARRIVAL) UTF-8 NOT ALL") == [
        b'* ESEARCH (TAG "e") UID COUNT 0',
        b"e OK SORT completed",
    ]
    raw.close()


def test_partial_search_and_sort(server: Server) -> None:
    raw = _session(server, _box(server))
    assert raw.cmd("a", "SEARCH RETURN (PARTIAL 2:4) ALL")[0] == (
        b'* ESEARCH (TAG "a") PARTIAL (2:4 2:4)'
    )
    assert raw.cmd("b", "SEARCH RETURN (PARTIAL 4:2) 1:2,4:5")[0] == (
        b'* ESEARCH (TAG "b") PARTIAL (2:4 2,4:5)'  # RFC 5267 §4.4: either order
    )
    assert raw.cmd("c", "SEARCH RETURN (PARTIAL 6:9) ALL")[0] == (
        b'* ESEARCH (TAG "c") PARTIAL (6:9 NIL)'
    )
    assert raw.cmd("d", "SORT RETURN (PARTIAL 2:3 COUNT) (REVERSE ARRIVAL) US-ASCII ALL")[0] == (
        b'* ESEARCH (TAG "d") COUNT 5 PARTIAL (2:3 4,3)'
    )
    for bad in ("PARTIAL 1", "PARTIAL 1:*", "PARTIAL 0:3", "PARTIAL 1:2 ALL", "BOGUS"):
        out = raw.cmd("x", f"SEARCH RETURN ({bad}) ALL")
        assert out[-1].startswith(b"x BAD"), (bad, out)
    raw.close()


def test_sort_display(server: Server) -> None:
    senders = [
        '"Zed" <a@example.test>',
        "b@example.test",
        '"Adam" <z@example.test>',
        '"carl" <c@example.test>',
        "x@example.test",
    ]
    raw = _session(server, _box(server, senders=senders))
    # RFC 5957 §3: the display name, else the address; case-insensitive
    assert raw.cmd("a", "SORT (DISPLAYFROM) UTF-8 ALL")[0] == b"* SORT 3 2 4 5 1"
    assert raw.cmd("b", "SORT (REVERSE DISPLAYFROM) UTF-8 ALL")[0] == b"* SORT 1 5 4 2 3"
    raw.close()


def test_search_update_sees_own_and_other_sessions(server: Server) -> None:
    box = _box(server)
    raw = _session(server, box)
    assert raw.cmd("u1", "SEARCH RETURN (UPDATE) SEEN") == [
        b'* ESEARCH (TAG "u1")',
        b"u1 OK SEARCH completed",
    ]
    out = raw.cmd("a", "STORE 1,2,4 +FLAGS.SILENT (\\Seen)")
    assert out == [b'* ESEARCH (TAG "u1") ADDTO (0 1:2,4)', b"a OK STORE completed"]
    # a second session's change reaches this one at its next command
    other = _session(server, box)
    assert other.cmd("o", "STORE 2 -FLAGS.SILENT (\\Seen)")[-1].startswith(b"o OK")
    out = raw.cmd("b", "NOOP")
    assert b'* ESEARCH (TAG "u1") REMOVEFROM (0 2)' in out
    # RFC 5267 §4.3.4: REMOVEFROM of expunged messages comes before their EXPUNGE
    assert raw.cmd("c", "STORE 4 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"c OK")
    out = raw.cmd("d", "EXPUNGE")
    assert out == [
        b'* ESEARCH (TAG "u1") REMOVEFROM (0 4)',
        b"* 4 EXPUNGE",
        b"d OK EXPUNGE completed",
    ]
    # RFC 5267 §4.3.3: ADDTO after EXISTS for a new message
    assert other.cmd("p", f"APPEND {box} (\\Seen) {{4+}}\r\nhi\r\n")[-1].startswith(b"p OK")
    out = raw.cmd("e", "NOOP")
    exists = out.index(b"* 5 EXISTS")
    assert out.index(b'* ESEARCH (TAG "u1") ADDTO (0 5)') > exists
    # tag reuse is BAD; CANCELUPDATE stops the updates
    assert raw.cmd("u1", "SEARCH RETURN (UPDATE) ALL")[-1].startswith(b"u1 BAD")
    assert raw.cmd("f", 'CANCELUPDATE "u1"') == [b"f OK CANCELUPDATE completed"]
    assert raw.cmd("g", "STORE 2 +FLAGS.SILENT (\\Seen)") == [b"g OK STORE completed"]
    assert raw.cmd("h", 'CANCELUPDATE "u1"')[-1].startswith(b"h NO")
    assert raw.cmd("i", "CANCELUPDATE u1")[-1].startswith(b"i BAD")  # quoted tags only
    raw.close()
    other.close()


def test_sort_update_positions(server: Server) -> None:
    box = _box(server)
    raw = _session(server, box)
    first = raw.cmd("u", "UID SORT RETURN (UPDATE ALL) (REVERSE ARRIVAL) UTF-8 UNSEEN")[0]
    uids = [int(x) for x in first.rsplit(b" ", 1)[1].split(b",")]
    assert len(uids) == 5 and uids == sorted(uids, reverse=True)
    # removing the 2nd and 3rd in sort order: one run at position 2, in sort order
    out = raw.cmd("a", "STORE 3:4 +FLAGS.SILENT (\\Seen)")
    assert out[0] == b'* ESEARCH (TAG "u") UID REMOVEFROM (2 %d,%d)' % (uids[1], uids[2])
    # and back: inserted at position 2 again
    out = raw.cmd("b", "STORE 3:4 -FLAGS.SILENT (\\Seen)")
    assert out[0] == b'* ESEARCH (TAG "u") UID ADDTO (2 %d,%d)' % (uids[1], uids[2])
    raw.close()


def test_context_limit_is_noupdate(server: Server) -> None:
    raw = _session(server, _box(server, 1))
    for i in range(8):
        assert raw.cmd(f"t{i}", "SEARCH RETURN (UPDATE) ALL")[-1].startswith(b"t")
    out = raw.cmd("t9", "SEARCH RETURN (UPDATE COUNT) ALL")
    assert out == [
        b'* ESEARCH (TAG "t9") COUNT 1',
        b'* NO [NOUPDATE "t9"] Too many updating contexts',
        b"t9 OK SEARCH completed",
    ]
    # contexts end with the selection (RFC 5267 §4.3): a new SELECT starts with none
    raw.cmd("s", "UNSELECT")
    raw.cmd("s2", "SELECT INBOX")
    assert raw.cmd("t0", "SEARCH RETURN (UPDATE) ALL")[-1] == b"t0 OK SEARCH completed"
    raw.close()
