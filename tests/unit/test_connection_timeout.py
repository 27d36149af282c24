"""Connection.read's idle timeout: one lazily moved timer per connection, over real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from correo.server.connection import Connection

Body = Callable[[Connection, asyncio.StreamWriter], Awaitable[None]]


async def _pair(body: Body) -> None:
    """Run ``body`` with the server side of a loopback connection and the client's writer."""
    accepted: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(Connection(reader, writer))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await asyncio.open_connection("127.0.0.1", port)
    conn = await accepted
    try:
        await body(conn, client)
    finally:
        client.close()
        await conn.close()
        server.close()
        await server.wait_closed()


def run(body: Body) -> None:
    asyncio.run(_pair(body))


def test_idle_read_times_out() -> None:
    async def body(conn: Connection, client: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.read(0.2)
        # It fired, and not early; how late a loaded machine lets it run is not its own.
        assert 0.15 < time.monotonic() - started < 10.0

    run(body)


def test_data_before_the_deadline_is_returned_and_the_deadline_moves_on() -> None:
    async def body(conn: Connection, client: asyncio.StreamWriter) -> None:
        async def talk() -> None:
            for _ in range(5):
                await asyncio.sleep(0.1)
                client.write(b"x\r\n")
                await client.drain()

        talker = asyncio.create_task(talk())
        got = b""
        for _ in range(5):  # 0.5 s in all, longer than one timeout: each read restarts it
            got += await conn.read(0.3)
        await talker
        assert got.count(b"x\r\n") == 5
        with pytest.raises(TimeoutError):
            await conn.read(0.2)  # and silence still ends it

    run(body)


def test_a_shorter_timeout_after_a_longer_one_applies() -> None:
    async def body(conn: Connection, client: asyncio.StreamWriter) -> None:
        client.write(b"a\r\n")
        await client.drain()
        assert await conn.read(30.0) == b"a\r\n"  # arms a timer 30 s away
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.read(0.2)
        assert time.monotonic() - started < 10.0  # the 0.2 s timer's, not the 30 s one's

    run(body)


def test_cancelling_a_read_is_not_a_timeout() -> None:
    async def body(conn: Connection, client: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(conn.read(0.3))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the connection still works, with its timeout, after a cancelled read
        client.write(b"b\r\n")
        await client.drain()
        assert await conn.read(1.0) == b"b\r\n"
        await asyncio.sleep(0.4)  # the old timer's moment passes while not reading
        client.write(b"c\r\n")
        await client.drain()
        assert await conn.read(1.0) == b"c\r\n"

    run(body)


def test_eof_is_empty_bytes() -> None:
    async def body(conn: Connection, client: asyncio.StreamWriter) -> None:
        client.close()
        assert await conn.read(5.0) == b""

    run(body)
