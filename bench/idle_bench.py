"""Memory per idle connection (IMAP IDLE, SMTP, POP3), new-mail fan-out, big FETCH rate.

    python bench/idle_bench.py --tls --count 1000 10000          # every protocol
    python bench/idle_bench.py --tls --protocol imap --count 1000 --fetch-mb 20

correo runs from a fresh data folder (``bench/correo_server.py``). For each protocol and
count, that many clients connect (implicit TLS with ``--tls``: imaps, submissions,
pop3s; else imap, submission, pop3) and go idle: IMAP after LOGIN, SELECT and IDLE;
SMTP after EHLO; POP3 after CAPA (the unauthenticated state: a maildrop is locked by
its one session, RFC 1939 §8). The server's PSS (its process tree) before and after,
divided by the count, is the memory per connection. For IMAP, one APPEND from another
session then times the fan-out: until every IDLE client has seen ``* n EXISTS``.
``--fetch-mb`` also times ``UID FETCH BODY.PEEK[]`` of one message of that size
(MB/s, median of five), the throughput that a smaller TLS read buffer must not cost.

The clients run in this process; their own asyncio TLS read buffers are shrunk so that
10,000 of them fit (the server's are what is measured). RLIMIT_NOFILE is raised to the
hard limit for this process and the server it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.sslproto
import imaplib
import os
import re
import resource
import shutil
import ssl
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from correo_server import DOMAIN, PASSWORD, CorreoServer
from measure import proc_pss_kib, process_tree

__all__ = ["main"]

USER = f"user1@{DOMAIN}"
PORTS = {"imap": 21530, "smtp": 21531, "pop3": 21532}
SERVICES = {  # protocol -> (service with --tls, without)
    "imap": ("imaps", "imap"),
    "smtp": ("submissions", "submission"),
    "pop3": ("pop3s", "pop3"),
}
# The clients' read buffers (asyncio's default is 256 KiB per TLS connection).
asyncio.sslproto.SSLProtocol.max_size = 16 * 1024


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def start(work: Path, tls: bool) -> CorreoServer:
    shutil.rmtree(work, ignore_errors=True)
    pop3s = PORTS["pop3"] if tls else PORTS["pop3"] + 10  # CorreoServer waits on it
    srv = CorreoServer(work, smtp_port=PORTS["smtp"] + 10, pop3s_port=pop3s, users=1)
    srv.setup()
    toml = work / "correo.toml"
    text = toml.read_text()
    text = re.sub(r'(?m)^(\w+) = \["127\.0\.0\.1:\d+"\]$', r"\1 = []", text)
    listen = {"smtp": PORTS["smtp"] + 10, "pop3s": pop3s}  # CorreoServer waits on these
    for protocol, port in PORTS.items():
        listen[SERVICES[protocol][0 if tls else 1]] = port
    for service, port in listen.items():
        text = re.sub(rf"(?m)^{service} = \[.*\]$", f'{service} = ["127.0.0.1:{port}"]', text)
    text = re.sub(r"(?m)^allow_plaintext = .*$", "allow_plaintext = true", text)
    text = re.sub(r"(?m)^level = .*$", 'level = "warning"', text)
    text = re.sub(r"(?m)^connections = \d+", "connections = 30000", text)
    text = re.sub(r"(?m)^connections_per_ip = \d+", "connections_per_ip = 30000", text)
    text = re.sub(r"(?m)^message_size = \d+", "message_size = 104857600", text)
    # thousands of logins of one account at once are the bench, not a guessing attack
    text = re.sub(r"(?m)^free_failures = \d+", "free_failures = 1000000", text)
    text = re.sub(r"(?m)^lockout_failures = \d+", "lockout_failures = 1000000", text)
    toml.write_text(text)
    try:
        srv.start()
    except RuntimeError:
        srv.stop()  # it may listen on some ports and not others
        raise
    return srv


def imap_login(tls: bool) -> imaplib.IMAP4:
    if tls:
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            "127.0.0.1", PORTS["imap"], ssl_context=_client_tls(), timeout=600
        )
    else:
        client = imaplib.IMAP4("127.0.0.1", PORTS["imap"], timeout=600)
    client.login(USER, PASSWORD)
    return client


def message(size: int, seed: int) -> bytes:
    head = f"From: a@{DOMAIN}\r\nTo: {USER}\r\nSubject: m{seed}\r\nMessage-ID: <{seed}@b>\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head.encode() + line * max(1, size // len(line))


async def _connect(protocol: str, tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", PORTS[protocol], ssl=_client_tls() if tls else None, limit=2**16
    )


async def _until(reader: asyncio.StreamReader, done: bytes, bad: bytes = b"-ERR") -> None:
    while True:
        line = await asyncio.wait_for(reader.readline(), 600)
        if not line or line.startswith((bad, b"* BYE")):
            raise ConnectionError(f"server refused: {line!r}")
        if line.startswith(done):
            return


async def _idle_client(
    protocol: str, tls: bool, ready: asyncio.Event, seen: list[float]
) -> asyncio.StreamWriter:
    reader, writer = await _connect(protocol, tls)
    await reader.readline()  # greeting
    if protocol == "imap":
        writer.write(f'a LOGIN "{USER}" "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
        await _until(reader, b"+")

        async def wait() -> None:
            await ready.wait()
            while True:
                line = await reader.readline()
                if not line or line.endswith(b"EXISTS\r\n"):
                    seen.append(time.perf_counter())
                    return

        asyncio.get_running_loop().create_task(wait())
    elif protocol == "smtp":
        writer.write(b"EHLO bench.example\r\n")
        await _until(reader, b"250 ", b"5")
    else:
        writer.write(b"CAPA\r\n")
        await _until(reader, b".")
    return writer


async def idle_test(protocol: str, tls: bool, n: int, root: int) -> dict[str, float]:
    pss = lambda: sum(proc_pss_kib(p) for p in process_tree(root))  # noqa: E731
    await asyncio.sleep(1)
    before = pss()
    ready, seen = asyncio.Event(), []
    writers: list[asyncio.StreamWriter] = []
    for first in range(0, n, 200):
        writers += await asyncio.gather(
            *(_idle_client(protocol, tls, ready, seen) for _ in range(min(200, n - first)))
        )
    await asyncio.sleep(2)
    after = pss()
    name = f"{protocol}{'s' if tls else ''} x{n}"
    r = {f"{name} KiB/conn": (after - before) / n}
    if protocol == "imap":
        ready.set()
        client = await asyncio.to_thread(imap_login, tls)
        started = time.perf_counter()
        await asyncio.to_thread(client.append, "INBOX", None, None, message(2000, n))
        deadline = time.monotonic() + 120
        while len(seen) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - a count
            await asyncio.sleep(0.01)
        r[f"{name} fan-out s"] = (max(seen) - started) if len(seen) == n else float("nan")
        await asyncio.to_thread(client.logout)
    for w in writers:
        w.close()
    await asyncio.sleep(3)  # the server drops them before the next measurement
    return r


def fetch_rate(tls: bool, megabytes: int) -> float:
    """MB/s of UID FETCH BODY.PEEK[] of one ``megabytes`` message, median of five."""
    client = imap_login(tls)
    typ, data = client.append("INBOX", None, None, message(megabytes * 1_000_000, 1))
    assert typ == "OK", data
    typ, data = client.select("INBOX")
    last = data[0].decode()  # the message just appended
    times = []
    for _ in range(5):
        started = time.perf_counter()
        typ, got = client.fetch(last, "BODY.PEEK[]")
        assert typ == "OK" and len(got[0][1]) > megabytes * 900_000, got[0][0]
        times.append(time.perf_counter() - started)
    client.logout()
    return megabytes / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tls", action="store_true", help="implicit TLS (imaps, submissions, pop3s)")
    p.add_argument("--count", type=int, nargs="+", default=[1000], help="idle clients per run")
    p.add_argument("--protocol", nargs="+", choices=list(PORTS), default=list(PORTS))
    p.add_argument("--fetch-mb", type=int, default=0, help="also time a FETCH of this size")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/correo-idlebench"))
    p.add_argument(
        "--asyncio", action="store_true", help="serve on asyncio's own loop, not uvloop's"
    )
    a = p.parse_args(argv)
    if a.asyncio:  # correo serve falls back to asyncio when uvloop does not import
        shim = a.workdir.parent / "correo-idlebench-no-uvloop"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "uvloop.py").write_text('raise ImportError("the bench asked for asyncio")\n')
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(shim), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, float] = {}
    # A fresh server for each protocol and count: memory freed by one run would be
    # reused by the next and make it look cheaper.
    runs = [("fetch", 0)] if a.fetch_mb else []
    runs += [(protocol, n) for protocol in a.protocol for n in a.count]
    for protocol, n in runs:
        srv = CorreoServer(a.workdir)
        try:
            srv = start(a.workdir, a.tls)
            client = imap_login(a.tls)  # a message in the mailbox: SELECT has work to do
            client.append("INBOX", None, None, message(5000, 0))
            client.logout()
            if protocol == "fetch":
                results[f"FETCH {a.fetch_mb} MB MB/s"] = fetch_rate(a.tls, a.fetch_mb)
            else:
                results |= asyncio.run(idle_test(protocol, a.tls, n, srv.pid))
        finally:
            srv.stop()
    for name, value in results.items():
        print(f"{name:32} {value:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
