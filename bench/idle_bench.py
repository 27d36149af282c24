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

The idle clients run in a child process of their own (uvloop when importable, bare
protocols rather than streams), so that they are not what the fan-out waits for; the
times they saw the EXISTS are CLOCK_MONOTONIC, comparable with this process's. The
fan-out is timed ``--rounds`` times (median): from sending the APPEND (the commit is
in it) to the last client, and from its tagged OK. When the run ends the clients close
all at once; the server's loop watchdog reports (``loop.blocked`` in serve.log) over the
whole run are counted, and so are the server's ``gc.pause`` lines (a collection of 100 ms
or more of wall time, logged a second late by server/gcpolicy.py). ``--compress`` makes
the IMAP clients start COMPRESS=DEFLATE (RFC 4978) after LOGIN. RLIMIT_NOFILE is raised
to the hard limit for these processes and the server.
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
import signal
import ssl
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from correo_server import DOMAIN, PASSWORD, CorreoServer
from measure import proc_pss_kib, process_tree, tree_cpu_seconds

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


class _Client(asyncio.Protocol):
    """One idle client as a bare protocol (no streams): cheap enough for 10,000 in one
    process. IMAP: LOGIN, SELECT, [COMPRESS,] IDLE, then counts ``EXISTS`` lines."""

    def __init__(self, worker: _Worker) -> None:
        self.w = worker
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.step = 0  # IMAP: 0 greeting, 1 LOGIN sent, 2 COMPRESS sent, 3 IDLE sent, 4 idle
        self.inflate: Any = None
        self.deflate: Any = None
        self.seen = 0  # EXISTS lines seen while idle
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed early: {self.buf[-200:]!r}"))

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.inflate is not None:
            data = self.inflate.decompress(data)
        if self.step == 4:  # idle: only the fan-out counts
            tail = self.buf + data
            n = tail.count(b" EXISTS\r\n")
            if n:
                self.seen += n
                self.w.saw(self)
            self.buf = tail[-16:]
            return
        self.buf += data
        w = self.w
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line.startswith((b"-ERR", b"* BYE", b"a NO", b"a BAD", b"b NO", b"b BAD")):
                self.ready.set_exception(ConnectionError(f"server refused: {line!r}"))
                return
            if w.protocol == "smtp":
                if line.startswith(b"220 ") and self.step == 0:
                    self.step = 1
                    self.send(b"EHLO bench.example\r\n")
                elif line.startswith(b"250 ") and self.step == 1:
                    self.step = 4
                    self.ready.set_result(None)
            elif w.protocol == "pop3":
                if self.step == 0:
                    self.step = 1
                    self.send(b"CAPA\r\n")
                elif line == b".":
                    self.step = 4
                    self.ready.set_result(None)
            elif self.step == 0:
                self.step = 1
                self.send(f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
            elif self.step == 1 and line.startswith(b"a OK"):
                if w.compress:
                    self.step = 2
                    self.send(b"c COMPRESS DEFLATE\r\n")
                else:
                    self.step = 3
                    self.send(b"b SELECT INBOX\r\nd IDLE\r\n")
            elif self.step == 2 and line.startswith(b"c OK"):
                # RFC 4978: both directions compressed from the next octet on; the
                # client's own window is small (any window up to 32 KiB is valid)
                self.inflate = zlib.decompressobj(-15)
                self.deflate = zlib.compressobj(1, zlib.DEFLATED, -9, 1)
                rest, self.buf = self.buf, b""
                self.step = 3
                self.send(b"b SELECT INBOX\r\nd IDLE\r\n")
                if rest:
                    self.data_received(rest)
                return
            elif self.step == 3 and line.startswith(b"+"):
                self.step = 4
                self.buf = b""
                self.ready.set_result(None)
                return


class _Worker:
    """The clients' process: ``ready N`` once all are idle; then per ``go`` line waits
    until every client has seen one more EXISTS and answers ``done COUNT LAST_TIME``
    (time.perf_counter: CLOCK_MONOTONIC, the same clock as the parent's)."""

    def __init__(self, protocol: str, tls: bool, compress: bool) -> None:
        self.protocol, self.tls, self.compress = protocol, tls, compress
        self.clients: list[_Client] = []
        self.target = 0
        self.pending = 0
        self.last = 0.0
        self.all_seen: asyncio.Event | None = None

    def saw(self, client: _Client) -> None:
        if client.seen == self.target:
            self.pending -= 1
            self.last = time.perf_counter()
            if self.pending == 0 and self.all_seen is not None:
                self.all_seen.set()

    async def connect(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        ssl_ctx = _client_tls() if self.tls else None
        port = PORTS[self.protocol]

        async def one() -> _Client:
            for attempt in range(5):  # a busy machine resets a few handshakes
                client = _Client(self)
                try:
                    await loop.create_connection(
                        lambda c=client: c,  # type: ignore[misc]
                        "127.0.0.1",
                        port,
                        ssl=ssl_ctx,
                    )
                    await asyncio.wait_for(client.ready, 600)
                    return client
                except (OSError, ssl.SSLError):
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1)
            raise AssertionError("unreachable")

        for first in range(0, n, 100):
            self.clients += await asyncio.gather(*(one() for _ in range(min(100, n - first))))

    async def run(self, n: int) -> None:
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await self.connect(n)
        print(f"ready {len(self.clients)}", flush=True)
        while (await reader.readline()).strip() == b"go":
            self.target += 1
            self.pending = sum(1 for c in self.clients if c.seen < self.target)
            self.all_seen = asyncio.Event()
            print("armed", flush=True)
            try:
                await asyncio.wait_for(self.all_seen.wait(), 120)
            except TimeoutError:
                pass
            print(f"done {len(self.clients) - self.pending} {self.last!r}", flush=True)
        for c in self.clients:  # all at once: the server drops 10,000 sessions together
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(1)


def _worker_main(protocol: str, tls: bool, compress: bool, n: int) -> None:
    try:
        import uvloop  # type: ignore[import-not-found]

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    run(_Worker(protocol, tls, compress).run(n))


def _sockets(pid: int) -> list[str]:
    """The sockets ``pid`` holds open (every client's session ended: as many as before)."""
    fds = Path(f"/proc/{pid}/fd")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:"):
            found.append(target)
    return found


def _log_size(srv: CorreoServer) -> int:
    return (srv.data / "serve.log").stat().st_size if srv.data is not None else 0


def _serve_log_stalls(
    data: Path, begin: int, end: int, event: bytes = b"loop.blocked"
) -> list[str]:
    """The loop watchdog's reports (``loop.blocked``), or the collector's pauses of 100 ms
    or more (``gc.pause``), in serve.log between two offsets."""
    with open(data / "serve.log", "rb") as f:
        f.seek(begin)
        text = f.read(end - begin)
    return [line.decode(errors="replace") for line in text.splitlines() if event in line]


def _spy(profile: Path, pid: int, *, native: bool = False) -> subprocess.Popen[bytes]:
    """py-spy (``pip install py-spy``; root to attach) recording ``pid`` until SIGINT."""
    spy = subprocess.Popen(
        [
            *(
                os.environ.get("PY_SPY", "py-spy"),
                "record",
                "-r",
                "1000" if native else "250",
                "-f",
                "raw",
            ),
            *("-o", str(profile), "--pid", str(pid), *["--native"] * native),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1)
    return spy


def idle_test(
    protocol: str,
    tls: bool,
    compress: bool,
    n: int,
    srv: CorreoServer,
    rounds: int,
    profile: Path | None = None,
    profile_close: bool = False,
) -> dict[str, float]:
    root = srv.pid
    pss = lambda: sum(proc_pss_kib(p) for p in process_tree(root))  # noqa: E731
    time.sleep(1)
    offset = _log_size(srv)
    before = pss()
    sockets = lambda: len(_sockets(root))  # noqa: E731
    open_before = sockets()
    args = [sys.executable, __file__, "--worker", "--protocol", protocol, "--count", str(n)]
    args += ["--tls"] * tls + ["--compress"] * compress
    worker = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert worker.stdin is not None and worker.stdout is not None
    try:
        line = worker.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"the clients did not all go idle: {line!r}")
        connected = _log_size(srv)
        time.sleep(2)
        after = pss()
        name = f"{protocol}{'s' if tls else ''}{'+deflate' if compress else ''} x{n}"
        r = {f"{name} KiB/conn": (after - before) / n}
        spy = None
        if profile is not None and not profile_close:  # over the fan-out rounds
            spy = _spy(profile, root)
        if protocol == "imap":
            client = imap_login(tls)
            from_sent, from_ok, cpu = [], [], []
            for i in range(rounds):
                worker.stdin.write("go\n")
                worker.stdin.flush()
                assert worker.stdout.readline().strip() == "armed"
                cpu0 = tree_cpu_seconds([root])
                sent = time.perf_counter()
                typ, _ = client.append("INBOX", None, None, message(2000, n * 100 + i))
                ok = time.perf_counter()
                assert typ == "OK"
                _, count, last = worker.stdout.readline().split()
                cpu.append(tree_cpu_seconds([root]) - cpu0)
                if int(count) != n:
                    from_sent.append(float("nan"))
                    from_ok.append(float("nan"))
                else:
                    from_sent.append(float(last) - sent)
                    from_ok.append(float(last) - ok)
                time.sleep(1)
            client.logout()
            print(f"# {name} fan-out rounds (from APPEND sent): {from_sent}", flush=True)
            r[f"{name} fan-out s"] = statistics.median(from_sent)
            r[f"{name} fan-out after OK s"] = statistics.median(from_ok)
            r[f"{name} fan-out server CPU s"] = statistics.median(cpu)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            spy = None
        fanned = _log_size(srv)
        if profile is not None and profile_close:  # over the close, native frames too
            spy = _spy(profile, root, native=True)
        worker.stdin.write("quit\n")
        worker.stdin.flush()
        quit_at = time.perf_counter()
        worker.wait(120)
        while sockets() > open_before and time.perf_counter() - quit_at < 60:
            time.sleep(0.1)  # the server drops them before the next measurement
        r[f"{name} close s"] = time.perf_counter() - quit_at
        r[f"{name} sockets left after close"] = sockets() - open_before
        time.sleep(2)  # a collection's gc.pause line is logged a second late
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            spy = None
        if srv.data is not None:
            closed = _log_size(srv)
            phases = {"connect": (offset, connected), "idle": (connected, fanned)}
            phases["close"] = (fanned, closed)
            for phase, (begin, end) in phases.items():
                stalls = _serve_log_stalls(srv.data, begin, end)
                for line in stalls:
                    print(f"# {phase}: {line}", flush=True)
                r[f"{name} loop stalls, {phase}"] = len(stalls)
                pauses = _serve_log_stalls(srv.data, begin, end, b"event=gc.pause")
                r[f"{name} gc pauses >=100 ms, {phase}"] = len(pauses)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
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
    p.add_argument("--compress", action="store_true", help="IMAP: COMPRESS=DEFLATE (RFC 4978)")
    p.add_argument("--rounds", type=int, default=3, help="IMAP: APPENDs timed (median)")
    p.add_argument("--fetch-mb", type=int, default=0, help="also time a FETCH of this size")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/correo-idlebench"))
    p.add_argument(
        "--asyncio", action="store_true", help="serve on asyncio's own loop, not uvloop's"
    )
    p.add_argument("--profile", type=Path, help="py-spy raw profile of the server's fan-out")
    p.add_argument(
        "--profile-close", action="store_true", help="--profile the close, not the fan-out"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the clients
    a = p.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.worker:
        _worker_main(a.protocol[0], a.tls, a.compress, a.count[0])
        return 0
    if a.asyncio:  # correo serve falls back to asyncio when uvloop does not import
        shim = a.workdir.parent / "correo-idlebench-no-uvloop"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "uvloop.py").write_text('raise ImportError("the bench asked for asyncio")\n')
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(shim), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
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
                compress = a.compress and protocol == "imap"
                results |= idle_test(
                    protocol, a.tls, compress, n, srv, a.rounds, a.profile, a.profile_close
                )
        finally:
            srv.stop()
    for name, value in results.items():
        print(f"{name:36} {value:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
