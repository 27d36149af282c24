"""Conformance gaps imaptest found: LIST-EXTENDED, LSUB, address SEARCH, MOVE into itself,
subscriptions that outlive mailboxes, INTERNALDATE zones, binary APPEND, QP, SORT keys."""

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
    _ok(raw.cmd("C", f"CREATE {top}x/deeper/still"))
    _ok(raw.cmd("S", f"SUBSCRIBE {top}/child"))
    _ok(raw.cmd("S", f"SUBSCRIBE {top}x/deeper/still"))
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


# -- subscriptions are names (RFC 9051 §6.3.7, RFC 5258 §3.4) ---------------------------


def test_subscription_outlives_delete_and_create_does_not_subscribe(server: Server) -> None:
    raw = _raw(server)
    top = unique("sub")
    for name in (f"{top}/a", f"{top}/b"):
        _ok(raw.cmd("C", f"CREATE {name}"))
    # RFC 9051 §6.3.4: CREATE subscribes nothing
    assert _ok(raw.cmd("L", f'LIST (SUBSCRIBED) "" "{top}/*"')) == []
    _ok(raw.cmd("S", f"SUBSCRIBE {top}/a"))
    _ok(raw.cmd("S", f"SUBSCRIBE {top}/b"))
    _ok(raw.cmd("D", f"DELETE {top}/a"))
    out = _ok(raw.cmd("L", f'LIST (SUBSCRIBED) "" "{top}/*"'))
    assert out == [
        f'* LIST (\\NonExistent \\Subscribed) "/" "{top}/a"'.encode(),
        f'* LIST (\\HasNoChildren \\Subscribed) "/" "{top}/b"'.encode(),
    ], out
    out = _ok(raw.cmd("M", f'LSUB "" "{top}/*"'))
    assert out == [f'* LSUB () "/" "{top}/a"'.encode(), f'* LSUB () "/" "{top}/b"'.encode()]
    assert _ok(raw.cmd("L", f'LIST "" "{top}/*"')) == [
        f'* LIST (\\HasNoChildren) "/" "{top}/b"'.encode()
    ]
    # a client's RENAME takes the subscription along
    _ok(raw.cmd("R", f"RENAME {top}/b {top}/c"))
    out = _ok(raw.cmd("M", f'LSUB "" "{top}/*"'))
    assert out == [f'* LSUB () "/" "{top}/a"'.encode(), f'* LSUB () "/" "{top}/c"'.encode()]
    _ok(raw.cmd("U", f"UNSUBSCRIBE {top}/a"))
    assert _ok(raw.cmd("M", f'LSUB "" "{top}/a"')) == []
    # RFC 5258 §3: RECURSIVEMATCH with only REMOTE is a syntax error
    assert raw.cmd("B", f'LIST (RECURSIVEMATCH REMOTE) "" "{top}"')[-1].startswith(b"B BAD")


# -- INTERNALDATE keeps the zone APPEND gave (RFC 9051 §2.3.3, §6.4.4) ------------------


def test_append_date_keeps_its_zone_and_search_uses_its_date(server: Server) -> None:
    raw = _raw(server)
    box = unique("zone")
    _ok(raw.cmd("C", f"CREATE {box}"))
    for date in ("17-Jul-1996 02:44:25 -0700", " 1-Mar-2024 23:30:00 -0200"):
        data = message(subject=date)
        raw.send(f'A APPEND {box} "{date}" {{{len(data)}+}}\r\n'.encode() + data + b"\r\n")
        _ok(raw.until(b"A"))
    _ok(raw.cmd("S", f"SELECT {box}"))
    out = _ok(raw.cmd("F", "FETCH 1:2 (INTERNALDATE)"))
    assert out == [
        b'* 1 FETCH (INTERNALDATE "17-Jul-1996 02:44:25 -0700")',
        b'* 2 FETCH (INTERNALDATE " 1-Mar-2024 23:30:00 -0200")',
    ], out
    # 23:30 -0200 is 2 March in UTC; the RFC compares the date disregarding the zone
    assert _ok(raw.cmd("Q", "SEARCH ON 1-Mar-2024")) == [b"* SEARCH 2"]
    assert _ok(raw.cmd("Q", "SEARCH ON 2-Mar-2024")) == [b"* SEARCH"]
    assert _ok(raw.cmd("Q", "SEARCH SINCE 17-Jul-1996 BEFORE 18-Jul-1996")) == [b"* SEARCH 1"]
    # COPY keeps it too
    _ok(raw.cmd("K", f"COPY 1 {box}"))
    out = _ok(raw.cmd("F", "FETCH 3 (INTERNALDATE)"))
    assert out[-1] == b'* 3 FETCH (INTERNALDATE "17-Jul-1996 02:44:25 -0700")', out


# -- binary APPEND and BINARY[] decoding (RFC 3516, RFC 9051 §4.3, RFC 2045 §6.7) ---------


def test_binary_append_with_nul_is_stored_base64(server: Server) -> None:
    raw = _raw(server)
    box = unique("nul")
    _ok(raw.cmd("C", f"CREATE {box}"))
    body = b"\x00-\xe4\r\n\r\n"
    data = (
        b"From: a@b.example\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + body
    )
    raw.send(f"A APPEND {box} ~{{{len(data)}+}}\r\n".encode() + data + b"\r\n")
    _ok(raw.until(b"A"))
    _ok(raw.cmd("S", f"SELECT {box}"))
    (line,) = _ok(raw.cmd("F", "FETCH 1 (BODY.PEEK[1])"))
    assert b"\x00" not in line and line.startswith(b"* 1 FETCH (BODY[1] "), line
    (line,) = _ok(raw.cmd("F", "FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])"))
    assert line == b"* 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n" + body + b")", line
    (line,) = _ok(raw.cmd("F", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (CONTENT-TRANSFER-ENCODING)])"))
    assert b"Content-Transfer-Encoding: base64" in line


def test_binary_quoted_printable_per_rfc_2045(server: Server) -> None:
    raw = _raw(server)
    box = unique("qp")
    _ok(raw.cmd("C", f"CREATE {box}"))
    encoded = b"hello  \r\nbar=\r\n\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar=3d=3D\r\n"
    data = message(
        body="--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable"
        "\r\n\r\n" + encoded.decode() + "\r\n--b--\r\n",
        extra="MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n",
    )
    _append(raw, box, data)
    _ok(raw.cmd("S", f"SELECT {box}"))
    expected = b"hello\r\nbar\r\nfoo\t \tb\r\nfoo bar==\r\n"
    (line,) = _ok(raw.cmd("F", "FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])"))
    assert line == b"* 1 FETCH (BINARY.SIZE[1] %d BINARY[1] {%d}\r\n%s)" % (
        len(expected),
        len(expected),
        expected,
    ), line
    (line,) = _ok(raw.cmd("F", "FETCH 1 (BINARY.PEEK[1]<10.10>)"))
    assert line == b"* 1 FETCH (BINARY[1]<10> {10}\r\n" + expected[10:20] + b")", line


# -- SORT keys (RFC 5256 §2.1, §3) ------------------------------------------------------


def test_sort_by_base_subject_and_first_cc(server: Server) -> None:
    raw = _raw(server)
    box = unique("sort")
    _ok(raw.cmd("C", f"CREATE {box}"))
    rows = [
        ("_", "user2@d2.example"),
        ("[xyz]", "user2: blah@d1.example;"),
        ("Re: [FWD: c]", "user1@d1.example"),
        ("re: [fwd: [fwd: re: [fwd: babylon]]]", "zed@d.example"),
        ("=?iso-8859-1?q?RE:_b?=", "a@d.example"),
    ]
    for subject, cc in rows:
        _append(raw, box, message(subject=subject, extra=f"Cc: {cc}\r\n"))
    _ok(raw.cmd("S", f"SELECT {box}"))
    # B, BABYLON, C, [XYZ], _: i;ascii-casemap puts "[" and "_" after the letters
    assert _ok(raw.cmd("O", "SORT (SUBJECT) US-ASCII ALL")) == [b"* SORT 5 4 3 2 1"]
    assert _ok(raw.cmd("O", "SORT (REVERSE SUBJECT) US-ASCII ALL")) == [b"* SORT 1 2 3 4 5"]
    # the first CC address of 2 is the group "user2": it ties with 1, sequence decides
    assert _ok(raw.cmd("O", "SORT (CC) US-ASCII ALL")) == [b"* SORT 5 3 1 2 4"]
    assert _ok(raw.cmd("O", "SORT (CC REVERSE ARRIVAL) US-ASCII ALL")) == [b"* SORT 5 3 2 1 4"]
