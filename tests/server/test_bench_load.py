"""The bench's SMTP load generator over TLS: STARTTLS on the MX port and submissions with
AUTH PLAIN, against a real correo, so the bench measures what it claims to (every message
accepted, delivered, and DKIM-signed on submission)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from smtp_load import Security, run, run_load

from tests.conftest import PASSWORDS, Server
from tests.server.helpers import mailbox

ALICE = "alice@example.test"
BOB = "bob@example.test"


def _signed_by_domain(msg: bytes) -> bool:
    return b"\r\nDKIM-Signature:" in msg and b"d=example.test" in msg


def test_starttls_on_the_mx_port_delivers_every_message(server: Server) -> None:
    before = len(mailbox(server.ports["pop3s"], BOB))
    res = run(
        run_load(
            "127.0.0.1", server.ports["smtp"], n=12, concurrency=3, size=3000,
            sec=Security(starttls=True), rcpts=[BOB],
        )
    )  # fmt: skip
    assert (res.accepted, res.errors) == (12, 0), res.error_samples
    got = mailbox(server.ports["pop3s"], BOB)[before:]
    assert len(got) == 12
    assert all(b"with ESMTPS" in m for m in got)  # RFC 3848: received over TLS
    assert not any(_signed_by_domain(m) for m in got)  # MX mail is not ours to sign


def test_submissions_with_auth_plain_is_signed_and_delivered(server: Server) -> None:
    before = len(mailbox(server.ports["pop3s"], BOB))
    sec = Security(tls=True, auth=(ALICE, PASSWORDS[ALICE]))
    res = run(
        run_load(
            "127.0.0.1", server.ports["submissions"], n=10, concurrency=2, size=4000,
            sec=sec, rcpts=[BOB],
        )
    )  # fmt: skip
    assert (res.accepted, res.errors) == (10, 0), res.error_samples
    got = mailbox(server.ports["pop3s"], BOB)[before:]
    assert len(got) == 10
    assert all(
        _signed_by_domain(m) and f"From: Load Generator <{ALICE}>".encode() in m for m in got
    )


def test_a_wrong_password_is_counted_as_errors_not_accepted(server: Server) -> None:
    sec = Security(tls=True, auth=(ALICE, "not-the-password"))
    res = run(
        run_load(
            "127.0.0.1", server.ports["submissions"], n=2, concurrency=1, size=1000,
            sec=sec, rcpts=[BOB],
        )
    )  # fmt: skip
    assert (res.accepted, res.errors) == (0, 1)  # the connection gives up, no retry storm
    assert "AUTH: 535" in res.error_samples[0]
