"""imaplib end to end against a real server: every command group, over real sockets."""

from __future__ import annotations

import base64
import imaplib
import re
import zlib

import pytest

from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.imap_helpers import RawImap, imap, message, unique

ALICE = "alice@example.test"


def _ok(result: tuple[str, list[object]]) -> list[object]:
    typ, data = result
    assert typ == "OK", data
    return data


def _fill(client: imaplib.IMAP4, box: str, messages: list[bytes], flags: str = "") -> None:
    _ok(client.create(box))
    for m in messages:
        _ok(client.append(box, flags or None, None, m))


# -- authentication -------------------------------------------------------------------


def test_logindisabled_until_starttls(server: Server) -> None:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    assert "LOGINDISABLED" in client.capabilities
    assert "STARTTLS" in client.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        client.login(ALICE, PASSWORDS[ALICE])
    client.starttls(client_tls())
    assert "LOGINDISABLED" not in client.capabilities
    assert "AUTH=PLAIN" in client.capabilities
    _ok(client.login(ALICE, PASSWORDS[ALICE]))
    client.logout()


def test_sasl_ir_and_challenge(server: Server) -> None:
    raw = RawImap(server.ports["imaps"])
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
    out = raw.cmd("a1", f"AUTHENTICATE PLAIN {token}")  # RFC 4959 initial response
    assert out[-1].startswith(b"a1 OK"), out
    raw.close()
    raw = RawImap(server.ports["imaps"])
    raw.send(b"a2 AUTHENTICATE PLAIN\r\n")
    assert raw.line().startswith(b"+")
    raw.send(base64.b64encode(f"\0{ALICE}\0wrong".encode()) + b"\r\n")
    assert b"[AUTHENTICATIONFAILED]" in raw.until(b"a2")[-1]
    raw.send(b"a3 AUTHENTICATE PLAIN\r\n")
    raw.line()
    raw.send(b"*\r\n")
    assert raw.until(b"a3")[-1].startswith(b"a3 BAD")
    raw.close()


def test_wrong_password_is_no_with_code(server: Server) -> None:
    client = imap(server, login=False)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(ALICE, "nope")
    _ok(client.login(ALICE, PASSWORDS[ALICE]))
    client.logout()


# -- mailboxes --------------------------------------------------------------------------


def test_select_and_examine_responses(server: Server) -> None:
    client = imap(server)
    box = unique()
    _fill(client, box, [message("one"), message("two")])
    typ, data = client.select(box)
    assert (typ, data) == ("OK", [b"2"])
    assert client.untagged_responses.get("FLAGS")
    for code in ("UIDVALIDITY", "UIDNEXT", "PERMANENTFLAGS", "HIGHESTMODSEQ"):
        assert client.response(code)[1][0] is not None, code
    assert client.response("RECENT")[1] == [b"2"]
    assert client.response("READ-WRITE")[1] == [b""]
    typ, data = client.select(box, readonly=True)
    assert typ == "OK"
    assert client.response("READ-ONLY")[1] == [b""]
    assert client.store("1", "+FLAGS", "\\Seen")[0] == "NO"
    typ, data = client.select("no-such-box")
    assert typ == "NO" and b"NONEXISTENT" in data[0]  # type: ignore[operator]
    client.logout()


def test_create_rename_delete_and_inbox(server: Server) -> None:
    client = imap(server)
    base = unique("tree")
    _ok(client.create(f"{base}/a/b"))
    names = [
        line.decode().rsplit(" ", 1)[-1].strip('"')
        for line in _ok(client.list('""', f"{base}*"))  # type: ignore[union-attr]
    ]
    assert f"{base}/a/b" in names
    _ok(client.rename(f"{base}/a", f"{base}/z"))
    listing = b"\n".join(_ok(client.list('""', f"{base}/*")))  # type: ignore[arg-type]
    assert b"/z/b" in listing and b"/a/b" not in listing
    assert client.create("INBOX")[0] == "NO"
    assert client.create(f"{base}/z")[0] == "NO"  # ALREADYEXISTS
    # RFC 9051 §6.3.6: renaming INBOX moves its messages, INBOX stays (empty).
    bob = imap(server, "bob@example.test")
    _ok(bob.append("INBOX", None, None, message("for rename")))
    moved = unique("old-inbox")
    _ok(bob.rename("INBOX", moved))
    assert bob.select("INBOX")[1] == [b"0"]
    assert int(bob.select(moved)[1][0]) >= 1  # type: ignore[arg-type]
    bob.logout()
    _ok(client.delete(f"{base}/z/b"))
    assert client.delete("no-such-mailbox")[0] == "NO"
    client.logout()


def test_list_extended_status_special_use(server: Server) -> None:
    client = imap(server)
    box = unique("sub")
    _ok(client.create(box))
    _ok(client.subscribe(box))
    typ, _ = client._simple_command(
        "LIST", "(SUBSCRIBED)", '""', "*", "RETURN", "(CHILDREN STATUS (MESSAGES UIDNEXT))"
    )
    assert typ == "OK"
    lists = client.untagged_responses.pop("LIST", [])
    statuses = client.untagged_responses.pop("STATUS", [])
    assert any(box.encode() in line and b"\\Subscribed" in line for line in lists)
    assert any(box.encode() in s and b"MESSAGES 0" in s for s in statuses)  # type: ignore[operator]
    typ, _data = client._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
    lists = client.untagged_responses.pop("LIST", [])
    uses = {re.search(rb"\\(Sent|Drafts|Junk|Trash|Archive)\b", line) is not None for line in lists}
    assert uses == {True} and len(lists) == 5
    lsub = _ok(client.lsub('""', "*"))
    assert any(box.encode() in line for line in lsub)  # type: ignore[operator]
    _ok(client.unsubscribe(box))
    assert not any(box.encode() in (line or b"") for line in _ok(client.lsub('""', "*")))  # type: ignore[operator]
    # RFC 9051 §6.3.9: empty pattern gives the delimiter
    assert _ok(client.list('""', '""')) == [b'(\\Noselect) "/" ""']
    client.logout()


def test_status_items(server: Server) -> None:
    client = imap(server)
    box = unique()
    _fill(client, box, [message("a"), message("b")])
    _ok(client.append(box, "(\\Seen)", None, message("c")))
    data = _ok(client.status(box, "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE)"))
    text = data[0].decode()  # type: ignore[union-attr]
    assert "MESSAGES 3" in text and "UNSEEN 2" in text and "UIDNEXT 4" in text
    assert re.search(r"SIZE \d+", text) and re.search(r"HIGHESTMODSEQ \d+", text)
    assert client.status("nope", "(MESSAGES)")[0] == "NO"
    client.logout()


def test_namespace_id_enable_capability(server: Server) -> None:
    client = imap(server)
    assert _ok(client.namespace()) == [b'(("" "/")) (("Other Users/" "/")) NIL']
    typ, _ = client.xatom("ID", '("name" "pytest")')
    assert typ == "OK" and client.untagged_responses.pop("ID")
    typ, _data = client._simple_command("ENABLE", "CONDSTORE", "UNKNOWN")
    assert typ == "OK"
    assert client.untagged_responses.pop("ENABLED") == [b"CONDSTORE"]
    caps = client.capability()[1][0].split()  # type: ignore[union-attr]
    for cap in (b"QRESYNC", b"LIST-STATUS", b"ESEARCH", b"MOVE", b"COMPRESS=DEFLATE"):
        assert cap in caps
    client.logout()


# -- APPEND ------------------------------------------------------------------------------


def test_append_appenduid_and_multiappend(server: Server) -> None:
    client = imap(server)
    box = unique()
    _ok(client.create(box))
    typ, data = client.append(box, "(\\Flagged $Work)", '"05-Feb-2024 13:14:15 +0100"', message())
    m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])  # type: ignore[arg-type]
    assert typ == "OK" and m and m.group(2) == b"1"
    raw = RawImap(server.ports["imaps"])
    raw.login()
    one, two = message("m1"), message("m2")
    # RFC 3502 MULTIAPPEND with LITERAL+ (RFC 7888)
    raw.send(
        f"a APPEND {box} (\\Seen) {{{len(one)}+}}\r\n".encode()
        + one
        + f" {{{len(two)}+}}\r\n".encode()
        + two
        + b"\r\n"
    )
    out = raw.until(b"a")
    assert re.search(rb"a OK \[APPENDUID \d+ 2:3\]", out[-1]), out
    out = raw.cmd("b", f"APPEND nowhere {{{len(one)}+}}\r\n".encode() + one)
    assert b"[TRYCREATE]" in out[-1]
    raw.close()
    client.select(box)
    data = _ok(client.fetch("1:*", "(FLAGS INTERNALDATE)"))
    # RFC 9051 §2.3.3: the date comes back in the zone APPEND gave
    assert b"$Work" in data[0] and b'" 5-Feb-2024 13:14:15 +0100"' in data[0]  # type: ignore[operator]
    assert b"\\Seen" in data[1] and b"\\Seen" not in data[2]  # type: ignore[operator]
    client.logout()


def test_append_to_inbox_in_any_case_names_the_selected_uidvalidity(server: Server) -> None:
    """INBOX is taken without a look before the "+" (it always exists): APPEND in any
    case of the name files the message there, and APPENDUID names INBOX's UIDVALIDITY."""
    client = imap(server)
    typ, data = client.append("iNbOx", None, None, message("to inbox"))
    m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])  # type: ignore[arg-type]
    assert typ == "OK" and m, data
    _ok(client.select("INBOX"))
    typ, got = client.response("UIDVALIDITY")
    assert got == [m.group(1)]
    fetched = _ok(client.uid("FETCH", m.group(2).decode(), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert b"to inbox" in fetched[0][1]  # type: ignore[index]
    client.logout()


# -- FETCH -------------------------------------------------------------------------------

MULTIPART = (
    b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.test>\r\n"
    b"To: bob@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b"Date: Tue, 02 Jan 2024 10:00:00 +0000\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n"
    b"--XX\r\nContent-Type: application/octet-stream; name=bin.dat\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"\x00\x01binary\x00") + b"\r\n"
    b"--XX--\r\n"
)


@pytest.fixture(scope="module")
def fetchbox(server: Server) -> str:
    client = imap(server)
    box = unique("fetch")
    _fill(client, box, [message("plain", "line one\r\nline two\r\n"), MULTIPART])
    client.logout()
    return box


def test_fetch_metadata_and_structure(server: Server, fetchbox: str) -> None:
    client = imap(server)
    client.select(fetchbox, readonly=True)
    data = _ok(
        client.fetch("1:2", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODY BODYSTRUCTURE)")
    )
    first, second = data[0], data[1]
    assert re.search(rb"RFC822\.SIZE \d+", first)  # type: ignore[arg-type]
    assert b'"plain"' in first and b'("text" "plain"' in first  # type: ignore[operator]
    assert b'"=?utf-8?q?J=C3=B6rg?="' in second  # type: ignore[operator]
    assert b'"mixed"' in second and b'"quoted-printable"' in second  # type: ignore[operator]
    client.logout()


def test_fetch_sections_partial_binary_rfc822(server: Server, fetchbox: str) -> None:
    client = imap(server)
    client.select(fetchbox)
    typ, data = client.fetch(
        "2", "(BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[2]<4.6>)"
    )
    parts = {
        re.search(rb"(BODY\[[^\]]*\](?:<\d+>)?) \{", k).group(1): v  # type: ignore[union-attr]
        for k, v in data[:-1]  # type: ignore[misc]
    }
    assert parts[b"BODY[1]"] == b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln"
    assert b"quoted-printable" in parts[b"BODY[1.MIME]"]
    assert parts[b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: parts\r\n\r\n"
    assert parts[b"BODY[2]<4>"] == base64.b64encode(b"\x00\x01binary\x00")[4:10]
    typ, data = client.fetch("2", "(BINARY.PEEK[1] BINARY.SIZE[2])")
    assert data[0][1] == "Grüße aus Köln".encode()  # type: ignore[index]
    assert b"BINARY.SIZE[2] 9" in data[1]  # type: ignore[operator]
    raw = RawImap(server.ports["imaps"])
    raw.login()
    raw.cmd("s", f"EXAMINE {fetchbox}")
    out = raw.cmd("f", "FETCH 2 BINARY.PEEK[2]")
    assert b"~{9}\r\n\x00\x01binary\x00" in out[0]  # RFC 3516 literal8 for NUL
    raw.close()
    typ, data = client.fetch("1", "(RFC822.HEADER)")
    assert data[0][1].startswith(b"From: ")  # type: ignore[index]
    assert b"\\Seen" not in _ok(client.fetch("1", "FLAGS"))[0]  # type: ignore[operator]
    typ, data = client.fetch("1", "(RFC822.TEXT)")  # sets \Seen (RFC 3501 §6.4.5)
    assert data[0][1] == b"line one\r\nline two\r\n"  # type: ignore[index]
    assert b"\\Seen" in b" ".join(_ok(client.fetch("1", "FLAGS")))  # type: ignore[arg-type]
    typ, data = client.fetch("1", "(RFC822)")
    assert data[0][1].endswith(b"line two\r\n")  # type: ignore[index]
    typ, data = client.fetch("1", "BODY[5]")  # a missing section is empty
    assert typ == "OK"
    client.logout()


def test_fetch_bad_syntax_is_bad(server: Server, fetchbox: str) -> None:
    client = imap(server)
    client.select(fetchbox)
    with pytest.raises(imaplib.IMAP4.error):
        client.fetch("1", "(NOSUCHITEM)")
    with pytest.raises(imaplib.IMAP4.error):
        client.fetch("0", "FLAGS")
    assert _ok(client.noop())
    client.logout()


# -- SEARCH / SORT / THREAD ---------------------------------------------------------------


@pytest.fixture(scope="module")
def searchbox(server: Server) -> str:
    client = imap(server)
    box = unique("search")
    msgs = [
        message("apple pie", "nothing special\r\n", sender="carol@example.test"),
        message("banana", "the word zebrafish appears\r\n"),
        message("Re: apple pie", "reply", extra="In-Reply-To: <nope@x>\r\n"),
        message(
            "=?utf-8?q?K=C3=A4se?=",
            "Grüße\r\n",
            extra="Content-Type: text/plain; charset=utf-8\r\n",
        ),
    ]
    _fill(client, box, msgs)
    client.select(box)
    client.store("2", "+FLAGS", "(\\Flagged)")
    client.logout()
    return box


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (("ALL",), b"1 2 3 4"),
        (("SUBJECT", "apple"), b"1 3"),
        (("FROM", "carol"), b"1"),
        (("BODY", "ZEBRAFISH"), b"2"),
        (("TEXT", "zebra"), b"2"),
        (("FLAGGED",), b"2"),
        (("NOT", "FLAGGED"), b"1 3 4"),
        (("OR", "FLAGGED", "FROM", "carol"), b"1 2"),
        (("LARGER", "1"), b"1 2 3 4"),
        (("SENTON", "1-Jan-2024"), b"1 2 3 4"),
        (("2:3",), b"2 3"),
        (("UID", "4"), b"4"),
        (("HEADER", "In-Reply-To", "nope"), b"3"),
        (("KEYWORD", "$none"), b""),
    ],
)
def test_search_keys(
    server: Server, searchbox: str, criteria: tuple[str, ...], expected: bytes
) -> None:
    client = imap(server)
    client.select(searchbox, readonly=True)
    assert _ok(client.search(None, *criteria)) == [expected]
    client.logout()


def test_search_charset_esearch_searchres(server: Server, searchbox: str) -> None:
    client = imap(server)
    client.select(searchbox, readonly=True)
    client.literal = "Käse".encode()
    assert _ok(client.search("UTF-8", "SUBJECT")) == [b"4"]
    client.literal = "grüße".encode()
    assert _ok(client.search("UTF-8", "BODY")) == [b"4"]
    assert client.search("X-NOPE", "ALL")[0] == "NO"  # BADCHARSET
    typ, _ = client.uid("SEARCH", "RETURN (MIN MAX COUNT) SUBJECT apple")
    line = client.untagged_responses.pop("ESEARCH")[0]
    assert b"UID" in line and b"MIN 1" in line and b"MAX 3" in line and b"COUNT 2" in line  # type: ignore[operator]
    typ, _ = client._simple_command("SEARCH", "RETURN (SAVE)", "FLAGGED")
    assert typ == "OK"
    data = _ok(client.fetch("$", "(UID)"))
    assert data == [b"2 (UID 2)"]
    client.logout()


def test_sort_and_thread(server: Server, searchbox: str) -> None:
    client = imap(server)
    client.select(searchbox, readonly=True)
    assert _ok(client.sort("(SUBJECT)", "UTF-8", "ALL")) == [b"1 3 2 4"]
    assert _ok(client.sort("(REVERSE ARRIVAL)", "UTF-8", "ALL")) == [b"4 3 2 1"]
    assert _ok(client.sort("(FROM)", "UTF-8", "ALL")) == [b"2 3 4 1"]  # alice < carol
    data = _ok(client.thread("ORDEREDSUBJECT", "UTF-8", "ALL"))
    assert data == [b"(1 3)(2)(4)"]
    data = _ok(client.thread("REFERENCES", "UTF-8", "ALL"))
    assert b"(1 3)" in data[0]  # type: ignore[operator]
    client.logout()


# -- STORE / COPY / MOVE / EXPUNGE ----------------------------------------------------------


def test_store_forms_and_unchangedsince(server: Server) -> None:
    client = imap(server)
    box = unique()
    _fill(client, box, [message("a"), message("b")])
    client.select(box)
    assert b"\\Flagged" in _ok(client.store("1", "+FLAGS", "(\\Flagged)"))[0]  # type: ignore[operator]
    assert _ok(client.store("1", "+FLAGS.SILENT", "(\\Seen)")) == [None]
    data = _ok(client.store("1", "-FLAGS", "(\\Flagged)"))
    assert b"\\Flagged" not in data[0] and b"\\Seen" in data[0]  # type: ignore[operator]
    data = _ok(client.store("1", "FLAGS", "(custom1 \\Answered)"))
    assert b"custom1" in data[0] and b"\\Seen" not in data[0]  # type: ignore[operator]
    modseqs = [
        int(m)
        for m in re.findall(rb"MODSEQ \((\d+)\)", b" ".join(_ok(client.fetch("1:2", "(MODSEQ)"))))  # type: ignore[arg-type]
    ]
    assert modseqs[0] > modseqs[1]
    modseq = modseqs[1]
    typ, data = client._simple_command(
        "STORE", "1:2", f"(UNCHANGEDSINCE {modseq})", "+FLAGS", "(\\Deleted)"
    )
    assert typ == "OK" and b"MODIFIED 1]" in data[0]  # type: ignore[operator]
    modseq = int(re.findall(rb"MODSEQ \((\d+)\)", b" ".join(_ok(client.fetch("2", "(MODSEQ)"))))[0])  # type: ignore[arg-type]
    typ, data = client._simple_command(
        "STORE", "2", f"(UNCHANGEDSINCE {modseq})", "+FLAGS", "(\\Draft)"
    )
    assert typ == "OK" and b"MODIFIED" not in data[0]  # type: ignore[operator]
    client.logout()


def test_copy_move_uid_expunge(server: Server) -> None:
    client = imap(server)
    src, dst = unique("src"), unique("dst")
    _fill(client, src, [message(f"m{i}") for i in range(5)])
    _ok(client.create(dst))
    client.select(src)
    typ, data = client.copy("1:2", dst)
    assert re.search(rb"COPYUID \d+ 1:2 1:2", data[0])  # type: ignore[arg-type]
    typ, data = client.uid("MOVE", "3", dst)
    assert typ == "OK"
    assert re.search(rb"\d+ 3 3", client.untagged_responses.pop("COPYUID")[-1])  # type: ignore[arg-type]
    assert client.untagged_responses.pop("EXPUNGE") == [b"3"]
    assert client.copy("1", "nowhere")[0] == "NO"
    client.uid("STORE", "4:5", "+FLAGS", "(\\Deleted)")
    typ, data = client.uid("EXPUNGE", "5")  # RFC 4315 §2.1: only UID 5
    assert typ == "OK"
    assert client.untagged_responses.pop("EXPUNGE") == [b"4"]
    assert _ok(client.expunge()) == [b"3"]
    assert _ok(client.uid("SEARCH", "ALL")) == [b"1 2"]
    assert _ok(client.status(dst, "(MESSAGES)"))[0].endswith(b"(MESSAGES 3)")  # type: ignore[union-attr]
    _ok(client.store("1", "+FLAGS", "(\\Deleted)"))
    _ok(client.close())  # CLOSE expunges silently
    assert _ok(client.status(src, "(MESSAGES)"))[0].endswith(b"(MESSAGES 1)")  # type: ignore[union-attr]
    client.logout()


# -- CONDSTORE / QRESYNC --------------------------------------------------------------------


def test_qresync_select_vanished(server: Server) -> None:
    client = imap(server)
    box = unique("qr")
    _fill(client, box, [message(f"q{i}") for i in range(4)])
    client.select(box)
    uidvalidity = int(client.response("UIDVALIDITY")[1][0])  # type: ignore[arg-type]
    modseq = int(client.response("HIGHESTMODSEQ")[1][0])  # type: ignore[arg-type]
    client.store("2", "+FLAGS", "(\\Deleted)")
    client.store("3", "+FLAGS", "(\\Seen)")
    client.expunge()
    client.logout()
    raw = RawImap(server.ports["imaps"])
    raw.login()
    assert raw.cmd("e", "ENABLE QRESYNC")[0].startswith(b"* ENABLED QRESYNC")
    out = raw.cmd("s", f"SELECT {box} (QRESYNC ({uidvalidity} {modseq} 1:4))")
    assert b"* VANISHED (EARLIER) 2" in out
    assert any(b"FETCH (UID 3 FLAGS (\\Seen" in line for line in out), out
    out = raw.cmd("f", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert b"* VANISHED (EARLIER) 2" in out and any(b"UID 3" in line for line in out)
    out = raw.cmd("x", "STORE 1 +FLAGS (\\Deleted)")
    out = raw.cmd("y", "EXPUNGE")
    assert b"* VANISHED 1" in out  # RFC 7162 §3.2.10
    raw.close()


# -- COMPRESS ------------------------------------------------------------------------------


def test_compress_deflate(server: Server) -> None:
    raw = RawImap(server.ports["imaps"])
    raw.login()
    assert raw.cmd("c", "COMPRESS DEFLATE")[-1].startswith(b"c OK")
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    inflater = zlib.decompressobj(-15)
    raw.send(deflater.compress(b"n1 NAMESPACE\r\n") + deflater.flush(zlib.Z_SYNC_FLUSH))
    got = b""
    while b"n1 OK" not in got:
        got += inflater.decompress(raw.sock.recv(4096))
    assert b'* NAMESPACE (("" "/")) (("Other Users/" "/")) NIL' in got
    raw.close()


def test_idle_sees_append_from_other_session(server: Server) -> None:
    box = unique("idle")
    client = imap(server)
    _ok(client.create(box))
    raw = RawImap(server.ports["imaps"])
    raw.login()
    raw.cmd("s", f"SELECT {box}")
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+")
    _ok(client.append(box, None, None, message("wake up")))
    raw.sock.settimeout(10)  # not hung; how soon is test_imap_sessions.py's IDLE claim
    assert raw.line() == b"* 1 EXISTS"
    raw.send(b"DONE\r\n")
    assert raw.until(b"i")[-1].startswith(b"i OK")
    raw.close()
    client.logout()
