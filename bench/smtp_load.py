"""An asyncio SMTP load generator on raw streams, so the client is never the bottleneck.

Each of C connections says EHLO once, then sends messages back to back (MAIL, RCPT, DATA
pipelined when the server offers PIPELINING, RFC 2920), taking the next message number from
a shared counter until N have been sent. Messages are realistic RFC 5322 text of about S
bytes with a unique Message-ID, addressed round-robin to user1..userK@DOMAIN.

    python bench/smtp_load.py --port 2526 -n 5000 -c 20 --size 5000
    python bench/smtp_load.py --port 2465 --tls --auth user1@bench.test:PASS   # submissions
    python bench/smtp_load.py --port 2525 --starttls

With --tls each connection opens with a TLS handshake (implicit TLS, RFC 8314 §3.3); with
--starttls it upgrades after the first EHLO (RFC 3207) and says EHLO again. One TLS session
per connection, reused for all its messages. --auth USER:PASS logs in with AUTH PLAIN
(RFC 4954, RFC 4616) once per connection; the envelope sender and From are then USER.
The server's certificate is not verified: the bench runs on loopback with self-signed ones.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import random
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

__all__ = [
    "AuthRefused",
    "LoadResult",
    "Security",
    "SmtpError",
    "body_lines",
    "build_message",
    "percentile",
    "run",
    "run_load",
]

_TEXT = (
    "the mail server accepts every message and stores it durably before it answers with "
    "two hundred fifty while the queue keeps a record of each recipient so that delivery "
    "can resume after a crash and nothing is lost even when the disk is slow or the "
    "network drops a connection in the middle of the data phase of a long transaction"
)
_WORDS = _TEXT.split()


def body_lines(count: int, seed: int = 5322) -> list[bytes]:
    """Plain-text lines of about 76 characters, none starting with a dot (no stuffing)."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    for _ in range(count):
        words: list[str] = []
        length = 0
        while length < 70:
            w = rng.choice(_WORDS)
            words.append(w)
            length += len(w) + 1
        lines.append(" ".join(words)[:76].rstrip().encode() + b"\r\n")
    return lines


_LINES = body_lines(4096)


def build_message(i: int, size: int, rcpt: str, sender: str) -> bytes:
    """Message number i of about `size` bytes, ending in CRLF; the caller adds CRLF.CRLF."""
    head = (
        f"Return-Path: <{sender}>\r\n"
        f"From: Load Generator <{sender}>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: bench message {i}\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        f"Message-ID: <{i}.{time.time_ns()}@loadgen.bench>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
    ).encode()
    need = max(0, size - len(head))
    parts = [head]
    k = (i * 37) % len(_LINES)
    got = 0
    while got < need:
        line = _LINES[k % len(_LINES)]
        parts.append(line)
        got += len(line)
        k += 1
    return b"".join(parts)


class SmtpError(Exception):
    """An unexpected reply: the connection is dropped and a new one opened."""


class AuthRefused(SmtpError):
    """AUTH was refused: retrying would only hit the server's failure delays."""


@dataclass(slots=True)
class LoadResult:
    """What the run measured; times are time.monotonic() values or seconds."""

    sent: int = 0
    accepted: int = 0
    errors: int = 0
    t_start: float = 0.0
    t_last_accept: float = 0.0
    t_end: float = 0.0
    latencies: list[float] = field(default_factory=list)
    accepted_by_rcpt: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return self.t_end - self.t_start

    @property
    def acceptance_rate(self) -> float:
        span = self.t_last_accept - self.t_start
        return self.accepted / span if span > 0 else 0.0

    def summary(self) -> str:
        return (
            f"accepted={self.accepted} errors={self.errors} wall={self.wall:.2f}s "
            f"rate={self.acceptance_rate:.0f} msg/s "
            f"p50={percentile(self.latencies, 50) * 1000:.1f}ms "
            f"p99={percentile(self.latencies, 99) * 1000:.1f}ms"
        )


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (possibly multi-line) reply: lines 'NNN-text' continue, 'NNN text' ends it."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed by server")
        lines.append(line)
        if line[3:4] != b"-":
            break
    try:
        code = int(lines[-1][:3])
    except ValueError as exc:
        raise SmtpError(f"bad reply {lines[-1]!r}") from exc
    return code, b"".join(lines)


async def _expect(reader: asyncio.StreamReader, want: int, what: str) -> bytes:
    code, text = await _reply(reader)
    if code != want:
        raise SmtpError(f"{what}: {text.decode(errors='replace').strip()}")
    return text


@dataclass(frozen=True, slots=True)
class Security:
    """How a connection is secured and who it logs in as (all off by default)."""

    tls: bool = False  # implicit TLS from the first byte (RFC 8314)
    starttls: bool = False  # STARTTLS after the first EHLO (RFC 3207)
    auth: tuple[str, str] | None = None  # AUTH PLAIN user, password (RFC 4954)

    def context(self) -> ssl.SSLContext | None:
        if not (self.tls or self.starttls):
            return None
        ctx = ssl.create_default_context()
        ctx.check_hostname = False  # loopback, self-signed certificates
        ctx.verify_mode = ssl.CERT_NONE
        return ctx


async def _open(
    host: str, port: int, helo: str, sec: Security, ctx: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Connect, greet, secure and log in; returns the streams and the last EHLO reply."""
    tls_now = ctx if sec.tls else None
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 16, ssl=tls_now)
    await _expect(reader, 220, "greeting")
    writer.write(f"EHLO {helo}\r\n".encode())
    caps = (await _expect(reader, 250, "EHLO")).upper()
    if sec.starttls:
        assert ctx is not None
        writer.write(b"STARTTLS\r\n")
        await _expect(reader, 220, "STARTTLS")
        await writer.start_tls(ctx)
        writer.write(f"EHLO {helo}\r\n".encode())  # RFC 3207 §4.2: forget what came before
        caps = (await _expect(reader, 250, "EHLO")).upper()
    if sec.auth is not None:
        user, password = sec.auth
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        writer.write(f"AUTH PLAIN {token}\r\n".encode())  # RFC 4954 §4: initial response
        code, text = await _reply(reader)
        if code != 235:  # 4xx (e.g. a burst of logins throttled) is worth another try
            why = f"AUTH: {text.decode(errors='replace').strip()}"
            raise AuthRefused(why) if code >= 500 else SmtpError(why)
    return reader, writer, caps


async def _connection(
    host: str,
    port: int,
    next_index: Callable[[], int | None],
    res: LoadResult,
    size: int,
    rcpt_of: Callable[[int], str],
    sender: str,
    helo: str,
    sec: Security = Security(),
    ctx: ssl.SSLContext | None = None,
) -> None:
    """One client connection; on any error it records it and reconnects for the next message."""
    while True:
        i: int | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer, caps = await _open(host, port, helo, sec, ctx)
            pipelining = b"PIPELINING" in caps
            while (i := next_index()) is not None:
                rcpt = rcpt_of(i)
                msg = build_message(i, size, rcpt, sender)
                res.sent += 1
                env = (f"MAIL FROM:<{sender}>\r\n", f"RCPT TO:<{rcpt}>\r\n", "DATA\r\n")
                if pipelining:  # RFC 2920 §3.1: MAIL, RCPT and DATA may go in one batch.
                    writer.write("".join(env).encode())
                    await _expect(reader, 250, "MAIL")
                    await _expect(reader, 250, "RCPT")
                    await _expect(reader, 354, "DATA")
                else:
                    for cmd, want in zip(env, (250, 250, 354), strict=True):
                        writer.write(cmd.encode())
                        await _expect(reader, want, cmd.split(":")[0].strip())
                writer.write(msg)
                writer.write(b".\r\n")
                await writer.drain()
                t0 = time.monotonic()
                await _expect(reader, 250, "end of data")
                now = time.monotonic()
                res.latencies.append(now - t0)
                res.accepted += 1
                res.accepted_by_rcpt[rcpt] += 1
                res.t_last_accept = now
                i = None
            writer.write(b"QUIT\r\n")
            await writer.drain()
            try:
                await asyncio.wait_for(_reply(reader), 5)
            except (TimeoutError, SmtpError, OSError):
                pass
            return
        except (OSError, SmtpError, asyncio.IncompleteReadError, ValueError) as exc:
            res.errors += 1
            if len(res.error_samples) < 5:
                res.error_samples.append(f"message {i}: {exc}")
            if i is None and (isinstance(exc, OSError) or str(exc).startswith("AUTH")):
                await asyncio.sleep(0.05)  # connection refused, login throttled: do not spin.
            if res.errors > 1000 or isinstance(exc, AuthRefused):
                return
        finally:
            if writer is not None:
                writer.close()


async def run_load(
    host: str = "127.0.0.1",
    port: int = 2525,
    n: int = 5000,
    concurrency: int = 20,
    size: int = 5000,
    users: int = 10,
    domain: str = "bench.test",
    sender: str = "loadgen@sender.bench",
    sec: Security = Security(),
    rcpts: Sequence[str] = (),
) -> LoadResult:
    """Send n messages of about `size` bytes over `concurrency` connections; to `rcpts`
    round-robin when given, else to user1..user<users>@domain."""
    res = LoadResult()
    ctx = sec.context()
    if sec.auth is not None:
        sender = sec.auth[0]  # a submission server lets a user send only as themselves
    counter = itertools.count()

    def next_index() -> int | None:
        i = next(counter)
        return i if i < n else None

    def rcpt_of(i: int) -> str:
        return rcpts[i % len(rcpts)] if rcpts else f"user{i % users + 1}@{domain}"

    res.t_start = time.monotonic()
    await asyncio.gather(
        *(
            _connection(
                host, port, next_index, res, size, rcpt_of, sender, "loadgen.bench", sec, ctx
            )
            for _ in range(concurrency)
        )
    )
    res.t_end = time.monotonic()
    return res


def run(coro: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    """Run on uvloop when it is installed, so the generator's own overhead stays low."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="SMTP load generator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("-n", type=int, default=5000, help="messages")
    p.add_argument("-c", type=int, default=20, help="concurrent connections")
    p.add_argument("--size", type=int, default=5000, help="bytes per message")
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--domain", default="bench.test")
    p.add_argument("--tls", action="store_true", help="implicit TLS (port 465 style)")
    p.add_argument("--starttls", action="store_true", help="STARTTLS after EHLO")
    p.add_argument("--auth", metavar="USER:PASS", help="AUTH PLAIN once per connection")
    a = p.parse_args(argv)
    if a.tls and a.starttls:
        p.error("--tls and --starttls exclude each other")
    auth = None
    if a.auth is not None:
        user, sep, password = a.auth.partition(":")
        if not sep:
            p.error("--auth wants USER:PASS")
        auth = (user, password)
    sec = Security(tls=a.tls, starttls=a.starttls, auth=auth)
    res = run(run_load(a.host, a.port, a.n, a.c, a.size, a.users, a.domain, sec=sec))
    print(res.summary())
    for line in res.error_samples:
        print("  error:", line)
    return 0 if res.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
