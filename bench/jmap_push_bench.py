"""Memory of open JMAP push connections over TLS, and the time a change takes to reach
them all.

    python bench/jmap_push_bench.py [--connections 1000]

A fresh correo (SQLite) serves ``https``; this opens ``--connections`` EventSource
streams (RFC 8620 §7.3, ``GET /jmap/eventsource/``) and then as many WebSockets
(RFC 8887, ``WebSocketPushEnable``), each its own TLS connection with the bearer token
of one webmail login, and reads correo's PSS (its process tree, as bench/idle_bench.py
does for IMAP) before and after each batch: the difference over the count is the cost
of one connection.  Then one message is appended over IMAP and the time until every
stream has its StateChange is the fan-out.  The issue's bound: 64 KiB or less per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import imaplib
import json
import os
import re
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from imap_bench import PASSWORD, USER
from jmap_bench import _tls, correo_start
from measure import proc_pss_kib, process_tree

__all__ = ["main"]

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]


def web_login(port: int) -> str:
    """The bearer token of one webmail login (POST /login, as the page does): what the
    webmail's streams present, so a thousand of them cost one password check."""
    import requests

    from correo.web.session_auth import COOKIE, bearer_for

    got = requests.post(
        f"https://127.0.0.1:{port}/login",
        data={"username": USER, "password": PASSWORD},
        headers={"Origin": f"https://127.0.0.1:{port}"},
        verify=False,
        allow_redirects=False,
        timeout=120,
    )
    secret = got.cookies.get(COOKIE)
    if got.status_code != 303 or secret is None:
        raise RuntimeError(f"no web login: {got.status_code} {got.text[:200]}")
    return str(bearer_for(secret))


_AUTH = {"value": ""}  # "Bearer …", set once logged in


async def _open(port: int, path: str, extra: str = "") -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_tls(), limit=2**16)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {_AUTH['value']}\r\n"
        f"{extra}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = await asyncio.wait_for(reader.read(4096), 600)
        if not data:
            raise ConnectionError(f"closed after {head!r}")
        head += data
    head, _, rest = head.partition(b"\r\n\r\n")
    return reader, writer, rest


async def eventsource(port: int) -> Stream:
    reader, writer, rest = await _open(port, "/jmap/eventsource/?types=*&closeafter=no&ping=0")
    return reader, writer, rest


async def websocket(port: int) -> Stream:
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer, rest = await _open(
        port,
        "/jmap/ws/",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: jmap\r\n",
    )
    payload = json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    writer.write(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)  # RFC 6455 §5.2
    await writer.drain()
    return reader, writer, rest


async def watch_events(stream: Stream, armed: asyncio.Event) -> float:
    """The time the first StateChange after ``armed`` arrives on an EventSource."""
    reader, _, seen = stream
    while not (armed.is_set() and b"StateChange" in seen):
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("the stream ended")
        seen = (seen[-64:] if armed.is_set() else b"") + data
    return time.perf_counter()


async def watch_frames(stream: Stream, armed: asyncio.Event) -> float:
    """The same on a WebSocket, answering the server's pings (RFC 6455 §5.5.2)."""
    reader, writer, rest = stream
    buffer = bytearray(rest)

    async def take(n: int) -> bytes:
        while len(buffer) < n:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the WebSocket ended")
            buffer.extend(data)
        out = bytes(buffer[:n])
        del buffer[:n]
        return out

    while True:
        first, second = await take(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await take(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await take(8))
        payload = await take(size)
        opcode = first & 0x0F
        if opcode == 0x9:  # ping: a pong with the same payload, masked as a client must
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            writer.write(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + mask + masked)
        elif opcode == 0x8:
            raise ConnectionError("the server closed the WebSocket")
        elif opcode == 0x1 and armed.is_set() and b"StateChange" in payload:
            return time.perf_counter()


def pss(root: int) -> int:
    return sum(proc_pss_kib(p) for p in process_tree(root))


async def _open_all(
    opener: Any, watch: Any, armed: asyncio.Event, port: int, n: int
) -> list[asyncio.Future[float]]:
    """``n`` streams, 20 handshakes at a time, each tried again if the loaded server
    dropped it before it was done, each watched (its pings answered) from the start."""
    out: list[asyncio.Future[float]] = []

    async def one() -> asyncio.Future[float]:
        for attempt in range(5):
            try:
                stream: Stream = await opener(port)
                break
            except (ConnectionError, TimeoutError):
                await asyncio.sleep(1 + attempt)
        else:
            stream = await opener(port)
        future: asyncio.Future[float] = asyncio.ensure_future(watch(stream, armed))
        return future

    for first in range(0, n, 20):
        out += await asyncio.gather(*(one() for _ in range(min(20, n - first))))
    return out


async def run(port: int, imaps: int, n: int, root: int) -> dict[str, float]:
    out: dict[str, float] = {}
    armed = asyncio.Event()
    watchers: list[asyncio.Future[float]] = []
    for name, opener, watch in (
        ("EventSource", eventsource, watch_events),
        ("WebSocket", websocket, watch_frames),
    ):
        await asyncio.sleep(2)
        before = pss(root)
        batch = await _open_all(opener, watch, armed, port, n)
        watchers += batch
        await asyncio.sleep(3)  # each stream's first read of the states is done
        after = pss(root)
        out[f"{name} KiB/conn"] = (after - before) / n
        print(f"{n} {name}: {before} -> {after} KiB PSS, {(after - before) / n:.1f} KiB each",
              flush=True)  # fmt: skip
    client = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=_tls(), timeout=600)
    client.login(USER, PASSWORD)
    armed.set()
    started = time.perf_counter()
    await asyncio.to_thread(
        client.append, "INBOX", None, None, b"Subject: push\r\nFrom: a@b.test\r\n\r\nhi\r\n"
    )
    done = await asyncio.wait_for(asyncio.gather(*watchers), 300)
    out["fan-out s"] = max(done) - started
    print(f"StateChange to all {len(watchers)} streams in {out['fan-out s']:.2f} s", flush=True)
    client.logout()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/correo-jmap-push-bench"))
    p.add_argument("--port", type=int, default=25_993, help="imaps; https is port+1")
    args = p.parse_args(argv)
    srv = correo_start(args.workdir / "correo", args.port, args.port + 1)
    try:
        toml = args.workdir / "correo" / "correo.toml"
        text = toml.read_text()
        text = re.sub(r"(?m)^connections = \d+", "connections = 20000", text)
        text = re.sub(r"(?m)^connections_per_ip = \d+", "connections_per_ip = 20000", text)
        toml.write_text(text)
        srv.stop()
        srv.start()
        _AUTH["value"] = "Bearer " + web_login(args.port + 1)
        result = asyncio.run(run(args.port + 1, args.port, args.connections, srv.pid))
    finally:
        srv.stop()
    print(f"TLS, {args.connections} connections of each kind")
    for key, value in result.items():
        print(f"{key:24} {value:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
