"""POP3, LMTP and ManageSieve over real sockets with absurd arguments, second hostile
pass (these were found clean; the tests keep them so): TOP and UIDL with numbers past
any mailbox, signs, other scripts' digits and overlong lines; thousands of RCPT in one
LMTP transaction; Sieve scripts nested thousands deep. Each answer is an error for the
one command and the session goes on; the module ends by checking that nothing crashed
and the event loop never stalled (Server.stop)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, make_data_dir
from tests.server.imap_helpers import imap
from tests.server.jmap_helpers import sieve_login

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("hostile-more2-sessions") / "data"
    make_data_dir(data, {"sieve": '["127.0.0.1:0"]', "lmtp": '["127.0.0.1:0"]'})
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]
    assert "session_crashed" not in server.log() and "Traceback" not in server.log()


class Lines:
    """CRLF lines over a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def line(self) -> bytes:
        got = self.file.readline()
        assert got.endswith(b"\r\n"), got
        return got[:-2]

    def cmd(self, text: bytes) -> bytes:
        self.sock.sendall(text + b"\r\n")
        return self.line()

    def reply(self) -> bytes:
        """An SMTP/LMTP reply's last line."""
        line = self.line()
        while line[3:4] == b"-":
            line = self.line()
        return line


def test_pop3_top_and_uidl_with_absurd_arguments(srv: Server) -> None:
    client = imap(srv, ALICE)
    for i in range(2):
        client.append("INBOX", "", None, b"Subject: m%d\r\n\r\nline1\r\nline2\r\n" % i)
    client.logout()
    sock = socket.create_connection(("127.0.0.1", srv.ports["pop3s"]), timeout=10)
    pop = Lines(client_tls().wrap_socket(sock))
    assert pop.line().startswith(b"+OK")
    assert pop.cmd(b"USER " + ALICE.encode()).startswith(b"+OK")
    assert pop.cmd(b"PASS " + PASSWORDS[ALICE].encode()).startswith(b"+OK")
    for bad in (b"TOP 1 -1", b"TOP 1 " + b"9" * 30, b"TOP 0 0", b"TOP 1", b"TOP 1 0 0",
                b"TOP -1 2", b"TOP 1 +5", b"TOP 1 \xd9\xa3", b"TOP 4294967297 1",
                b"UIDL " + b"9" * 30, b"UIDL 0", b"UIDL -1", b"UIDL 1 2", b"LIST 1e3",
                b"RETR 0x1", b"DELE 4294967297", b"TOP 1 " + b"9" * 5000):  # fmt: skip
        assert pop.cmd(bad).startswith(b"-ERR"), bad
    assert pop.cmd(b"TOP 2 1") == b"+OK"
    assert [pop.line() for _ in range(4)] == [b"Subject: m1", b"", b"line1", b"."]
    assert pop.cmd(b"UIDL 2").startswith(b"+OK 2 ")
    assert pop.cmd(b"QUIT").startswith(b"+OK")


def test_lmtp_thousands_of_recipients_in_one_transaction(srv: Server) -> None:
    lmtp = Lines(socket.create_connection(("127.0.0.1", srv.ports["lmtp"]), timeout=30))
    assert lmtp.reply().startswith(b"220")
    lmtp.sock.sendall(b"LHLO client.example\r\n")
    assert lmtp.reply().startswith(b"250")
    lmtp.sock.sendall(b"MAIL FROM:<a@sender.example>\r\n")
    assert lmtp.reply().startswith(b"250")
    count = 5000
    lmtp.sock.sendall(b"RCPT TO:<bob@example.test>\r\n" * count)  # pipelined
    codes = [lmtp.reply()[:3] for _ in range(count)]
    accepted = codes.count(b"250")
    assert 0 < accepted <= 1000 and set(codes) <= {b"250", b"452"}, set(codes)
    lmtp.sock.sendall(b"DATA\r\n")
    assert lmtp.reply().startswith(b"354")
    lmtp.sock.sendall(b"Subject: many\r\n\r\nhi\r\n.\r\n")
    assert [lmtp.reply()[:3] for _ in range(accepted)] == [b"250"] * accepted  # RFC 2033 §4.2
    lmtp.sock.sendall(b"NOOP\r\n")
    assert lmtp.reply().startswith(b"250")


@pytest.mark.parametrize(
    "script",
    [
        b"if true {" * 5000 + b"}" * 5000,
        b"if " + b"anyof(" * 5000 + b"true" + b")" * 5000 + b" { keep; }",
        b"if " + b"not " * 5000 + b"true { keep; }",
        b"[" * 60_000,
        b"/*" * 30_000 + b"*/ keep;",
    ],
    ids=["blocks", "anyof", "not", "brackets", "comments"],
)
def test_sieve_scripts_nested_thousands_deep_are_refused(srv: Server, script: bytes) -> None:
    client = sieve_login(srv.ports["sieve"])
    for command in (b'PUTSCRIPT "deep" ', b"CHECKSCRIPT "):
        done = client.cmd(command + b"{%d+}\r\n" % len(script) + script)
        assert done[-1].startswith(b"NO"), done[-1][:200]
    assert client.cmd(b"NOOP")[-1].startswith(b"OK")
