"""asyncio's TLS connections read into a bounded buffer (server/tls.py), and data larger
than the buffer still crosses intact in both directions."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
from pathlib import Path

import pytest

from correo.server.tls import (
    TLS_READ_BUFFER,
    bound_tls_read_buffer,
    generate_self_signed,
    server_context,
)


def test_tls_connections_read_into_a_bounded_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # restored after the test: the bound is for the whole process
    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", 256 * 1024)
    bound_tls_read_buffer()
    assert asyncio.sslproto.SSLProtocol.max_size == TLS_READ_BUFFER <= 17 * 1024
    generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "localhost")
    server_tls = server_context(tmp_path / "c.pem", tmp_path / "k.pem")
    payload = bytes(range(256)) * 2000  # 512,000 octets: many reads of the buffer
    buffers: list[int] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_protocol = writer.transport._ssl_protocol  # type: ignore[attr-defined]
        buffers.append(len(ssl_protocol._ssl_buffer))
        writer.write(await reader.readexactly(len(payload)))
        await writer.drain()
        writer.close()

    async def run() -> bytes:
        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        client_tls = ssl.create_default_context()
        client_tls.check_hostname = False
        client_tls.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls)
        writer.write(payload)
        back = await reader.readexactly(len(payload))
        writer.close()
        server.close()
        await server.wait_closed()
        return back

    assert asyncio.run(run()) == payload
    assert buffers == [TLS_READ_BUFFER]
