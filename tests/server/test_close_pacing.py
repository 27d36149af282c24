"""Connections that end together are taken down a bounded number per turn of the loop
(server/connection.py), whether the server closes them or their clients leave at once:
the loop's other callbacks run in between, every connection still ends, and its peer
sees the end."""

from __future__ import annotations

import asyncio
import itertools

from correo.server.connection import CLOSES_PER_TURN, Connection, TurnGate

COUNT = 3 * CLOSES_PER_TURN + 17


Peer = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _pairs(n: int) -> tuple[list[Connection], list[Peer], asyncio.Server]:
    accepted: asyncio.Queue[Connection] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(Connection(reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peers = []
    for _ in range(n):
        peers.append(await asyncio.open_connection("127.0.0.1", port))
    conns = [await asyncio.wait_for(accepted.get(), 30) for _ in range(n)]
    return conns, peers, server


def test_a_burst_of_closes_is_spread_over_turns_of_the_loop() -> None:
    async def run() -> None:
        conns, peers, server = await _pairs(COUNT)
        loop = asyncio.get_running_loop()
        closed_per_turn: list[int] = []
        done = False

        def tick() -> None:  # once per turn: how many have begun to close by now
            closed_per_turn.append(sum(c.closed for c in conns))
            if not done:
                loop.call_soon(tick)

        loop.call_soon(tick)
        for conn in conns:
            conn.write(b"BYE\r\n")
        await asyncio.wait_for(asyncio.gather(*(c.close(linger=5) for c in conns)), 60)
        done = True
        assert all(c.closed for c in conns)
        steps = [b - a for a, b in itertools.pairwise(closed_per_turn)]
        assert max(steps) <= 2 * CLOSES_PER_TURN, steps
        assert len([s for s in steps if s]) >= COUNT // (2 * CLOSES_PER_TURN), steps
        # each peer got the last line, then the end of the stream
        for reader, writer in peers:
            assert await asyncio.wait_for(reader.read(), 10) == b"BYE\r\n"
            writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(run())


def test_clients_leaving_at_once_are_seen_a_bounded_number_per_turn() -> None:
    async def run() -> None:
        conns, peers, server = await _pairs(COUNT)
        loop = asyncio.get_running_loop()
        ended: list[bytes] = []
        per_turn: list[int] = []
        done = False

        async def read(conn: Connection) -> None:
            ended.append(await conn.read(60))

        def tick() -> None:
            per_turn.append(len(ended))
            if not done:
                loop.call_soon(tick)

        reads = [asyncio.create_task(read(c)) for c in conns]
        await asyncio.sleep(0.1)  # every read is waiting
        for _, writer in peers:
            writer.transport.abort()  # all at once
        loop.call_soon(tick)
        await asyncio.wait_for(asyncio.gather(*reads), 60)
        done = True
        assert ended == [b""] * COUNT
        steps = [b - a for a, b in itertools.pairwise(per_turn)]
        assert max(steps) <= 2 * CLOSES_PER_TURN, steps
        assert len([s for s in steps if s]) >= COUNT // (2 * CLOSES_PER_TURN), steps
        for conn in conns:
            await conn.close()
        server.close()
        await server.wait_closed()

    asyncio.run(run())


def test_gate_keeps_order_and_skips_a_cancelled_waiter() -> None:
    async def run() -> None:
        gate = TurnGate(2)
        order: list[int] = []

        async def one(i: int) -> None:
            await gate.wait()
            order.append(i)

        tasks = [asyncio.create_task(one(i)) for i in range(7)]
        await asyncio.sleep(0)  # all of them have reached the gate: 0 and 1 are through
        assert order == [0, 1]
        tasks[3].cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        assert order == [0, 1, 2, 4, 5, 6]
        assert tasks[3].cancelled()

    asyncio.run(run())
