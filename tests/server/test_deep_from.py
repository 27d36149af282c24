"""A From: with thousands of nested comments gets a reply, on the MX and on submission.

The address reader once recursed per comment level: about 5,000 ``(`` raised
RecursionError during DATA, and the session dropped with no reply.
"""

from __future__ import annotations

import smtplib

from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.helpers import RawSmtp

ALICE = "alice@example.test"


def deep_from(address: str, depth: int = 5000) -> bytes:
    """A From: with ``depth`` nested comments, folded into lines under 80 octets."""
    opens, closes = "(" * depth, ")" * depth
    head = "\r\n ".join(opens[i : i + 70] for i in range(0, depth, 70))
    tail = "\r\n ".join(closes[i : i + 70] for i in range(0, depth, 70))
    return f"From: {head}x\r\n {tail} <{address}>\r\n".encode()


def test_deeply_nested_from_comment_on_the_mx_is_answered(server: Server) -> None:
    raw = RawSmtp(server.ports["smtp"])
    assert raw.cmd("EHLO client.test")[0] == 250
    assert raw.cmd("MAIL FROM:<someone@remote.test>")[0] == 250
    assert raw.cmd("RCPT TO:<carol@example.test>")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send(deep_from("someone@remote.test") + b"Subject: deep\r\n\r\nbody\r\n.\r\n")
    code, text = raw.reply()
    assert code == 250 or code >= 500, text
    assert raw.cmd("NOOP")[0] == 250  # the session survived
    assert raw.cmd("QUIT")[0] == 221
    raw.close()


def test_deeply_nested_from_comment_on_submission_is_answered(server: Server) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.ports["submissions"], context=client_tls(), timeout=10
    ) as s:
        s.login(ALICE, PASSWORDS[ALICE])
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt("carol@example.test")[0] == 250
        code, text = s.data(deep_from(ALICE) + b"Subject: deep\r\n\r\nbody\r\n")
        assert code == 250 or code >= 500, text
        assert s.noop()[0] == 250
    assert "session_crashed" not in server.log()
