"""Interop: jmapc, a JMAP client library nobody here wrote, against correo over TLS:
the session, Mailbox/get, Email/query and Email/get with bodyValues (by result
reference), a keyword set, and a move between mailboxes."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORDS, Server
from tests.server.imap_helpers import imap, message, unique

jmapc = pytest.importorskip("jmapc")

from jmapc import Client, EmailQueryFilterCondition, MailboxQueryFilterCondition, Ref  # noqa: E402
from jmapc.methods import (  # noqa: E402
    EmailGet,
    EmailGetResponse,
    EmailQuery,
    EmailSet,
    EmailSetResponse,
    MailboxGet,
    MailboxGetResponse,
    MailboxQuery,
    MailboxSet,
    MailboxSetResponse,
)
from jmapc.models import Mailbox  # noqa: E402

ALICE = "alice@example.test"


def _client(server: Server) -> Client:
    client = Client.create_with_password(
        f"127.0.0.1:{server.ports['https']}", ALICE, PASSWORDS[ALICE]
    )
    client.requests_session.verify = False  # the test certificate is self-signed
    client.requests_session.trust_env = False
    return client


def test_jmapc_reads_flags_and_moves(server: Server) -> None:
    subject = unique("jmapc")
    box = imap(server)
    box.append("INBOX", "", '"01-Jan-2024 10:00:00 +0000"', message(subject, "jmapc body\r\n"))
    box.logout()
    client = _client(server)
    assert client.account_id == client.jmap_session.primary_accounts.mail
    boxes = client.request(MailboxGet(ids=None))
    assert isinstance(boxes, MailboxGetResponse)
    inbox = next(m for m in boxes.data if m.role == "inbox")
    results = client.request(
        [
            MailboxQuery(filter=MailboxQueryFilterCondition(role="inbox")),
            EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=Ref("/ids/0"))),
            EmailGet(
                ids=Ref("/ids"),
                properties=["id", "subject", "keywords", "mailboxIds", "bodyValues", "textBody"],
                fetch_text_body_values=True,
            ),
        ]
    )
    got = results[2].response
    assert isinstance(got, EmailGetResponse)
    email = next(e for e in got.data if e.subject == subject)
    assert email.mailbox_ids == {inbox.id: True}
    assert email.text_body and email.body_values
    part = email.text_body[0].part_id
    assert email.body_values[part].value == "jmapc body\r\n"
    seen = client.request(EmailSet(update={email.id: {"keywords/$seen": True}}))
    assert isinstance(seen, EmailSetResponse) and seen.updated and email.id in seen.updated
    made = client.request(MailboxSet(create={"a": Mailbox(name=subject + "-box")}))
    assert isinstance(made, MailboxSetResponse) and made.created
    target = made.created["a"].id
    assert target is not None
    moved = client.request(EmailSet(update={email.id: {"mailboxIds": {target: True}}}))
    assert isinstance(moved, EmailSetResponse) and moved.updated and email.id in moved.updated
    after = client.request(EmailGet(ids=[email.id], properties=["keywords", "mailboxIds"]))
    assert isinstance(after, EmailGetResponse)
    assert after.data[0].mailbox_ids == {target: True}
    assert after.data[0].keywords == {"$seen": True}
    check = imap(server)
    check.select(subject + "-box")
    _, flags = check.fetch("1", "(FLAGS)")
    assert b"\\Seen" in flags[0]
    check.logout()
