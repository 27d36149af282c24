"""Conformance gaps imaptest found: LIST-EXTENDED, LSUB, address SEARCH, MOVE into itself."""

from __future__ import annotations

import re

from tests.conftest import Server
from tests.server.imap_helpers import RawImap, message, unique


def _raw(server: Server) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    raw.login()
    return raw


def _ok(lines: list[bytes]) -> list[bytes]:
    assert re.match(rb"\S+ OK", lines[-1]), lines
    return lines[:-1]


def _append(raw: RawImap, box: str, data: bytes) -> None:
    raw.send(b"A APPEND " + box.encode() + b" {%d+}\r\n" % len(data) + data + b"\r\n")
    _ok(raw.until(b"A"))


# -- LIST-EXTENDED (RFC 5258) ---------------------------------------------------------


def test_list_recursivematch_childinfo(server: Server) -> None:
    raw = _raw(server)
    top = unique("rm")
    for name in (top, f"{top}/kid", f"{top}/kid/grand", f"{top}/plain"):
        _ok(raw.cmd("C", f"CREATE {name}"))
        _ok(raw.cmd("U", f"UNSUBSCRIBE {name}"))
    _ok(raw.cmd("S", f"SUBSCRIBE {top}/kid/grand"))
    out = _ok(raw.cmd("L", f'LIST (SUBSCRIBED RECURSIVEMATCH) "" "{top}/%"'))
    # RFC 5258 §3.5: the parent is listed for its subscribed descendant, with CHILDINFO
    assert len(out) == 1, out
    assert out[0].startswith(b"* LIST ("), out
    assert b"\\Subscribed" not in out[0]
    assert out[0].endswith(f'"{top}/kid" ("CHILDINFO" ("SUBSCRIBED"))'.encode()), out
    # a subscribed match is listed with \Subscribed and also its CHILDINFO when any
    _ok(raw.cmd("S", f"SUBSCRIBE {top}/kid"))
    out = _ok(raw.cmd("L", f'LIST (SUBSCRIBED RECURSIVEMATCH) "" "{top}/%"'))
    assert len(out) == 1 and b"\\Subscribed" in out[0], out
    assert b'("CHILDINFO" ("SUBSCRIBED"))' in out[0]
    # "*" already lists the subscribed descendant: no redundant line for the parent
    _ok(raw.cmd("U", f"UNSUBSCRIBE {top}/kid"))
    out = _ok(raw.cmd("L", f'LIST (SUBSCRIBED RECURSIVEMATCH) "" "{top}*"'))
    assert out == [f'* LIST (\\HasNoChildren \\Subscribed) "/" "{top}/kid/grand"'.encode()], out
    # RECURSIVEMATCH alone is a syntax error (RFC 5258 §3)
    assert raw.cmd("B", f'LIST (RECURSIVEMATCH) "" "{top}/%"')[-1].startswith(b"B BAD")


def test_list_subscribed_return_option(server: Server) -> None:
    raw = _raw(server)
    top = unique("rs")
    _ok(raw.cmd("C", f"CREATE {top}/a"))
    _ok(raw.cmd("C", f"CREATE {top}/b"))
    _ok(raw.cmd("U", f"UNSUBSCRIBE {top}/b"))
    _ok(raw.cmd("S", f"SUBSCRIBE {top}/a"))
    out = _ok(raw.cmd("L", f'LIST "" "{top}/%" RETURN (SUBSCRIBED)'))
    by_name = {line.rsplit(b" ", 1)[1].strip(b'"').decode(): line for line in out}
    assert b"\\Subscribed" in by_name[f"{top}/a"], out
    assert b"\\Subscribed" not in by_name[f"{top}/b"], out


# -- LSUB (RFC 3501 §6.3.9) -----------------------------------------------------------


def test_lsub_percent_hides_subscribed_child(server: Server) -> None:
    raw = _raw(server)
    top = unique("ls")
    _ok(raw.cmd("C", f"CREATE {top}/child"))
    _ok(raw.cmd("U", f"UNSUBSCRIBE {top}"))
    _ok(raw.cmd("C", f"CREATE {top}x/deeper/still"))
    for name in (f"{top}x", f"{top}x/deeper"):
        _ok(raw.cmd("U", f"UNSUBSCRIBE {name}"))
    _ok(raw.cmd("S", f"SUBSCRIBE {top}/child"))
    out = _ok(raw.cmd("M", f'LSUB "" "{top}%"'))
    assert out == [
        f'* LSUB (\\Noselect) "/" "{top}"'.encode(),
        f'* LSUB (\\Noselect) "/" "{top}x"'.encode(),
    ], out
    out = _ok(raw.cmd("M", f'LSUB "" "{top}x/%"'))
    assert out == [f'* LSUB (\\Noselect) "/" "{top}x/deeper"'.encode()], out
    out = _ok(raw.cmd("M", f'LSUB "" "{top}*"'))
    assert out == [
        f'* LSUB () "/" "{top}/child"'.encode(),
        f'* LSUB () "/" "{top}x/deeper/still"'.encode(),
    ], out


# -- SEARCH on address headers (RFC 9051 §6.4.4) --------------------------------------


def test_search_addresses_with_names_and_comments(server: Server) -> None:
    raw = _raw(server)
    box = unique("sa")
    _ok(raw.cmd("C", f"CREATE {box}"))
    _append(raw, box, message(sender='"Real From" <user-from@domain.org>', to="x@y.test"))
    _append(raw, box, message(sender="user-from @ domain.org (Comment Name)", to="x@y.test"))
    _append(raw, box, message(sender="=?utf-8?q?J=C3=B6rg?= <jorg@domain.org>", to="x@y.test"))
    _append(raw, box, message(sender="other@else.test", to='"Real To" <user-to@domain.org>'))
    _ok(raw.cmd("S", f"SELECT {box}"))
    cases: dict[str | bytes, bytes] = {
        "FROM user-from@domain.org": b"1 2",
        'FROM "Real From"': b"1",
        'FROM "Real From <user-from@domain.org>"': b"1",
        'FROM "comment name"': b"2",
        "FROM user-fr": b"1 2",
        "FROM Jörg".encode(): b"3",
        'TO "real to <user-to"': b"4",
        "CC anything": b"",
    }
    for query, expected in cases.items():
        q = query if isinstance(query, bytes) else query.encode()
        if any(b > 127 for b in q):
            q = b"CHARSET UTF-8 " + q.replace(b"J\xc3\xb6rg", b"{5+}\r\nJ\xc3\xb6rg")
        out = _ok(raw.cmd("Q", b"SEARCH " + q))
        assert out == [(b"* SEARCH " + expected).rstrip()], (query, out)


# -- MOVE/COPY into the selected mailbox (RFC 6851 §4.4) ------------------------------


def test_copy_and_move_into_selected_mailbox(server: Server) -> None:
    raw = _raw(server)
    box = unique("mv")
    _ok(raw.cmd("C", f"CREATE {box}"))
    for i in range(2):
        _append(raw, box, message(subject=f"m{i}"))
    _ok(raw.cmd("S", f"SELECT {box}"))
    out = _ok(raw.cmd("K", f"COPY 1 {box}"))
    assert b"* 3 EXISTS" in out, out
    out = _ok(raw.cmd("V", f"MOVE 1 {box}"))
    # RFC 6851 §4.4: EXPUNGE for the source, EXISTS for the new copy, consistent numbers
    assert b"* 1 EXPUNGE" in out and b"* 3 EXISTS" in out, out
    assert out.index(b"* 1 EXPUNGE") < out.index(b"* 3 EXISTS"), out
    out = _ok(raw.cmd("F", "FETCH 1:* (UID)"))
    assert [int(re.search(rb"UID (\d+)", line).group(1)) for line in out] == [2, 3, 4], out  # type: ignore[union-attr]
    # the same under QRESYNC: VANISHED instead of EXPUNGE
    raw = _raw(server)
    _ok(raw.cmd("E", "ENABLE QRESYNC"))
    _ok(raw.cmd("S", f"SELECT {box}"))
    out = _ok(raw.cmd("W", f"UID MOVE 2 {box}"))
    assert b"* VANISHED 2" in out and b"* 3 EXISTS" in out, out
    assert out.index(b"* VANISHED 2") < out.index(b"* 3 EXISTS")
