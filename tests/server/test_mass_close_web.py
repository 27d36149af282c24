"""Thousands of HTTPS and PROXY-protocol clients that leave together do not hold the loop.

The web listener (aiohttp behind server/web_listener.py) and the listeners behind a load
balancer (server/proxy.py) read through the same gate as the mail listeners
(server/connection.py): when the ends of thousands of streams are read in one poll,
a bounded share is handed on per turn of the loop. As in test_mass_close.py the server
is stopped (SIGSTOP) while the clients close, so every end waits for the next poll, and
the property checked is the server's own report (``loop.blocked``: over 100 ms of the
loop thread's CPU), not a time seen by the test, and that every connection is ended.

At 3,000 clients (the count a loaded CI machine connects in well under 30 s) these ends
cost less than the 100 ms reported even without the gate; at 6,000 the listeners without
it reported 140-335 ms. That the gate hands them on a share per turn is asserted in
process, by test_read_gate_listeners.py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Server, client_tls
from tests.server.test_mass_close import _raise_fd_limit, leave_at_once

COUNT = 3000  # as test_mass_close
V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 993\r\n"
REQUEST = b"GET /no-such-page HTTP/1.1\r\nHost: localhost\r\n\r\n"

Opener = Callable[[int, ssl.SSLContext], Awaitable[asyncio.StreamWriter]]


async def _https(port: int, tls: ssl.SSLContext) -> asyncio.StreamWriter:
    """A keep-alive HTTPS client that has had one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer.write(REQUEST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    assert head.startswith(b"HTTP/1.1 404"), head
    assert b"connection: close" not in head.lower(), head
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), 60)
    return writer


async def _proxied_imaps(port: int, tls: ssl.SSLContext) -> asyncio.StreamWriter:
    """An IMAPS client behind a balancer: the PROXY header, then TLS and the greeting."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(V1)
    await writer.drain()
    await writer.start_tls(tls)
    line = await asyncio.wait_for(reader.readline(), 60)
    assert line.startswith(b"* OK"), line
    return writer


async def _connect(opener: Opener, port: int) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    tls = client_tls()
    for _ in range(COUNT // 100):  # handshakes a hundred at a time (the listen backlog)
        writers += await asyncio.gather(*(opener(port, tls) for _ in range(100)))
    return writers


def _limits(**more: str) -> dict[str, str]:
    return {
        "connections": str(2 * COUNT),
        "connections_per_ip": str(2 * COUNT),
        "level": '"info"',  # as deployed: the fixture's debug logs every session twice
        **more,
    }


def test_thousands_of_https_keepalive_clients_leaving_at_once(start_server: object) -> None:
    _raise_fd_limit(COUNT + 1000)
    srv: Server = start_server(_limits())  # type: ignore[operator]
    leave_at_once(srv, lambda: _connect(_https, srv.ports["https"]))
    srv.stop()  # raises if the watchdog saw the loop held over 100 ms


@pytest.mark.parametrize("service", ["imaps", "https"])
def test_thousands_of_proxied_clients_leaving_at_once(start_server: object, service: str) -> None:
    _raise_fd_limit(COUNT + 1000)
    srv: Server = start_server(_limits(proxy_protocol='["127.0.0.1"]'))  # type: ignore[operator]

    async def https(port: int, tls: ssl.SSLContext) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(V1)
        await writer.drain()
        await writer.start_tls(tls)
        writer.write(REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        assert head.startswith(b"HTTP/1.1 404"), head
        return writer

    opener = _proxied_imaps if service == "imaps" else https
    leave_at_once(srv, lambda: _connect(opener, srv.ports[service]))
    srv.stop()
