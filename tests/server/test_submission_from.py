"""Submission refuses a message whose From:/Sender: is not the user's, however it is spelled.

The check reads the header with the parser behind IMAP ENVELOPE, so no spelling (the
obsolete ``From :``, folding, groups, comments, several fields) lets a user show a mail
client one sender while the check saw another.
"""

from __future__ import annotations

import smtplib
import uuid

import pytest

from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.imap_helpers import imap

ALICE = "alice@example.test"
CAROL = "carol@example.test"


def _submit(server: Server, header: bytes, rcpt: str = CAROL) -> tuple[int, bytes]:
    """Send one message as alice over STARTTLS; the reply to the end of its data."""
    body = header + b"Subject: t\r\nMessage-ID: <" + uuid.uuid4().hex.encode() + b"@x>\r\n\r\nx\r\n"
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=client_tls())
        smtp.ehlo("client.test")
        smtp.login(ALICE, PASSWORDS[ALICE])
        try:
            smtp.sendmail(ALICE, [rcpt], body)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
    return 250, b""


def test_obsolete_from_with_own_sender_refused_like_plain_spoof(server: Server) -> None:
    plain = _submit(server, b"From: bob@example.test\r\nSender: alice@example.test\r\n")
    assert plain[0] == 553 and plain[1].startswith(b"5.7.1")
    for spelling in (b"From : ", b"From\t: ", b"FROM  :\t", b"from:\r\n "):
        header = spelling + b"bob@example.test\r\nSender: alice@example.test\r\n"
        assert _submit(server, header) == plain, spelling


@pytest.mark.parametrize(
    "header",
    [
        b"From: alice@example.test, bob@example.test\r\n",  # several mailboxes
        b"From: team: alice@example.test, bob@example.test;\r\n",  # group (RFC 6854)
        b'From: "alice@example.test" <bob@example.test>\r\n',  # quoted display name
        b"From: (alice@example.test) bob@example.test\r\n",  # comment before the address
        b"From: <alice@example.test> bob@example.test\r\n",  # text after <...>
        b"From: <alice@example.test> <bob@example.test>\r\n",
        b"From: alice@example.test bob@example.test\r\n",  # two words, one address?
        b"From: =?utf-8?q?bob=40example=2Etest?=\r\n",  # encoded word in place of an address
    ],
)
def test_every_originator_address_is_checked(server: Server, header: bytes) -> None:
    code, text = _submit(server, header)
    assert code == 553 and text.startswith(b"5.7.1"), (code, text)


@pytest.mark.parametrize(
    "header",
    [
        b"From: alice@example.test\r\nFrom : Alice <alice@example.test>\r\n",
        b"From: alice@example.test\r\nSender: alice@example.test\r\nSender: bob@x.test\r\n",
    ],
)
def test_more_than_one_from_or_sender_field_refused(server: Server, header: bytes) -> None:
    """RFC 5322 §3.6: exactly one From:, at most one Sender: — even naming the user."""
    code, text = _submit(server, header)
    assert code == 550 and text.startswith(b"5.6.0")


@pytest.mark.parametrize(
    "header",
    [
        b"From : Alice <alice@example.test>\r\n",
        b"From: =?utf-8?q?Al=C3=AFce?= <alice@example.test> (work)\r\n",
        b"From: team: alice@example.test;\r\n",
        b"From: undisclosed:;\r\nSender: alice@example.test\r\n",  # RFC 6854 §2.1
    ],
)
def test_own_address_in_any_spelling_accepted(server: Server, header: bytes) -> None:
    assert _submit(server, header) == (250, b"")


def test_imap_envelope_shows_the_address_the_check_saw(server: Server) -> None:
    """A stored ``From :`` message: ENVELOPE's From is the mailbox submission verified."""
    subject = uuid.uuid4().hex
    body = (
        b"From :\r\n Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
        b"Subject: " + subject.encode() + b"\r\n\r\nx\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=client_tls())
        smtp.login(ALICE, PASSWORDS[ALICE])
        assert smtp.sendmail(ALICE, ["bob@example.test"], body) == {}
    client = imap(server, "bob@example.test")
    try:
        client.select("INBOX")
        _, found = client.search(None, "SUBJECT", subject)
        number = found[0].split()[-1]
        _, data = client.fetch(number, "(ENVELOPE)")
    finally:
        client.logout()
    envelope = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b'(("Alice" NIL "alice" "example.test"))' in envelope


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (b"From: " + b"g:" * 5000 + b" alice@example.test;\r\n", 553),  # nested groups
        (b"From: " + b"(" * 5000 + b"alice@example.test\r\n", 550),  # all one comment
        (b"From: " + b"alice@example.test," * 8000 + b"\r\n", 553),  # over the word bound
    ],
)
def test_hostile_from_gets_a_reply(server: Server, header: bytes, code: int) -> None:
    """Deep nesting or a huge list is refused with a reply, in linear time."""
    assert _submit(server, header)[0] == code
