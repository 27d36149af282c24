"""IDLE at scale (a few hundred sessions here; ten thousand in bench/idle_bench.py): one
delivery reaches every session idling on the mailbox, each session is still usable
afterwards, and neither the fan-out nor all of them closing at once holds the event loop
over 100 ms (the server fixture fails the test on any ``loop.blocked`` report).
COMPRESS=DEFLATE sessions drop their compressor while idle and keep one valid stream."""

from __future__ import annotations

import asyncio
import zlib

from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.imap_helpers import RawImap, imap, message, unique

USER = "carol@example.test"
SESSIONS = 120


async def _idle_session(port: int, box: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls())
    await reader.readline()  # greeting
    writer.write(f'a LOGIN "{USER}" "{PASSWORDS[USER]}"\r\nb SELECT {box}\r\nc IDLE\r\n'.encode())
    while not (line := await reader.readline()).startswith(b"+"):
        assert line and not line.startswith((b"a NO", b"b NO", b"* BYE")), line
    return reader, writer


async def _until(reader: asyncio.StreamReader, end: bytes) -> bytes:
    while not (line := await asyncio.wait_for(reader.readline(), 60)).endswith(end):
        assert line, "closed"
    return line


async def _fan_out(server: Server, box: str) -> None:
    port = server.ports["imaps"]
    sessions: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(SESSIONS // 10):  # TLS handshakes a few at a time
        sessions += await asyncio.gather(*(_idle_session(port, box) for _ in range(10)))
    client = imap(server, USER)
    assert client.append(box, None, None, message("for everyone"))[0] == "OK"
    client.logout()
    # every session hears of it, then ends its IDLE normally (RFC 2177)
    lines = await asyncio.gather(*(_until(r, b" EXISTS\r\n") for r, _ in sessions))
    assert set(lines) == {b"* 1 EXISTS\r\n"}, set(lines)
    for _, w in sessions:
        w.write(b"DONE\r\nd NOOP\r\n")
    await asyncio.gather(*(_until(r, b"d OK NOOP completed\r\n") for r, _ in sessions))
    for _, w in sessions:  # and all of them go at once
        w.transport.abort()


def test_one_delivery_reaches_every_idle_session(start_server: object) -> None:
    # many logins of one account at once are the test here, not a guessing attack
    limits = {"connections_per_ip": "1000", "free_failures": "1000", "lockout_failures": "1000"}
    srv: Server = start_server(limits)  # type: ignore[operator]
    box = unique("fanout")
    client = imap(srv, USER)
    assert client.create(box)[0] == "OK"
    client.logout()
    asyncio.run(_fan_out(srv, box))
    srv.stop()  # raises if the watchdog saw the loop held over 100 ms


def _inflated(raw: RawImap, inflater: zlib._Decompress, end: bytes) -> bytes:
    got = b""
    while end not in got:
        chunk = raw.sock.recv(1 << 16)
        assert chunk, got[-200:]
        got += inflater.decompress(chunk)
    return got


def test_compressed_session_switches_compressors_on_one_stream(server: Server) -> None:
    """Small replies, a big FETCH, an IDLE (no compressor kept while idle) with a push, and
    more replies after it: one client decompressor reads them all (RFC 4978)."""
    box = unique("deflate")
    client = imap(server, USER)
    assert client.create(box)[0] == "OK"
    body = "".join(
        f"line {i} of a message big enough for the full compressor\r\n" for i in range(900)
    )
    assert client.append(box, None, None, message("big", body))[0] == "OK"
    raw = RawImap(server.ports["imaps"])
    raw.login(USER)
    assert raw.cmd("c", "COMPRESS DEFLATE")[-1].startswith(b"c OK")
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    inflater = zlib.decompressobj(-15)

    def send(text: bytes) -> None:
        raw.send(deflater.compress(text) + deflater.flush(zlib.Z_SYNC_FLUSH))

    send(f"s SELECT {box}\r\n".encode())
    assert b"* 1 EXISTS" in _inflated(raw, inflater, b"s OK")
    send(b"f FETCH 1 BODY.PEEK[]\r\n")
    assert body.encode() in _inflated(raw, inflater, b"f OK")
    send(b"i IDLE\r\n")
    assert b"+ " in _inflated(raw, inflater, b"\r\n")
    assert client.append(box, None, None, message("small"))[0] == "OK"
    assert b"* 2 EXISTS" in _inflated(raw, inflater, b"EXISTS\r\n")
    send(b"DONE\r\n")
    assert b"i OK" in _inflated(raw, inflater, b"i OK")
    send(b"g FETCH 2 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    assert b"Subject: small" in _inflated(raw, inflater, b"g OK")
    send(b"f2 FETCH 1 BODY.PEEK[]\r\n")
    assert body.encode() in _inflated(raw, inflater, b"f2 OK")
    raw.close()
    client.logout()
