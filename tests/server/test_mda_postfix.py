"""Postfix -> correo over LMTP, as a site with Postfix in front uses it: a throwaway
Postfix instance whose ``virtual_transport`` is correo's LMTP listener delivers one
message end to end."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, make_data_dir
from tests.server.helpers import mailbox
from tests.server.postfix import Postfix, needs_postfix

pytestmark = [pytest.mark.interop, *needs_postfix]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postfix(tmp_path: Path) -> Iterator[tuple[Server, int, Postfix]]:
    data = tmp_path / "data"
    make_data_dir(data, {"sieve": '["127.0.0.1:0"]', "lmtp": '["127.0.0.1:0"]'})
    srv = Server(data)
    srv.start()
    host = "127.0.0.1"  # 127.0.0.5 is not a local interface in every container
    port = _free_port(host)
    try:
        with Postfix() as pf:
            pf.start(
                "relay.example.test",
                f"{host}:{port}",
                "virtual_mailbox_domains = example.test\n"
                "virtual_mailbox_maps = static:ok\n"
                f"virtual_transport = lmtp:inet:127.0.0.1:{srv.ports['lmtp']}\n"
                "lmtp_tls_security_level = none\n",
            )
            yield srv, port, pf
    finally:
        srv.stop()


def test_postfix_delivers_over_lmtp(postfix: tuple[Server, int, Postfix]) -> None:
    srv, port, pf = postfix
    before = len(mailbox(srv.ports["pop3s"], "bob@example.test"))
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.sendmail(
            "dave@remote.test",
            ["bob@example.test"],
            b"From: dave@remote.test\r\nTo: bob@example.test\r\nSubject: via postfix\r\n\r\nHi\r\n",
        )
    deadline = time.monotonic() + 30
    while True:
        stored = mailbox(srv.ports["pop3s"], "bob@example.test")
        if len(stored) > before or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    log = pf.log()
    assert len(stored) == before + 1, log[-3000:]
    assert b"Subject: via postfix" in stored[-1] and b"with LMTP" in stored[-1]
    assert "status=sent" in log
