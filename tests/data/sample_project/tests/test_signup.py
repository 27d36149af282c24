"""The sample application's tests, written as its developers would: the correo_server
fixture comes from the plugin that ``pip install correo`` registers."""

from __future__ import annotations

import imaplib
import os

import pytest
from signup import MailSettings, welcome


@pytest.fixture
def settings(correo_server):
    correo_server.add_user("noreply@example.test", "app-password")
    host, port = correo_server.submission
    return MailSettings(
        host,
        port,
        "noreply@example.test",
        "app-password",
        "Shop <noreply@example.test>",
        tls=correo_server.client_tls(),
    )


def test_welcome_goes_out_to_a_remote_customer(correo_server, settings):
    welcome(settings, "ann@customer.example", "Ann")
    sent = correo_server.wait_for_outbound(lambda m: m["To"] == "ann@customer.example")
    assert sent.envelope_to == ("ann@customer.example",)
    assert sent["Subject"] == "Welcome, Ann!"
    assert sent["DKIM-Signature"] is not None  # signed on the way out
    assert "account is ready" in sent.get_body(("plain",)).get_content()
    print("worker", os.environ.get("PYTEST_XDIST_WORKER"), "port", correo_server.smtp[1])


def test_welcome_to_a_local_user_is_readable_over_imap(correo_server, settings):
    correo_server.add_user("bob@example.test", "bob-password")
    welcome(settings, "bob@example.test", "Bob")
    message = correo_server.wait_for("bob@example.test", lambda m: "Bob" in m["Subject"])
    assert message.get_body(("html",)).get_content().startswith("<p>Hello <b>Bob</b>")
    with imaplib.IMAP4(*correo_server.imap) as imap:
        imap.starttls(ssl_context=correo_server.client_tls())
        imap.login("bob@example.test", "bob-password")
        imap.select("INBOX", readonly=True)
        status, data = imap.search(None, "SUBJECT", '"Welcome, Bob"')
        assert status == "OK" and data[0].split() == [b"1"]
    print("worker", os.environ.get("PYTEST_XDIST_WORKER"), "port", correo_server.smtp[1])


def test_a_wrong_password_is_refused(correo_server, settings):
    wrong = MailSettings(**{**settings.__dict__, "password": "not-it"})
    with pytest.raises(Exception, match="535"):
        welcome(wrong, "ann@customer.example", "Ann")
    assert correo_server.outbound() == []


def test_the_session_server_is_shared(correo_server_session):
    host, port = correo_server_session.smtp
    assert host == "127.0.0.1" and port >= 1024
    print("worker", os.environ.get("PYTEST_XDIST_WORKER"), "port", port)
