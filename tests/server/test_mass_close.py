"""Thousands of TLS clients that hang up together do not hold the server's event loop.

Each TLS client that leaves costs the server a decryption of its close_notify, a
close_notify of its own and a shutdown timer. When the ends of thousands of streams are
read in one poll of the loop (a network blip, a load balancer that restarts, a client
that opened them to time it so), that work ran in one turn: half a second of CPU for
10,000 sessions. Reads of every mail listener now pass a gate of a bounded share per
turn (server/connection.py).

The server is stopped (SIGSTOP) while the clients close, so every end is waiting when it
runs again and the next poll takes them all, whatever the load of the machine; the
property checked is the server's own report (``loop.blocked``, over 100 ms of the loop
thread's CPU, which a descheduled process does not burn), not a time seen by the test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from correo.server.connection import READS_PER_TURN, Connection, serve_plain, serve_tls
from correo.server.tls import generate_self_signed, server_context
from tests.conftest import Server, client_tls

COUNT = 3000  # at about 50 µs of CPU each, 150 ms in one turn without the gate
IN_PROCESS = 3 * READS_PER_TURN + 17

Peer = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _raise_fd_limit(needed: int) -> None:
    """Raise RLIMIT_NOFILE (inherited by the server started after) or skip the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}: cannot open {COUNT} clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _sockets(pid: int) -> int:
    """How many sockets ``pid`` holds open."""
    found = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found += os.readlink(fd).startswith("socket:")
        except OSError:
            continue  # closed meanwhile
    return found


async def _greeted(port: int, tls: ssl.SSLContext) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    line = await asyncio.wait_for(reader.readline(), 60)
    assert line.startswith(b"* OK"), line
    return writer


async def _connect(port: int) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    tls = client_tls()  # one context: making one loads the system's CA certificates
    for _ in range(COUNT // 250):  # handshakes a few hundred at a time
        writers += await asyncio.gather(*(_greeted(port, tls) for _ in range(250)))
    return writers


async def _close(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:  # each sends its close_notify at once
        writer.close()
    await asyncio.sleep(0)


async def _closed(writers: list[asyncio.StreamWriter]) -> None:
    """Until the server has answered every close_notify and ended every connection."""
    for writer in writers:
        try:
            await asyncio.wait_for(writer.wait_closed(), 60)
        except (OSError, TimeoutError):
            pass  # the end is what counts; the server's sockets are checked below


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's when installed (correo[fast]): its TLS handshakes cost the test a third."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def leave_at_once(
    srv: Server, connect: Callable[[], Awaitable[list[asyncio.StreamWriter]]]
) -> None:
    """COUNT clients opened by ``connect``, then all closed while the server is stopped
    (SIGSTOP: every end is waiting when it runs again); every one of its sockets gone
    afterwards, on the server's side too."""
    assert srv.proc is not None
    pid = srv.proc.pid
    base = _sockets(pid)
    loop = _new_loop()
    try:
        writers = loop.run_until_complete(connect())
        assert _sockets(pid) >= base + COUNT
        os.kill(pid, signal.SIGSTOP)
        try:
            loop.run_until_complete(_close(writers))
        finally:
            os.kill(pid, signal.SIGCONT)
        loop.run_until_complete(_closed(writers))
    finally:
        loop.close()
    for _ in range(600):
        if _sockets(pid) <= base:
            break
        assert srv.proc.poll() is None, srv.log()[-3000:]
        time.sleep(0.05)
    assert _sockets(pid) <= base, f"{_sockets(pid) - base} connections left open"


def test_thousands_of_tls_clients_leaving_at_once_do_not_stall_the_loop(
    start_server: object,
) -> None:
    _raise_fd_limit(COUNT + 1000)  # ours; the server inherits it
    limits = {
        "connections": str(2 * COUNT),
        "connections_per_ip": str(2 * COUNT),
        "level": '"info"',  # as deployed: the test fixture's debug logs every session twice
    }
    srv: Server = start_server(limits)  # type: ignore[operator]
    leave_at_once(srv, lambda: _connect(srv.ports["imaps"]))
    srv.stop()  # raises if the watchdog saw the loop held over 100 ms


def _loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


@pytest.mark.parametrize("kind", _loops())
@pytest.mark.parametrize("mode", ["implicit", "starttls", "plain"])
def test_ends_read_in_one_poll_reach_the_sessions_a_share_per_turn(
    kind: str, mode: str, tmp_path: Path
) -> None:
    """Clients in this process close together, so the server side reads all their
    ends (close_notify alerts, FINs) in one poll: at most a share is handed on per turn
    of the loop (uvloop's and asyncio's TLS layers alike, implicit TLS, after STARTTLS or
    in plaintext), and every session still sees the end, and every client the server's."""
    upgrade = mode == "starttls"
    generate_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", "localhost")
    context = server_context(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        readers: list[asyncio.StreamReader] = []
        ended: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            readers.append(reader)
            conn = Connection(reader, writer, tls=mode == "implicit")
            if upgrade:  # RFC 3207 §4, RFC 2595 §3.1: the go-ahead, then the handshake
                assert await conn.read(60) == b"STARTTLS\r\n"
                conn.write(b"OK go ahead\r\n")
                await conn.start_tls(context)
            conn.write(b"* OK\r\n")
            await conn.flush()
            ended.append(await conn.read(60))
            await conn.close()

        async def client(port: int, tls: ssl.SSLContext) -> Peer:
            if mode == "implicit":
                return await asyncio.open_connection("127.0.0.1", port, ssl=tls)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if mode == "plain":
                return reader, writer
            writer.write(b"STARTTLS\r\n")
            assert await asyncio.wait_for(reader.readline(), 30) == b"OK go ahead\r\n"
            await writer.start_tls(tls)
            return reader, writer

        if mode != "implicit":
            server = await serve_plain(handle, "127.0.0.1", 0, limit=1 << 16)
        else:
            server = await serve_tls(
                handle, "127.0.0.1", 0, context=context, handshake_timeout=30, limit=1 << 16
            )
        port = server.sockets[0].getsockname()[1]
        tls = client_tls()
        clients: list[Peer] = []
        for _ in range(IN_PROCESS // 100 + 1):
            n = min(100, IN_PROCESS - len(clients))
            clients += await asyncio.gather(*(client(port, tls) for _ in range(n)))
        for reader, _ in clients:
            assert await asyncio.wait_for(reader.readline(), 30) == b"* OK\r\n"
        assert len(readers) == IN_PROCESS
        per_turn: list[int] = []
        done = False

        def tick() -> None:  # once per turn: how many sessions' streams have ended
            per_turn.append(sum(r.at_eof() for r in readers))
            if not done:
                loop.call_soon(tick)

        loop.call_soon(tick)
        for _, writer in clients:  # each sends its close_notify (or FIN) now
            writer.close()
        for reader, writer in clients:  # the server answers each with its own
            assert await asyncio.wait_for(reader.read(), 60) == b""
            await asyncio.wait_for(writer.wait_closed(), 60)
        done = True
        assert ended == [b""] * IN_PROCESS
        steps = [b - a for a, b in itertools.pairwise(per_turn)]
        assert per_turn[-1] == IN_PROCESS
        assert max(steps) <= READS_PER_TURN, steps
        assert len([s for s in steps if s]) >= IN_PROCESS // READS_PER_TURN, steps
        server.close()
        await server.wait_closed()

    if kind == "uvloop":
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())
