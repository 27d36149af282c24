"""``correo dkim rotate`` while the server runs: the next submitted message is signed with
the new selectors, without a restart (the server follows its keys)."""

from __future__ import annotations

import re
import smtplib
import time

from tests.conftest import PASSWORDS, Server, client_tls, correo
from tests.server.helpers import mailbox, message

ALICE, BOB = "alice@example.test", "bob@example.test"


def _selectors(stored: bytes) -> set[str]:
    header = stored.split(b"\r\n\r\n", 1)[0]
    return {s.decode() for s in re.findall(rb"DKIM-Signature:[^:]*?\bs=([\w-]+)", header, re.S)}


def test_a_rotation_counts_for_the_running_server(start_server: object) -> None:
    server: Server = start_server()  # type: ignore[operator]
    rotated = correo(server.data, "dkim", "rotate", "example.test")
    assert rotated.returncode == 0, rotated.stderr
    active = set(re.findall(r"^active +(\S+)\._domainkey", rotated.stdout, re.M))
    assert len(active) == 2, rotated.stdout
    deadline = time.monotonic() + 10
    while "event=dkim.reloaded" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], context=client_tls()) as smtp:
        smtp.login(ALICE, PASSWORDS[ALICE])
        smtp.sendmail(ALICE, [BOB], message(ALICE, BOB, "after the rotation"))
    (stored,) = mailbox(server.ports["pop3s"], BOB)
    assert _selectors(stored) == active
