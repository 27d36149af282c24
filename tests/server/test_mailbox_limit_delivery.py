"""Sieve ``fileinto :create`` keeps to the account's mailbox limit, as IMAP CREATE does:
a sender cannot grow a user's folder tree without end by varying a filed-into name."""

from __future__ import annotations

from tests.conftest import Server
from tests.server.test_mda_delivery import ALICE, folder, imap, message, put_script, smtp_send


def test_fileinto_create_past_the_limit_keeps_in_inbox(start_server: object) -> None:
    srv: Server = start_server({"mailboxes_per_account": "1"})  # type: ignore[operator]
    put_script(
        srv,
        ALICE,
        'require ["fileinto", "mailbox", "variables"];\n'
        'if header :matches "subject" "box *" { fileinto :create "f/${1}"; stop; }\n',
    )
    assert smtp_send(srv, "dave@remote.test", [ALICE], message("box one"))[0] == 250
    inbox = folder(srv, ALICE, "INBOX")
    assert any(b"Subject: box one" in m for m in inbox)  # implicit keep
    m = imap(srv, ALICE)
    _, names = m.list()
    m.logout()
    assert not any(b"f/one" in n for n in names if n)  # type: ignore[operator]
    assert "delivery.mailbox_limit" in srv.log()
