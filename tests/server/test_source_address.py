"""Outgoing SMTP leaves from the configured address (so SPF and PTR match), over real
sockets: a next hop on another loopback address records where each connection came from.
Linux routes all of 127.0.0.0/8 to the loopback interface, so these need no setup.
"""

from __future__ import annotations

import json
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from correo.queue.routing import source_address
from tests.conftest import PASSWORDS, Server, client_tls, make_data_dir

HOP_IP = "127.0.0.8"


class Recorder:
    """Accepts SMTP on ``HOP_IP`` and notes each client's address; takes every message."""

    def __init__(self) -> None:
        self.sock = socket.create_server((HOP_IP, 0))
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer[0])
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 hop.test ESMTP\r\n")
            in_data = False
            for line in lines:
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        conn.sendall(b"250 2.0.0 taken\r\n")
                    continue
                verb = line[:4].upper()
                if verb == b"DATA":
                    in_data = True
                    conn.sendall(b"354 go on\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hop() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


def _server(tmp_path: Path, hop: Recorder, smtp: str, outbound: str = "") -> Server:
    data = tmp_path / "data"
    make_data_dir(data, {"smtp": f'["{smtp}:0"]'})
    transport = [f"dest.test smtp:[{HOP_IP}]:{hop.port}"]
    with (data / "correo.toml").open("a") as f:
        f.write(
            f"\n[outbound]\ntransport = {json.dumps(transport)}\n"
            f"poll_interval = 0.3\nretry_initial = 1.0\n{outbound}"
        )
    server = Server(data)
    server.start()
    return server


def _send(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.starttls(context=client_tls())
        s.login("alice@example.test", PASSWORDS["alice@example.test"])
        s.sendmail(
            "alice@example.test",
            ["someone@dest.test"],
            b"From: alice@example.test\r\nTo: someone@dest.test\r\nSubject: hi\r\n\r\nhi\r\n",
        )


def _first_peer(hop: Recorder, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while not hop.peers:
        assert time.monotonic() < deadline, "no connection reached the next hop"
        time.sleep(0.05)
    return hop.peers[0]


def test_mail_leaves_from_the_smtp_listeners_address(tmp_path: Path, hop: Recorder) -> None:
    server = _server(tmp_path, hop, "127.0.0.7")
    try:
        _send(server)
        assert _first_peer(hop) == "127.0.0.7"  # not the kernel's choice, 127.0.0.1
    finally:
        assert server.stop() == 0


def test_source_ipv4_is_used_when_set(tmp_path: Path, hop: Recorder) -> None:
    server = _server(tmp_path, hop, "127.0.0.1", 'source_ipv4 = "127.0.0.9"\n')
    try:
        _send(server)
        assert _first_peer(hop) == "127.0.0.9"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("target", "v4", "v6", "listeners", "expected"),
    [
        ("192.0.2.1", "", "", [("198.51.100.7", 25)], "198.51.100.7"),
        ("192.0.2.1", "203.0.113.5", "", [("198.51.100.7", 25)], "203.0.113.5"),
        ("192.0.2.1", "", "", [("0.0.0.0", 25)], None),  # any address: the kernel's choice
        ("2001:db8::1", "", "", [("::", 25)], None),
        ("192.0.2.1", "", "", [("198.51.100.7", 25), ("198.51.100.8", 25)], None),
        ("2001:db8::1", "", "", [("198.51.100.7", 25), ("2001:db8::7", 25)], "2001:db8::7"),
        ("2001:db8::1", "", "2001:db8::9", [("2001:db8::7", 25)], "2001:db8::9"),
        ("2001:db8::1", "203.0.113.5", "", [("198.51.100.7", 25)], None),  # no v6 of ours
        ("192.0.2.1", "", "", [("127.0.0.1", 25)], None),  # loopback cannot reach out
        ("127.0.0.3", "", "", [("127.0.0.2", 25)], "127.0.0.2"),
        ("192.0.2.1", "", "", [("mail.example.test", 25)], None),
        ("192.0.2.1", "", "", [], None),
    ],
)
def test_source_address_rules(
    target: str, v4: str, v6: str, listeners: list[tuple[str, int]], expected: str | None
) -> None:
    assert source_address(target, v4, v6, listeners) == expected
