"""Hostile sessions over real sockets against one server, a few per protocol: NUL
bytes, invalid UTF-8, over-long lines, literals too big, pipelined garbage, a command
dripped a few octets at a time, a half-closed connection, a message nested a thousand
deep.  Each test checks the answers the client gets and that the server still serves a
new client afterwards; the module ends by checking that nothing crashed and the event
loop never stalled (Server.stop)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, make_data_dir
from tests.server.imap_helpers import imap, message
from tests.server.jmap_helpers import Jmap

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("hostile-more") / "data"
    make_data_dir(data, {"sieve": '["127.0.0.1:0"]'})
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]
    assert "session_crashed" not in server.log() and "Traceback" not in server.log()


class Peer:
    """A raw client: bytes out, CRLF-ended lines in."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = client_tls().wrap_socket(sock) if tls else sock
        self.buf = b""

    def send(self, data: bytes, piece: int = 0) -> None:
        if not piece:
            self.sock.sendall(data)
            return
        for i in range(0, len(data), piece):
            self.sock.sendall(data[i : i + piece])

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            got = self.sock.recv(65536)
            if not got:
                raise EOFError(self.buf)
            self.buf += got
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def until(self, *starts: bytes) -> list[bytes]:
        """Lines up to and including the first that starts with one of ``starts``."""
        lines = [self.line()]
        while not lines[-1].startswith(starts):
            lines.append(self.line())
        return lines

    def closed(self) -> bool:
        """True once the server closed (EOF), whatever it wrote before."""
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionResetError, ssl.SSLError):
            return True
        return True

    def close(self) -> None:
        self.sock.close()


def _sieve_serves(srv: Server) -> None:
    peer = Peer(srv.ports["sieve"])
    assert peer.until(b"OK", b"NO", b"BYE")[-1].startswith(b"OK")
    peer.send(b"CAPABILITY\r\n")
    assert peer.until(b"OK", b"NO", b"BYE")[-1].startswith(b"OK")
    peer.close()


def test_sieve_dripped_and_broken_commands(srv: Server) -> None:
    """A command of 8 KB in pieces of three octets (once re-parsed whole at every
    piece: seconds of CPU), NUL and invalid UTF-8, a literal too big: each answered on
    its own, the session goes on, and a new client is served."""
    peer = Peer(srv.ports["sieve"])
    assert peer.until(b"OK", b"NO", b"BYE")[-1].startswith(b"OK")
    peer.send(b"CHECKSCRIPT" + b' "a"' * 1900 + b"\r\n", piece=3)
    assert peer.until(b"OK", b"NO", b"BYE")[-1].startswith(b"NO")
    peer.send(b"\x00\xff\xfe\r\n")
    assert peer.until(b"OK", b"NO", b"BYE")[-1] == b'NO "Bad command"'
    peer.send(b'NOOP "\xc3\x28"\r\n')
    assert peer.until(b"OK", b"NO", b"BYE")[-1].startswith((b"OK", b"NO"))
    peer.send(b"CHECKSCRIPT {2000000+}\r\n")  # beyond the literal bound: refused at once
    assert peer.until(b"OK", b"NO", b"BYE")[-1].startswith(b"NO")
    peer.send(b"x" * 2_000_000 + b"\r\nNOOP\r\n")  # its octets are dropped, not run
    assert peer.until(b"OK", b"NO", b"BYE")[-1] == b'OK "Done"'
    peer.close()
    _sieve_serves(srv)


def test_imap_garbage_then_half_close(srv: Server) -> None:
    peer = Peer(srv.ports["imap"])
    assert peer.line().startswith(b"* OK")
    peer.send(b"a NOOP\x00x\r\n")
    assert peer.line() == b"a BAD [PARSE] bare CR or NUL in command"
    peer.send(b"b SELECT \xff\xfe\r\n")
    assert peer.line().startswith(b"b BAD")
    peer.send(b"c SELECT " + b"x" * 70_000 + b"\r\n")
    assert peer.line() == b"c BAD [TOOBIG] line too long"
    peer.send(b"d APPEND INBOX {999999999999}\r\n")  # refused before any "+": not sent
    assert peer.line().startswith((b"d BAD", b"d NO"))
    peer.send(b"e NOOP\r\n")
    assert peer.line().startswith(b"e OK")
    peer.send(b"f NOOP")  # half a command, then the client stops writing
    peer.sock.shutdown(socket.SHUT_WR)
    assert peer.closed()
    peer.close()
    client = imap(srv)
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_smtp_garbage_pipelined_until_the_server_gives_up(srv: Server) -> None:
    peer = Peer(srv.ports["smtp"])
    assert peer.line().startswith(b"220")
    peer.send(b"EHLO client.test\r\n")
    assert peer.until(b"250 ")[-1].startswith(b"250 ")
    peer.send(b"MAIL FROM:<a\x00b@c.test>\r\n")
    assert peer.line().startswith(b"501")
    peer.send(b"MAIL FROM:<\xff@c.test>\r\n")
    assert peer.line().startswith(b"501")
    peer.send(b"X" * 5000 + b"\r\n")
    assert peer.line().startswith(b"500")
    peer.send(b"NOOP\r\n")
    assert peer.line().startswith(b"250")
    peer.send(b"\x00\xff garbage\r\n" * 60)  # pipelined: answered until 421
    replies = peer.until(b"421")
    assert all(r.startswith((b"500", b"502", b"421")) for r in replies), replies
    assert peer.closed()
    peer.close()
    fresh = Peer(srv.ports["smtp"])
    assert fresh.line().startswith(b"220")
    fresh.send(b"EHLO client.test\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\nQUIT\r\n")
    lines = fresh.until(b"221")
    assert [line[:3] for line in lines if line[3:4] == b" "] == [b"250", b"250", b"250", b"221"]
    fresh.close()


def test_pop3_garbage_then_half_close(srv: Server) -> None:
    peer = Peer(srv.ports["pop3s"], tls=True)
    assert peer.line().startswith(b"+OK")
    peer.send(b"USER alice@example.test\x00\r\n")
    assert peer.line().startswith(b"-ERR")
    peer.send(b"X" * 3000 + b"\r\n")
    assert peer.line() == b"-ERR Line too long"
    peer.send(b"\xff\xfe\r\n")
    assert peer.line().startswith(b"-ERR")
    peer.send(b"USER " + ALICE.encode() + b"\r\n")
    assert peer.line().startswith(b"+OK")
    peer.send(b"PASS " + PASSWORDS[ALICE].encode() + b"\r\n")
    assert peer.line().startswith(b"+OK")
    peer.send(b"STAT\r\nRETR 99999999999999999999\r\nTOP 1 -5\r\nLIST \xff\r\nNOOP\r\n")
    lines = [peer.line() for _ in range(5)]
    assert lines[0].startswith(b"+OK") and lines[-1].startswith(b"+OK")
    assert all(line.startswith(b"-ERR") for line in lines[1:4]), lines
    peer.close()
    again = Peer(srv.ports["pop3s"], tls=True)
    assert again.line().startswith(b"+OK")
    again.send(b"CAPA\r\n")
    assert again.until(b".")[-1] == b"."
    again.close()


def _nested(depth: int) -> str:
    levels = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(depth)
    )
    return "Subject: deep\r\nFrom: x@example.test\r\n" + levels + "\r\nburied\r\n"


def test_a_message_nested_a_thousand_deep_fails_no_jmap_call(srv: Server) -> None:
    """A message 1,000 multiparts deep, or with a To: of 5,000 "(", used to raise
    RecursionError in the stdlib parser: every Email/get of the mailbox answered
    serverFail, and the webmail showed nothing."""
    client = imap(srv, "bob@example.test")
    client.append("INBOX", "", None, message("plain"))
    client.append("INBOX", "", None, _nested(1000).encode())
    parens = "Subject: parens\r\nFrom: x@example.test\r\nTo: " + "(" * 5000 + "\r\n\r\nhi\r\n"
    client.append("INBOX", "", None, parens.encode())  # RecursionError in the stdlib too
    client.logout()
    jmap = Jmap(srv, "bob@example.test")
    got = jmap.call(
        "Email/get",
        ids=None,
        properties=["subject", "from", "to", "preview", "textBody", "bodyStructure"],
        fetchTextBodyValues=True,
    )
    assert sorted(e["subject"] for e in got["list"]) == ["deep", "parens", "plain"]
    assert jmap.call("Email/get", ids=None)["notFound"] == []  # the default properties
    found = jmap.call("Email/query", filter={"text": "buried"})
    assert len(found["ids"]) <= 1  # answered (the opaque body may or may not be searched)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("Mailbox/query", {"sort": True}),
        ("Mailbox/query", {"sort": 1.5}),
        ("Quota/query", {"sort": 7}),
        ("SieveScript/query", {"sort": 2**63}),
        ("Email/query", {"filter": {"maxSize": {"x": 1}}}),
        ("Email/query", {"filter": {"minSize": "10"}}),
        ("Email/query", {"filter": {"minSize": -1}}),
        ("Email/query", {"filter": {"inMailbox": ["a"]}}),
        ("Email/query", {"filter": {"inMailboxOtherThan": 5}}),
        ("Email/query", {"filter": {"operator": "OR", "conditions": [{"maxSize": None}]}}),
    ],
)
def test_jmap_arguments_of_the_wrong_type_are_refused(
    srv: Server, name: str, args: dict[str, object]
) -> None:
    """RFC 8620 §3.6.2: an argument of the wrong type is invalidArguments; these used to
    raise inside the method (TypeError) and answer serverFail."""
    jmap = Jmap(srv)
    jmap.using = [c for c in jmap.session["capabilities"] if not c.endswith(":websocket")]
    ((kind, body, _),) = jmap.calls((name, args))
    assert kind == "error" and body["type"] == "invalidArguments", body


def test_jmap_using_every_advertised_capability_is_a_request(srv: Server) -> None:
    """RFC 8620 §3.6.1: unknownCapability is for a capability the server does not
    support; naming every one the session lists (WebSocket, RFC 8887, included) was
    refused with it."""
    jmap = Jmap(srv)
    jmap.using = list(jmap.session["capabilities"])
    assert any(c.endswith(":websocket") for c in jmap.using)
    assert jmap.call("Mailbox/get", ids=[])["notFound"] == []


def test_a_date_past_any_calendar_is_no_date(srv: Server) -> None:
    """Date: 1 Jan 99999999999 (RFC 5322 §3.3 sets no bound on the year): the stdlib
    raises OverflowError, which crashed the IMAP session of any SEARCH SENT* over the
    mailbox and failed Email/get (sentAt is a default property). Now the message just
    has no sent date (RFC 9051 §6.4.4.2: an unparsable Date matches no SENT* key)."""
    carol = "carol@example.test"
    client = imap(srv, carol)
    for date in ("1 Jan 99999999999 00:00:00 +0000", "1 Jan 2024 00:00:00 +99999999999999"):
        text = f"From: x@example.test\r\nSubject: far\r\nDate: {date}\r\n\r\nhi\r\n"
        client.append("INBOX", "", None, text.encode())
    client.select("INBOX")
    for query in ("SENTON 1-Jan-2024", "SENTBEFORE 1-Jan-2024", "SENTSINCE 1-Jan-2024 SUBJECT far"):
        status, found = client.search(None, query)
        assert status == "OK" and found == [b""], (query, found)
    assert client.noop()[0] == "OK"
    client.logout()
    jmap = Jmap(srv, carol)
    listed = jmap.call("Email/get", ids=None, properties=["subject", "sentAt"])["list"]
    assert [(e["subject"], e["sentAt"]) for e in listed] == [("far", None), ("far", None)]


def test_a_submission_whose_recipients_nest_thousands_deep_is_refused(srv: Server) -> None:
    """RFC 8621 §7.5: the envelope comes from the Email's address fields when none is
    given; a To: of 5,000 "(" raised RecursionError in the stdlib reader (serverFail)."""
    client = imap(srv)
    raw = "From: alice@example.test\r\nSubject: nest\r\nTo: " + "(" * 5000 + "\r\n\r\nx\r\n"
    client.append("INBOX", "", None, raw.encode())
    client.logout()
    jmap = Jmap(srv)
    jmap.using = [c for c in jmap.session["capabilities"] if not c.endswith(":websocket")]
    (email,) = [
        e["id"]
        for e in jmap.call("Email/get", ids=None, properties=["subject"])["list"]
        if e["subject"] == "nest"
    ]
    identity = jmap.call("Identity/get", ids=None)["list"][0]["id"]
    got = jmap.call("EmailSubmission/set", create={"s": {"identityId": identity, "emailId": email}})
    assert got["notCreated"]["s"]["type"] == "invalidEmail", got
