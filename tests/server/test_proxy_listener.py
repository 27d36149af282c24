"""The PROXY listener (server/proxy.py) in process, on asyncio's loop and on uvloop.

The header is consumed octet-exactly: what the client sent after it — a first command,
or a TLS ClientHello written in the same segment as the header — reaches the protocol
(or the handshake) whole. Untrusted peers are passed through untouched; a trusted peer
that stalls is dropped; closing the policy drops connections still being opened.
"""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from correo.log import Logger
from correo.server.proxy import ProxyPolicy
from tests.pki import TestCA

V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n"
V2 = (
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24"
    + socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    + (40001).to_bytes(2, "big")
    + (993).to_bytes(2, "big")
)

Seen = list[tuple[tuple[str, int] | None, bytes]]


def _run(loop_name: str, main: Callable[[], Awaitable[None]]) -> None:
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())


def _echo_factory(seen: Seen) -> Callable[[tuple[str, int] | None], asyncio.BaseProtocol]:
    """Each connection records (client, its first line) and answers ``ok``."""

    def factory(source: tuple[str, int] | None) -> asyncio.BaseProtocol:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            seen.append((source or writer.get_extra_info("peername")[:2], line))
            writer.write(b"ok\r\n")
            await writer.drain()
            writer.close()

        return asyncio.StreamReaderProtocol(asyncio.StreamReader(), handle)

    return factory


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pki")
    TestCA(root).issue("localhost", root / "cert.pem", root / "key.pem")
    return root / "cert.pem", root / "key.pem"


LOOPS = ["asyncio", "uvloop"]


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True when the server ends the connection (a reset too: unread input) unanswered."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("loop_name", LOOPS)
def test_plain_header_then_command_in_one_segment(loop_name: str) -> None:
    seen: Seen = []

    async def main() -> None:
        policy = ProxyPolicy(["127.0.0.1"], timeout=5, log=Logger(io.StringIO()))
        [(_, port)] = await policy.listen("127.0.0.1", 0, _echo_factory(seen), service="t")
        for header in (V1, V2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(header + b"EHLO x\r\nSECOND\r\n")
            assert await reader.readline() == b"ok\r\n"
            writer.close()
        # untrusted: its bytes are the protocol's, header-looking or not
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        writer.write(V1)
        assert await reader.readline() == b"ok\r\n"
        writer.close()
        policy.close()

    _run(loop_name, main)
    assert seen[0] == (("203.0.113.7", 40000), b"EHLO x\r\n")
    assert seen[1] == (("2001:db8::7", 40001), b"EHLO x\r\n")
    assert seen[2][0][0] == "127.0.0.2" and seen[2][1] == V1


@pytest.mark.parametrize("loop_name", LOOPS)
def test_clienthello_in_the_header_segment(loop_name: str, tls_pair: tuple[Path, Path]) -> None:
    """A balancer may send header and ClientHello in one write: the handshake gets the
    ClientHello whole, because only the header's octets were taken from the socket."""
    seen: Seen = []
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(*tls_pair)

    async def main() -> None:
        policy = ProxyPolicy(["127.0.0.1"], timeout=5, log=Logger(io.StringIO()))
        [(_, port)] = await policy.listen(
            "127.0.0.1", 0, _echo_factory(seen), service="t", tls=server_tls
        )
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        loop = asyncio.get_running_loop()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            obj.do_handshake()
        await loop.sock_sendall(sock, V2 + outgoing.read())  # one segment
        while True:
            data = await loop.sock_recv(sock, 65536)
            assert data, "closed during the handshake"
            incoming.write(data)
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await loop.sock_sendall(sock, outgoing.read())
        await loop.sock_sendall(sock, outgoing.read())
        obj.write(b"a LOGIN\r\n")
        await loop.sock_sendall(sock, outgoing.read())
        answer = b""
        while b"ok" not in answer:
            data = await loop.sock_recv(sock, 65536)
            assert data
            incoming.write(data)
            try:
                answer += obj.read()
            except ssl.SSLWantReadError:
                pass
        sock.close()
        policy.close()

    _run(loop_name, main)
    assert seen == [(("2001:db8::7", 40001), b"a LOGIN\r\n")]


@pytest.mark.parametrize("loop_name", LOOPS)
def test_stalled_and_bad_headers_are_dropped(loop_name: str) -> None:
    log = io.StringIO()
    seen: Seen = []

    async def main() -> None:
        policy = ProxyPolicy(["127.0.0.1"], timeout=0.5, log=Logger(log))
        [(_, port)] = await policy.listen("127.0.0.1", 0, _echo_factory(seen), service="t")
        stalled_r, stalled_w = await asyncio.open_connection("127.0.0.1", port)
        stalled_w.write(V1[:20])
        bad_r, bad_w = await asyncio.open_connection("127.0.0.1", port)
        bad_w.write(b"EHLO x\r\n")
        assert await _closed(bad_r)  # at once
        assert await _closed(stalled_r)  # at the timeout
        pending_r, pending_w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        policy.close()  # the server stops: a connection still opening is dropped
        assert await _closed(pending_r)
        for w in (stalled_w, bad_w, pending_w):
            w.close()

    _run(loop_name, main)
    assert not seen
    text = log.getvalue()
    assert "no PROXY header" in text and "in time" in text, text
    assert text.count("event=proxy.refused") == 2, text
