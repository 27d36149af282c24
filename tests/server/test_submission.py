"""The submission roles (587 STARTTLS, 465 implicit TLS) end to end with smtplib."""

from __future__ import annotations

import base64
import smtplib
import time

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo
from tests.server.helpers import RawSmtp, mailbox, message

ALICE = "alice@example.test"


def submit(server: Server) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10)
    smtp.ehlo("client.test")
    smtp.starttls(context=client_tls())
    smtp.ehlo("client.test")
    smtp.login(ALICE, PASSWORDS[ALICE])
    return smtp


def test_auth_only_after_starttls(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"]) as smtp:
        code, ext = smtp.ehlo("client.test")
        assert b"STARTTLS" in ext and b"AUTH" not in ext
        code, text = smtp.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQtMQ==")
        assert code == 538 and text.startswith(b"5.7.11")
        code, text = smtp.docmd("MAIL", "FROM:<alice@example.test>")
        assert code == 530 and text.startswith(b"5.7.0")
        smtp.starttls(context=client_tls())
        code, ext = smtp.ehlo("client.test")
        assert b"AUTH SCRAM-SHA-256 SCRAM-SHA-1 PLAIN LOGIN" in ext and b"STARTTLS" not in ext


def test_submit_local_and_remote(server: Server) -> None:
    before = len(mailbox(server.ports["pop3s"], "bob@example.test"))
    with submit(server) as smtp:
        body = (
            b"From: Alice <alice@example.test>\r\nTo: bob@example.test, far@remote.example\r\n"
            b"Subject: hello bob\r\n\r\nHi.\r\n"
        )
        assert smtp.sendmail(ALICE, ["bob@example.test", "far@remote.example"], body) == {}
    stored = mailbox(server.ports["pop3s"], "bob@example.test")
    assert len(stored) == before + 1
    text = stored[-1]
    # RFC 6409 §8: the MSA adds Message-ID and Date when missing.
    assert b"\r\nMessage-ID: <" in text and b"\r\nDate: " in text
    assert (
        b"with ESMTPSA" in text
        and b"authenticated as alice@example.test" in text
        and b"TLSv1." in text
    )
    # The remote recipient went to the outbound queue; its domain does not exist (the
    # test DNS answers NXDOMAIN), so the MTA returns an RFC 3464 report to alice.
    deadline = time.monotonic() + 15
    reports: list[bytes] = []
    while not reports and time.monotonic() < deadline:
        reports = [m for m in mailbox(server.ports["pop3s"], ALICE) if b"far@remote.example" in m]
        time.sleep(0.2)
    assert reports, "no delivery status notification"
    assert b"Content-Type: multipart/report; report-type=delivery-status" in reports[0]
    assert b"Final-Recipient: rfc822; far@remote.example" in reports[0]
    assert b"Status: 5.1.2" in reports[0]


def test_implicit_tls_and_login_mechanism(server: Server) -> None:
    before = len(mailbox(server.ports["pop3s"], "bob@example.test"))
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], context=client_tls()) as smtp:
        smtp.ehlo("client.test")
        smtp.user, smtp.password = ALICE, PASSWORDS[ALICE]
        code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        assert code == 235
        smtp.sendmail(ALICE, ["bob@example.test"], message(ALICE, "bob@example.test", "over 465"))
    assert len(mailbox(server.ports["pop3s"], "bob@example.test")) == before + 1


@pytest.mark.parametrize(
    "sender", ["bob@example.test", "alice@other.example", "ALICE@example.test.evil"]
)
def test_envelope_spoofing_refused(server: Server, sender: str) -> None:
    with submit(server) as smtp:
        code, text = smtp.mail(sender)
        assert code == 553 and text.startswith(b"5.7.1")


def test_header_spoofing_refused_alias_allowed(server: Server) -> None:
    correo(server.data, "alias", "add", "info@example.test", ALICE)
    with submit(server) as smtp:
        spoof = b"From: Bob <bob@example.test>\r\nSubject: spoof\r\n\r\nx\r\n"
        with pytest.raises(smtplib.SMTPDataError) as info:
            smtp.sendmail(ALICE, ["carol@example.test"], spoof)
        assert info.value.smtp_code == 553
        ok = b"From: Info <info@example.test>\r\nSubject: as alias\r\n\r\nx\r\n"
        assert smtp.sendmail("info@example.test", ["carol@example.test"], ok) == {}
        tagged = b"From: alice+lists@example.test\r\nSubject: tagged\r\n\r\nx\r\n"
        assert smtp.sendmail("Alice+lists@Example.test", ["carol@example.test"], tagged) == {}


def test_auth_failures_are_throttled_then_locked(start_server: object) -> None:
    srv = start_server({"free_failures": "1", "max_delay": "0.5", "lockout_failures": "3"})  # type: ignore[operator]
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=client_tls()) as smtp:
        smtp.ehlo("client.test")
        delays = []
        wrong = base64.b64encode(b"\0alice@example.test\0wrong").decode()
        for _ in range(3):
            started = time.monotonic()
            code, text = smtp.docmd("AUTH", f"PLAIN {wrong}")
            assert code == 535 and text.startswith(b"5.7.8")
            delays.append(time.monotonic() - started)
        # The third failure waits the 0.5 s max_delay before its answer; a loaded machine
        # can only lengthen that, while comparing it with the first (free) failure's time
        # would judge the load.  Which failures are free is tests/unit/test_throttle.py's.
        assert delays[-1] >= 0.49, delays
        # Locked now, even with the right password.
        code, text = smtp.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQtMQ==")
        assert code == 454 and text.startswith(b"4.7.0")
    assert "wrong" not in srv.log() and PASSWORDS[ALICE] not in srv.log()
    assert "AGFsaWNl" not in srv.log()


def test_graceful_shutdown_sends_421_to_idle_sessions(start_server: object) -> None:
    srv = start_server()  # type: ignore[operator]
    raw = RawSmtp(srv.ports["smtp"])
    raw.cmd("EHLO idle.test")
    busy = RawSmtp(srv.ports["smtp"])
    busy.cmd("EHLO busy.test")
    busy.cmd("MAIL FROM:<a@busy.test>")
    busy.cmd("RCPT TO:<alice@example.test>")
    assert busy.cmd("DATA")[0] == 354
    srv.proc.send_signal(15)  # type: ignore[union-attr]
    code, text = raw.reply()
    assert code == 421 and text.startswith("4.3.2")
    # The transaction in flight still completes and is acknowledged, then 421.
    busy.send(b"Subject: in flight\r\n\r\nx\r\n.\r\n")
    assert busy.reply()[0] == 250
    assert busy.reply()[0] == 421
    assert srv.proc.wait(30) == 0  # type: ignore[union-attr]
    srv.start()
    assert any(b"Subject: in flight" in m for m in mailbox(srv.ports["pop3s"], ALICE))
