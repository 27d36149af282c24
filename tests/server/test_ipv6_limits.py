"""The per-client connection limit on an IPv6 listener, over real sockets on ::1.

Only ::1 exists on the loopback interface, so the grouping of a whole /64 is tested
on the limiter itself (tests/unit/test_peer_limits.py); here an IPv6 client is
counted and refused like an IPv4 one.
"""

from __future__ import annotations

import re
import socket

import pytest

from tests.conftest import Server


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")


def _greeting(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("::1", port), timeout=10)
    return sock, sock.recv(200)


def test_ipv6_clients_are_counted_per_network(start_server: object) -> None:
    srv: Server = start_server(  # type: ignore[operator]
        {"smtp": '["[::1]:0"]', "connections_per_ip": "2", "ipv6_prefix": "64"}
    )
    match = re.search(r"\bsmtp=::1:(\d+)", srv.log())
    assert match, srv.log()
    port = int(match.group(1))
    held = [_greeting(port) for _ in range(2)]
    assert all(g.startswith(b"220 ") for _, g in held)
    extra, refused = _greeting(port)
    assert refused.startswith(b"421 4.7.0"), refused
    extra.close()
    for sock, _ in held:
        sock.close()
    assert srv.wait_log("event=server.too_many_connections", 5)  # logged after the 421
