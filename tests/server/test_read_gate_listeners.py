"""The web listener and the PROXY-protocol listeners hand reads on a share per turn.

As test_mass_close.py does for the mail listeners: clients in this process act together,
so the server side reads all their ends (or all their PROXY headers) in one poll, and a
callback run once per turn of the loop counts what reached the application. At most
``READS_PER_TURN`` a turn get through (without the gate all of them go in one turn), and
every connection still sees its end, every client the server's.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import ssl
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from correo.log import Logger
from correo.server.connection import READS_PER_TURN
from correo.server.proxy import ProxyPolicy
from correo.server.tls import generate_self_signed, server_context
from correo.server.web_listener import Connections, WebListener
from tests.conftest import client_tls

IN_PROCESS = 3 * READS_PER_TURN + 17
V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 993\r\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

Peer = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


def _run(kind: str, main: Callable[[], Awaitable[None]]) -> None:
    if kind == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    root = tmp_path_factory.mktemp("tls")
    generate_self_signed(root / "cert.pem", root / "key.pem", "localhost")
    return server_context(root / "cert.pem", root / "key.pem")


class PerTurn:
    """``count()`` sampled now and once per turn of the loop until it reaches ``target``."""

    def __init__(self, count: Callable[[], int], target: int) -> None:
        self.count = count
        self.target = target
        self.samples = [count()]
        self._loop = asyncio.get_running_loop()
        self._reached: asyncio.Future[None] = self._loop.create_future()
        self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.samples.append(self.count())
        if self.samples[-1] >= self.target:
            self._reached.set_result(None)
        else:
            self._loop.call_soon(self._tick)

    async def steps(self) -> list[int]:
        """Once ``target`` is reached: what changed in each turn."""
        await asyncio.wait_for(self._reached, 60)
        return [b - a for a, b in itertools.pairwise(self.samples)]


def _spread(steps: list[int]) -> None:
    """At most a share per turn, over as many turns as that takes."""
    assert max(steps) <= READS_PER_TURN, steps
    assert len([s for s in steps if s]) >= IN_PROCESS // READS_PER_TURN, steps


async def _open(n: int, opener: Callable[[], Awaitable[Peer]]) -> list[Peer]:
    peers: list[Peer] = []
    while len(peers) < n:
        peers += await asyncio.gather(*(opener() for _ in range(min(100, n - len(peers)))))
    return peers


async def _leave(peers: list[Peer]) -> None:
    """All close in one turn; each then sees the server's end."""
    for _, writer in peers:  # each sends its close_notify (or FIN) now
        writer.close()
    for reader, writer in peers:
        try:
            assert await asyncio.wait_for(reader.read(), 60) == b""
            await asyncio.wait_for(writer.wait_closed(), 60)
        except ConnectionResetError:
            pass  # the server's end came as a reset: an end all the same


async def _answered(reader: asyncio.StreamReader) -> None:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"connection: close" not in head.lower(), head
    assert await asyncio.wait_for(reader.readexactly(3), 30) == b"ok\n"


@pytest.mark.parametrize("kind", _loops())
@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_web_keepalive_clients_leaving_in_one_poll_end_a_share_per_turn(
    kind: str, tls: bool, context: ssl.SSLContext
) -> None:
    """Keep-alive clients of the aiohttp listener that all leave at once: their ends are
    handed to aiohttp a share per turn, and every connection is ended on both sides."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        slots: list[str] = []
        listener = WebListener(
            app,
            service="https",
            log=Logger(io.StringIO()),
            admit=lambda ip: slots.append(ip) or ip,
            release=lambda slot: None,
            head_timeout=60.0,
            connections=Connections(),
            tls=context if tls else None,
        )
        [(_, port), *_] = await listener.start("127.0.0.1", 0)
        client = client_tls() if tls else None

        async def opener() -> Peer:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.write(REQUEST)
            await _answered(reader)
            return reader, writer

        peers = await _open(IN_PROCESS, opener)
        assert listener.open_connections == IN_PROCESS
        gone = PerTurn(lambda: IN_PROCESS - listener.open_connections, IN_PROCESS)
        await _leave(peers)
        steps = await gone.steps()  # every connection_lost, the last ones' too
        assert sum(steps) == IN_PROCESS
        _spread(steps)
        assert len(slots) == IN_PROCESS
        await listener.stop()

    _run(kind, main)


@pytest.mark.parametrize("kind", _loops())
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_proxied_clients_leaving_in_one_poll_end_a_share_per_turn(
    kind: str, tls: bool, context: ssl.SSLContext
) -> None:
    """Behind a balancer (the PROXY header, then TLS on an implicit-TLS listener) the
    connections read through the same gate: their ends reach the sessions a share per
    turn, and each session saw the client the header named."""

    async def main() -> None:
        readers: list[asyncio.StreamReader] = []
        sources: list[tuple[str, int] | None] = []
        ended: list[bytes] = []

        def factory(source: tuple[str, int] | None) -> asyncio.Protocol:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                readers.append(reader)
                sources.append(source)
                writer.write(b"* OK\r\n")
                ended.append(await reader.read())
                writer.close()

            return asyncio.StreamReaderProtocol(asyncio.StreamReader(), handle)

        policy = ProxyPolicy(["127.0.0.1"], timeout=30, log=Logger(io.StringIO()))
        [(_, port)] = await policy.listen(
            "127.0.0.1", 0, factory, service="imaps", tls=context if tls else None
        )
        client = client_tls()

        async def opener() -> Peer:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(V1)
            if tls:
                await writer.start_tls(client)
            assert await asyncio.wait_for(reader.readline(), 30) == b"* OK\r\n"
            return reader, writer

        peers = await _open(IN_PROCESS, opener)
        assert sources == [("203.0.113.7", 40000)] * IN_PROCESS
        seen = PerTurn(lambda: sum(r.at_eof() for r in readers), IN_PROCESS)
        await _leave(peers)
        steps = await seen.steps()
        assert ended == [b""] * IN_PROCESS
        assert sum(steps) == IN_PROCESS
        _spread(steps)
        policy.close()

    _run(kind, main)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", _loops())
def test_proxy_headers_arriving_in_one_poll_are_read_a_share_per_turn(kind: str) -> None:
    """Balancer connections opened first and their headers sent later, all at once: the
    server's header readers, each waiting for its socket, are woken a share per turn, and
    every connection is then made with the client its header named."""

    async def main() -> None:
        made: list[tuple[str, int] | None] = []

        def factory(source: tuple[str, int] | None) -> asyncio.Protocol:
            made.append(source)

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(b"* OK\r\n")
                await reader.read()
                writer.close()

            return asyncio.StreamReaderProtocol(asyncio.StreamReader(), handle)

        policy = ProxyPolicy(["127.0.0.1"], timeout=60, log=Logger(io.StringIO()))
        [(_, port)] = await policy.listen("127.0.0.1", 0, factory, service="imap")
        base = _open_fds()
        peers = await _open(IN_PROCESS, lambda: asyncio.open_connection("127.0.0.1", port))
        # each reader waits for its header: the client's socket, the accepted one and the
        # duplicate the reader waits on (server/proxy.py read_header)
        for _ in range(6000):
            if _open_fds() >= base + 3 * IN_PROCESS:
                break
            await asyncio.sleep(0.01)
        assert _open_fds() >= base + 3 * IN_PROCESS
        assert not made
        headers = PerTurn(lambda: len(made), IN_PROCESS)
        for _, writer in peers:  # every header in one turn
            writer.write(V1)
        for reader, _ in peers:
            assert await asyncio.wait_for(reader.readline(), 60) == b"* OK\r\n"
        steps = await headers.steps()
        assert made == [("203.0.113.7", 40000)] * IN_PROCESS
        _spread(steps)
        await _leave(peers)
        policy.close()

    _run(kind, main)
