"""Connection limits and stalled TLS handshakes, over real sockets."""

from __future__ import annotations

import socket
import time

from tests.conftest import Server, client_tls


def _greeting(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock, sock.recv(200)


def test_per_ip_limit_and_stalled_handshakes(start_server: object) -> None:
    srv: Server = start_server(  # type: ignore[operator]
        {"connections_per_ip": "3", "command_timeout": "1.5"}
    )
    smtp = srv.ports["smtp"]
    held = [_greeting(smtp) for _ in range(3)]
    assert all(g.startswith(b"220 ") for _, g in held)
    extra, refused = _greeting(smtp)
    assert refused.startswith(b"421 4.7.0"), refused
    extra.close()
    with client_tls().wrap_socket(  # an implicit-TLS client over the limit is told so, in TLS
        socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=10)
    ) as tls:
        assert tls.recv(200).startswith(b"* BYE [UNAVAILABLE]")
    held.pop()[0].close()
    deadline = time.monotonic() + 10  # the server counts the close when it reads the FIN
    again, greeting = _greeting(smtp)
    while greeting.startswith(b"421 ") and time.monotonic() < deadline:
        again.close()
        time.sleep(0.05)
        again, greeting = _greeting(smtp)
    assert greeting.startswith(b"220 "), greeting  # a place freed is a place taken
    again.close()
    for sock, _ in held:
        sock.close()
    # A TLS handshake that never comes is dropped after command_timeout (1.5 s here, at
    # most 30 s): closed within the 20 s the client waits (a timeout fails the test) is
    # the configured bound's doing, however loaded the machine.
    stalled = socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=20)
    assert stalled.recv(100) == b""
    stalled.close()
    log = srv.log()
    assert "event=server.too_many_connections" in log
    assert "Traceback" not in log
