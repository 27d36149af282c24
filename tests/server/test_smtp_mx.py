"""The MX role end to end: real sockets, a real server, smtplib and raw bytes."""

from __future__ import annotations

import smtplib

import pytest

from tests.conftest import Server, correo
from tests.server.helpers import RawSmtp, mailbox, message


def test_inbound_mail_is_stored_with_trace_fields(server: Server) -> None:
    before = len(mailbox(server.ports["pop3s"], "alice@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        code, ext = smtp.ehlo("sender.example")
        assert code == 250
        for keyword in (
            b"PIPELINING",
            b"8BITMIME",
            b"SMTPUTF8",
            b"ENHANCEDSTATUSCODES",
            b"CHUNKING",
            b"DSN",
            b"STARTTLS",
        ):
            assert keyword in ext
        assert b"AUTH" not in ext  # never on the MX role
        refused = smtp.sendmail(
            "someone@sender.example",
            ["alice@example.test"],
            message("someone@sender.example", "alice@example.test", "mx one"),
        )
        assert refused == {}
    stored = mailbox(server.ports["pop3s"], "alice@example.test")
    assert len(stored) == before + 1
    text = stored[-1]
    assert text.startswith(b"Return-Path: <someone@sender.example>\r\n")
    assert b"\r\nReceived: from sender.example ([127.0.0.1])" in text
    assert b"\r\nAuthentication-Results: localhost;" in text  # added by the MX (RFC 8601)
    assert b"Subject: mx one" in text and text.endswith(b"Hello.")


@pytest.mark.parametrize(
    ("rcpt", "code", "status"),
    [
        ("<nobody@example.test>", 550, "5.1.1"),
        ("<bob@other.example>", 554, "5.7.1"),
        ("<bob%other.example@example.test>", 550, "5.1.1"),
        ('<"bob@other.example"@example.test>', 550, "5.1.1"),
        ("<@example.test:bob@other.example>", 554, "5.7.1"),
        ("<bob@[127.0.0.1]>", 554, "5.7.1"),
        ("<bob!other.example@example.test>", 550, "5.1.1"),
        ("<alice@example.test.other.example>", 554, "5.7.1"),
    ],
)
def test_no_open_relay(server: Server, rcpt: str, code: int, status: str) -> None:
    raw = RawSmtp(server.ports["smtp"])
    assert raw.cmd("EHLO relay.test")[0] == 250
    assert raw.cmd("MAIL FROM:<spammer@relay.test>")[0] == 250
    got = raw.cmd(f"RCPT TO:{rcpt}")
    assert got[0] == code and got[1].startswith(status), got
    assert raw.cmd("DATA")[0] == 503  # nothing accepted, nothing to send
    raw.cmd("QUIT")
    raw.close()


def test_subaddress_and_alias_and_postmaster(server: Server) -> None:
    r = correo(server.data, "alias", "add", "sales@example.test", "bob@example.test")
    assert r.returncode == 0, r.stderr
    before = len(mailbox(server.ports["pop3s"], "bob@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.sendmail(
            "x@sender.example",
            ["bob+news@example.test"],
            message("x@sender.example", "bob+news@example.test", "tagged"),
        )
        smtp.sendmail(
            "x@sender.example",
            ["Sales@Example.TEST"],
            message("x@sender.example", "sales@example.test", "aliased"),
        )
    stored = mailbox(server.ports["pop3s"], "bob@example.test")
    assert len(stored) == before + 2
    assert b"Subject: tagged" in stored[-2] and b"Subject: aliased" in stored[-1]


def test_pipelined_burst_gets_replies_in_order(server: Server) -> None:
    raw = RawSmtp(server.ports["smtp"])
    raw.send(
        b"EHLO burst.test\r\nMAIL FROM:<a@burst.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    )
    assert raw.reply()[0] == 250
    assert [raw.reply()[0] for _ in range(4)] == [250, 250, 550, 250]
    assert raw.reply()[0] == 354
    raw.send(
        b"Subject: burst\r\n\r\n..leading dot\r\n.\r\n"
        b"MAIL FROM:<b@burst.test>\r\nRSET\r\nNOOP\r\nQUIT\r\n"
    )
    assert raw.reply()[0] == 250
    assert [raw.reply()[0] for _ in range(4)] == [250, 250, 250, 221]
    stored = mailbox(server.ports["pop3s"], "bob@example.test")
    assert stored[-1].endswith(b"Subject: burst\r\n\r\n.leading dot")


@pytest.mark.parametrize(
    "payload",
    [
        b"Subject: s\r\n\r\nhello\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<alice@example.test>\r\n",
        b"Subject: s\r\n\r\nhello\r\n.\nMAIL FROM:<evil@x>\r\n",
        b"Subject: s\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x>\r\n",
        b"Subject: s\r\n\r\nhello\r.\r\nMAIL FROM:<evil@x>\r\n",
        b"Subject: s\r\n\r\nhello\r\n.\rMAIL FROM:<evil@x>\r\n",
        b"Subject: s\r\n\r\nbare\rcarriage\r\n",
        b"Subject: s\r\n\r\nbare\nnewline\r\n",
    ],
)
def test_smuggling_variants_are_rejected_not_normalised(server: Server, payload: bytes) -> None:
    before = len(mailbox(server.ports["pop3s"], "carol@example.test"))
    raw = RawSmtp(server.ports["smtp"])
    raw.cmd("EHLO smuggler.test")
    assert raw.cmd("MAIL FROM:<s@smuggler.test>")[0] == 250
    assert raw.cmd("RCPT TO:<carol@example.test>")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send(payload + b"\r\n.\r\n")
    code, text = raw.reply()
    assert code == 554 and text.startswith("5.6.0"), (code, text)
    # The session survives and the smuggled lines were data, never commands.
    assert raw.cmd("NOOP")[0] == 250
    assert raw.cmd("RCPT TO:<carol@example.test>")[0] == 503
    raw.cmd("QUIT")
    assert len(mailbox(server.ports["pop3s"], "carol@example.test")) == before


def test_bare_lf_in_command_and_long_line(server: Server) -> None:
    raw = RawSmtp(server.ports["smtp"])
    raw.send(b"EHLO x\nNOOP\r\n")
    assert raw.reply()[0] == 500
    assert raw.reply()[0] == 250
    code, text = raw.cmd("HELO " + "a" * 5000)
    assert code == 500 and text.startswith("5.5.2")
    assert raw.cmd("NOOP")[0] == 250
    raw.close()


def test_disconnect_mid_data_stores_nothing(server: Server) -> None:
    before = len(mailbox(server.ports["pop3s"], "carol@example.test"))
    raw = RawSmtp(server.ports["smtp"])
    raw.cmd("EHLO cut.test")
    raw.cmd("MAIL FROM:<a@cut.test>")
    raw.cmd("RCPT TO:<carol@example.test>")
    assert raw.cmd("DATA")[0] == 354
    raw.send(b"Subject: cut\r\n\r\n" + b"x" * 300_000)
    raw.close()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        assert smtp.noop()[0] == 250  # the server is still up
    assert len(mailbox(server.ports["pop3s"], "carol@example.test")) == before


def test_chunking_bdat(server: Server) -> None:
    raw = RawSmtp(server.ports["smtp"])
    raw.cmd("EHLO chunk.test")
    raw.cmd("MAIL FROM:<a@chunk.test> BODY=8BITMIME")
    raw.cmd("RCPT TO:<alice@example.test>")
    part1 = b"Subject: chunked\r\n\r\nfirst half, "
    part2 = "second half with UTF-8 \u00e9\r\n.\r\n".encode()
    raw.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert raw.reply()[0] == 250
    raw.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, text = raw.reply()
    assert code == 250, text
    raw.cmd("QUIT")
    stored = mailbox(server.ports["pop3s"], "alice@example.test")
    # BDAT is raw: the ".\r\n" line is content (poplib undoes the POP3 dot-stuffing).
    assert stored[-1].endswith("first half, second half with UTF-8 \u00e9\r\n.".encode())


def test_size_limits(start_server: object) -> None:
    srv = start_server({"message_size": "20000"})  # type: ignore[operator]
    raw = RawSmtp(srv.ports["smtp"])
    code, text = raw.cmd("EHLO size.test")
    assert "SIZE 20000" in text
    code, text = raw.cmd("MAIL FROM:<a@size.test> SIZE=20001")
    assert code == 552 and text.startswith("5.3.4")
    assert raw.cmd("MAIL FROM:<a@size.test> SIZE=100")[0] == 250
    assert raw.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 30 + b".\r\n")
    code, text = raw.reply()
    assert code == 552 and text.startswith("5.3.4")
    assert raw.cmd("NOOP")[0] == 250
    assert mailbox(srv.ports["pop3s"], "alice@example.test") == []


def test_recipient_limit(start_server: object) -> None:
    srv = start_server({"recipients": "2"})  # type: ignore[operator]
    raw = RawSmtp(srv.ports["smtp"])
    raw.cmd("EHLO many.test")
    raw.cmd("MAIL FROM:<a@many.test>")
    assert raw.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert raw.cmd("RCPT TO:<bob@example.test>")[0] == 250
    code, text = raw.cmd("RCPT TO:<carol@example.test>")
    assert code == 452 and text.startswith("4.5.3")
    raw.close()


def test_mail_loop_is_refused(server: Server) -> None:
    loop = b"".join(
        b"Received: from hop%d by x; Thu, 26 Nov 2026 10:00:00 +0000\r\n" % i for i in range(60)
    )
    with (
        smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp,
        pytest.raises(smtplib.SMTPDataError) as info,
    ):
        smtp.sendmail("a@loop.test", ["alice@example.test"], loop + b"Subject: loop\r\n\r\nx\r\n")
    assert info.value.smtp_code == 554 and info.value.smtp_error.startswith(b"5.4.6")


def test_idle_timeout(start_server: object) -> None:
    srv = start_server({"command_timeout": "1.0"})  # type: ignore[operator]
    raw = RawSmtp(srv.ports["smtp"])
    code, text = raw.reply()
    assert code == 421 and text.startswith("4.4.2")
    assert raw.closed()


def test_connection_limit_per_ip(start_server: object) -> None:
    srv = start_server({"connections_per_ip": "2"})  # type: ignore[operator]
    a, b = RawSmtp(srv.ports["smtp"]), RawSmtp(srv.ports["smtp"])
    c = RawSmtp.__new__(RawSmtp)
    import socket

    c.sock = socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=5)
    c.buf = b""
    code, text = c.reply()
    assert code == 421 and text.startswith("4.7.0")
    a.close()
    b.close()
