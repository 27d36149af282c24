"""postmaster@ every local domain and a bare <postmaster> are accepted (RFC 5321 §4.5.1).

The test servers have alice, bob and carol in example.test and no postmaster account
or alias: the mail goes to ``[delivery] postmaster`` when set, otherwise to the first
account of the domain (alice), where a POP3 client can read it.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Server, correo
from tests.server.helpers import RawSmtp, mailbox


def _deliver(server: Server, rcpt: str) -> tuple[int, str, str]:
    """One message over the MX to ``rcpt``: (RCPT reply, end-of-data reply, subject)."""
    subject = uuid.uuid4().hex
    smtp = RawSmtp(server.ports["smtp"])
    try:
        assert smtp.cmd("EHLO sender.example")[0] == 250
        assert smtp.cmd("MAIL FROM:<someone@sender.example>")[0] == 250
        code, _ = smtp.cmd(f"RCPT TO:{rcpt}")
        if code != 250:
            return code, "", subject
        assert smtp.cmd("DATA")[0] == 354
        smtp.send(
            f"From: someone@sender.example\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@sender.example>\r\n\r\nabuse report\r\n.\r\n".encode()
        )
        end = smtp.reply()
        smtp.cmd("QUIT")
    finally:
        smtp.close()
    return code, f"{end[0]} {end[1]}", subject


def _has(server: Server, user: str, subject: str) -> bool:
    return any(subject.encode() in m for m in mailbox(server.ports["pop3s"], user))


@pytest.mark.parametrize(
    "rcpt", ["<postmaster@example.test>", "<PostMaster@Example.TEST>", "<postmaster>"]
)
def test_postmaster_without_account_reaches_first_user(server: Server, rcpt: str) -> None:
    code, end, subject = _deliver(server, rcpt)
    assert code == 250 and end.startswith("250")
    assert _has(server, "alice@example.test", subject)


def test_other_unknown_users_are_still_refused(server: Server) -> None:
    assert _deliver(server, "<postmasters@example.test>")[0] == 550
    assert _deliver(server, "<nobody@example.test>")[0] == 550


def test_configured_postmaster_and_domain_without_users(start_server: object) -> None:
    srv: Server = start_server({"postmaster": '"bob@example.test"'})  # type: ignore[operator]
    code, _, subject = _deliver(srv, "<postmaster@example.test>")
    assert code == 250 and _has(srv, "bob@example.test", subject)
    assert correo(srv.data, "domain", "add", "empty.test").returncode == 0
    code, _, subject = _deliver(srv, "<postmaster@empty.test>")
    assert code == 250 and _has(srv, "bob@example.test", subject)
    # an account or alias named postmaster wins over the fallback
    r = correo(srv.data, "alias", "add", "postmaster@example.test", "carol@example.test")
    assert r.returncode == 0, r.stderr
    code, _, subject = _deliver(srv, "<postmaster@example.test>")
    assert code == 250 and _has(srv, "carol@example.test", subject)
