"""POP3 end to end with poplib over STLS and implicit TLS."""

from __future__ import annotations

import poplib
import smtplib

import pytest

from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.helpers import RawSmtp, mailbox, pop3

CAROL = "carol@example.test"


def deliver(server: Server, rcpt: str, body: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.sendmail("pop@sender.test", [rcpt], body)


def test_plaintext_login_refused_until_stls(server: Server) -> None:
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    caps = client.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    with pytest.raises(poplib.error_proto) as info:
        client.user(CAROL)
    assert b"-ERR" in info.value.args[0]
    client.stls(context=client_tls())
    caps = client.capa()
    assert "USER" in caps and "STLS" not in caps and "UIDL" in caps and "TOP" in caps
    client.user(CAROL)
    assert client.pass_(PASSWORDS[CAROL]).startswith(b"+OK")
    client.quit()


def test_retrieve_list_uidl_top_dele(server: Server) -> None:
    body = b"Subject: pop one\r\n\r\nline 1\r\n.starts with a dot\r\nline 3\r\n"
    deliver(server, CAROL, body)
    client = pop3(server.ports["pop3s"], CAROL)
    count, _size = client.stat()
    assert count >= 1
    listing = client.list()[1]
    assert len(listing) == count
    uidls = [line.split()[1] for line in client.uidl()[1]]
    assert len(set(uidls)) == count
    lines = client.retr(count)[1]
    assert lines[-3:] == [b"line 1", b".starts with a dot", b"line 3"]
    top = client.top(count, 1)[1]
    assert top[-2:] == [b"", b"line 1"]
    client.dele(count)
    with pytest.raises(poplib.error_proto):
        client.retr(count)
    assert client.stat()[0] == count - 1
    client.rset()
    assert client.stat()[0] == count
    client.dele(count)
    client.quit()
    # Applied durably in the UPDATE state; the remaining UIDLs are unchanged.
    client = pop3(server.ports["pop3s"], CAROL)
    assert client.stat()[0] == count - 1
    assert [line.split()[1] for line in client.uidl()[1]] == uidls[:-1]
    client.quit()


def test_disconnect_without_quit_deletes_nothing(server: Server) -> None:
    deliver(server, CAROL, b"Subject: keep me\r\n\r\nx\r\n")
    client = pop3(server.ports["pop3s"], CAROL)
    count = client.stat()[0]
    client.dele(count)
    client.close()  # no QUIT: the UPDATE state never happens
    client = pop3(server.ports["pop3s"], CAROL)
    assert client.stat()[0] == count
    client.quit()


def test_one_session_per_maildrop(server: Server) -> None:
    first = pop3(server.ports["pop3s"], CAROL)
    second = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=client_tls())
    second.user(CAROL)
    with pytest.raises(poplib.error_proto) as info:
        second.pass_(PASSWORDS[CAROL])
    assert b"[IN-USE]" in info.value.args[0]
    first.quit()
    second.close()


def test_bad_commands_and_ranges(server: Server) -> None:
    client = pop3(server.ports["pop3s"], CAROL)
    count = client.stat()[0]
    for command in (
        "RETR 0",
        f"RETR {count + 1}",
        "RETR -1",
        "RETR abc",
        "DELE 99999999999",
        "FOO",
        "TOP 1",
    ):
        with pytest.raises(poplib.error_proto):
            client._shortcmd(command)
    assert client.noop().startswith(b"+OK")
    client.quit()


def test_wrong_password_and_sasl_plain(server: Server) -> None:
    client = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=client_tls())
    client.user(CAROL)
    with pytest.raises(poplib.error_proto) as info:
        client.pass_("nope")
    assert b"[AUTH]" in info.value.args[0]
    import base64

    token = base64.b64encode(f"\0{CAROL}\0{PASSWORDS[CAROL]}".encode()).decode()
    assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    client.quit()


def test_many_messages_over_one_session(server: Server) -> None:
    raw = RawSmtp(server.ports["smtp"])
    raw.cmd("EHLO many.test")
    for i in range(50):
        raw.send(b"MAIL FROM:<m@many.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [raw.reply()[0] for _ in range(3)] == [250, 250, 354]
        raw.send(b"Subject: many %d\r\n\r\nbody %d\r\n.\r\n" % (i, i))
        assert raw.reply()[0] == 250
    raw.cmd("QUIT")
    stored = mailbox(server.ports["pop3s"], "bob@example.test")
    subjects = [m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in stored if b"Subject: many" in m]
    assert subjects[-50:] == [b"many %d" % i for i in range(50)]
