"""IMAP side by side: correo against a private Debian Dovecot on the same machine (issue 3 §5).

    python bench/imap_bench.py [--target correo|correo-pg|dovecot|both|all] [--messages 10000]
        [--idle 1000 10000] [--tls] [--rounds 5] [--store postgresql://...|private]

``--target all`` runs correo on SQLite, correo on PostgreSQL (``--store``: a URL, or
``private``, the default, for a throwaway cluster as the tests start) and Dovecot in one
run and prints each one's ratio to Dovecot; ``--tls`` speaks implicit TLS (IMAPS) to
every server instead of plaintext.

Both servers get the same mailbox: ``--messages`` messages of 2-100 KB (seeded random
text with one rare word in one message), appended over IMAP. Then, per server, the
wall time of: APPEND (rate), SELECT, FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE
ENVELOPE) twice, FETCH 1:* BODYSTRUCTURE twice; then ``--rounds`` rounds (median kept;
every server is up at once and the rounds alternate between them) of: 1,000 random
UID FETCH n BODY.PEEK[], one UID FETCH of 1,000 random UIDs BODY.PEEK[], 1,000 UID
FETCH n BODY.PEEK[] in UID order (a client walking the mailbox: mbsync, offlineimap),
UID SEARCH TEXT <rare word>, UID SEARCH ALL then UID FETCH of the newest 50 UIDs
(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE) (a client's sync), STORE +FLAGS.SILENT
1:* (after an untimed -FLAGS), UID FETCH 1:* (UID FLAGS), and both "again" FETCH 1:*
listings once more (their rows are medians over the rounds); then
``--idle`` connections in IDLE: server memory (PSS of its process tree) per connection
and the time for one APPEND to reach all of them as ``* n EXISTS``. The body FETCH
rows also get the CPU of the server's processes (correo on PostgreSQL: and of the private
cluster's) from /proc, in ms per round (10 ms ticks). Between the APPENDs
and the rest, the bench waits until the server is idle ("settle"): what a server defers
after a bulk load is reported there instead of slowing whichever operation comes next.

Dovecot runs as root-started private instance (own config in --workdir, maildir,
plaintext login on loopback, no FTS plugin, ``mail_fsync = always`` so that both
servers acknowledge an APPEND only once it is on stable storage). Needs root for
Dovecot; correo needs nothing. Raise ``ulimit -n`` for 10,000 IDLE connections (the
script tries itself).
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import random
import re
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from correo_server import CorreoServer
from measure import proc_pss_kib, process_tree, tree_cpu_seconds

__all__ = ["main"]

USER, PASSWORD = "user1@bench.test", "benchpass-2026"  # [auth] min_password_length is 10
RARE = "xylophonequartz"
WORDS = [
    "mail",
    "server",
    "message",
    "folder",
    "network",
    "protocol",
    "client",
    "reply",
    "thread",
    "draft",
    "account",
    "meeting",
    "report",
    "budget",
    "travel",
    "weather",
    "garden",
    "coffee",
    "music",
    "river",
]


def make_messages(n: int, seed: int = 3) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        size = rnd.randint(2_000, 100_000)
        words: list[str] = []
        length = 0
        while length < size:
            w = rnd.choice(WORDS)
            words.append(w)
            length += len(w) + 1
        if i == n // 2:
            words.insert(len(words) // 2, RARE)
        body = "\r\n".join(" ".join(words[j : j + 12]) for j in range(0, len(words), 12))
        head = (
            f"From: Sender {i % 50} <sender{i % 50}@example.org>\r\n"
            f"To: {USER}\r\nSubject: message number {i} {rnd.choice(WORDS)}\r\n"
            f"Date: Mon, 01 Jan 2024 {i % 24:02d}:00:00 +0000\r\n"
            f"Message-ID: <{i}.{seed}@example.org>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        )
        out.append(head.encode() + body.encode() + b"\r\n")
    return out


# -- Dovecot -------------------------------------------------------------------------------


def dovecot_start(
    work: Path, port: int, tls: bool = False, pop3_port: int = 0
) -> subprocess.Popen[bytes] | None:
    """A private Dovecot serving IMAP on ``port`` (started with ``dovecot -F``).

    ``tls``: implicit TLS on ``port`` instead, with a self-signed certificate made here.
    ``pop3_port``: POP3 there too (POP3S with ``tls``; needs dovecot-pop3d).
    """
    if shutil.which("dovecot") is None and not Path("/usr/sbin/dovecot").exists():
        return None
    shutil.rmtree(work, ignore_errors=True)
    (work / "home").mkdir(parents=True)
    uid, gid = 8, 8  # Debian's "mail"
    os.chown(work / "home", uid, gid)
    (work / "users").write_text(
        f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{work}/home\n", encoding="utf-8"
    )
    ssl_conf = "ssl = no"
    imap_port, imaps_port = port, 0
    if tls:
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "ec"),
                *("-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"),
                *("-subj", "/CN=localhost", "-keyout", str(work / "key.pem")),
                *("-out", str(work / "cert.pem")),
            ],
            check=True,
            capture_output=True,
        )
        ssl_conf = f"ssl = required\nssl_cert = <{work}/cert.pem\nssl_key = <{work}/key.pem"
        imap_port, imaps_port = 0, port
    pop3_conf = ""
    if pop3_port:
        plain, secure = (0, pop3_port) if tls else (pop3_port, 0)
        pop3_conf = (
            "service pop3-login {\n"
            f"  inet_listener pop3 {{\n    address = 127.0.0.1\n    port = {plain}\n  }}\n"
            f"  inet_listener pop3s {{\n    address = 127.0.0.1\n    port = {secure}\n  }}\n"
            "}\nprotocol pop3 {\n  mail_max_userip_connections = 20000\n}\n"
        )
    conf = work / "dovecot.conf"
    conf.write_text(f"""\
protocols = imap{" pop3" if pop3_port else ""}
listen = 127.0.0.1
base_dir = {work}/run
state_dir = {work}/state
instance_name = dovecot-imapbench
log_path = {work}/dovecot.log
{ssl_conf}
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {uid}
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:~/Maildir
# equal durability: correo fsyncs every acknowledged write (SQLite WAL, synchronous=FULL)
mail_fsync = always
default_process_limit = 20000
default_client_limit = 20000
default_vsz_limit = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {work}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {work}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
  process_min_avail = 2
  service_count = 0
  client_limit = 20000
}}
service imap {{
  process_limit = 20000
}}
{pop3_conf}""")
    proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", str(conf)])
    _wait_port(port)
    return proc


def correo_start(
    work: Path, port: int, store: str | None = None, tls: bool = False
) -> CorreoServer:
    """correo on ``port`` (IMAPS there with ``tls``), on SQLite or the PostgreSQL ``store``."""
    shutil.rmtree(work, ignore_errors=True)
    srv = CorreoServer(work, smtp_port=port + 1, pop3s_port=port + 2, users=1, store=store)
    srv.setup()
    toml = work / "correo.toml"
    text = toml.read_text()
    text = re.sub(r'(?m)^(\w+) = \["127\.0\.0\.1:\d+"\]$', r'\1 = ["127.0.0.1:0"]', text)
    imap, imaps = (port + 3, port) if tls else (port, port + 3)
    text = re.sub(r"(?m)^imap = \[.*\]$", f'imap = ["127.0.0.1:{imap}"]', text)
    text = re.sub(r"(?m)^imaps = \[.*\]$", f'imaps = ["127.0.0.1:{imaps}"]', text)
    text = re.sub(r"(?m)^smtp = \[.*\]$", f'smtp = ["127.0.0.1:{port + 1}"]', text)
    text = re.sub(r"(?m)^pop3s = \[.*\]$", f'pop3s = ["127.0.0.1:{port + 2}"]', text)
    text = re.sub(r"(?m)^pop3 = \[.*\]$", f'pop3 = ["127.0.0.1:{port + 4}"]', text)
    text = re.sub(r"(?m)^allow_plaintext = .*$", "allow_plaintext = true", text)
    text = re.sub(r"(?m)^level = .*$", 'level = "warning"', text)
    text = re.sub(r"(?m)^connections = \d+", "connections = 20000", text)
    text = re.sub(r"(?m)^connections_per_ip = \d+", "connections_per_ip = 20000", text)
    toml.write_text(text)
    srv.start()
    _wait_port(port)
    return srv


def _wait_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- the measurements ------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


TLS = False  # --tls: every connection is implicit TLS (certificates are not checked)


def login(port: int) -> imaplib.IMAP4:
    if TLS:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=600)
    else:
        client = imaplib.IMAP4("127.0.0.1", port, timeout=600)
    client.login(USER, PASSWORD)
    return client


def settle(pids: Callable[[], list[int]], limit: float = 300.0) -> float:
    """Seconds until the server's processes use under 5% of a core for a whole second.

    Work a server defers after a bulk load (correo's search indexing, SQLite
    checkpoints) is reported here rather than spread over the measured operations.
    """
    started = time.perf_counter()
    quiet = 0
    while time.perf_counter() - started < limit and quiet < 4:
        before = tree_cpu_seconds(pids())
        time.sleep(0.25)
        quiet = quiet + 1 if tree_cpu_seconds(pids()) - before < 0.0125 else 0
    return time.perf_counter() - started - 1.0


def load(port: int, messages: list[bytes], pids: Callable[[], list[int]]) -> dict[str, float]:
    """APPEND every message over one connection, then wait for the server to settle."""
    r: dict[str, float] = {}
    c = login(port)
    started = time.perf_counter()
    for m in messages:
        typ, _ = c.append("INBOX", None, None, m)
        assert typ == "OK"
    r["APPEND msgs/s"] = len(messages) / (time.perf_counter() - started)
    c.logout()
    r["settle after APPEND s"] = settle(pids)
    return r


ENVELOPE_ITEMS = "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"


def first_ops(c: imaplib.IMAP4) -> dict[str, float]:
    """The operations whose first run differs from the next (caches being built)."""
    r: dict[str, float] = {}
    r["SELECT"] = timed(lambda: c.select("INBOX"))
    r["FETCH ENVELOPE 1st"] = timed(lambda: c.fetch("1:*", ENVELOPE_ITEMS))
    r["FETCH ENVELOPE again"] = timed(lambda: c.fetch("1:*", ENVELOPE_ITEMS))
    r["FETCH BODYSTRUCTURE 1st"] = timed(lambda: c.fetch("1:*", "BODYSTRUCTURE"))
    r["FETCH BODYSTRUCTURE again"] = timed(lambda: c.fetch("1:*", "BODYSTRUCTURE"))
    return r


def round_ops(
    c: imaplib.IMAP4, count: int, seed: int, cpu: Callable[[], float] | None = None
) -> dict[str, float]:
    """One round of the repeated operations; the same picks for every server.

    ``cpu``: CPU seconds used so far by the server (and its database); the body FETCH
    rows then get a "CPU ms" row each, the steadier figure on a loaded machine.
    """
    r: dict[str, float] = {}
    rnd = random.Random(seed)
    picks = [rnd.randint(1, count) for _ in range(1000)]

    def singles() -> None:
        for uid in picks:
            typ, _ = c.uid("FETCH", str(uid), "BODY.PEEK[]")
            assert typ == "OK"

    def with_cpu(name: str, fn: Callable[[], object]) -> None:
        before = cpu() if cpu else 0.0
        r[name] = timed(fn)
        if cpu:
            r[name + " CPU ms"] = (cpu() - before) * 1000

    with_cpu("1000 UID FETCH BODY[]", singles)
    # the same in one command: 1,000 random UIDs, bodies in one response
    one = ",".join(map(str, sorted({rnd.randint(1, count) for _ in range(1000)})))
    with_cpu("UID FETCH <1000> BODY[]", lambda: c.uid("FETCH", one, "BODY.PEEK[]"))
    # one by one in UID order from a random start, as mbsync and offlineimap fetch
    first = random.Random(seed + 1000).randint(1, max(1, count - 999))
    walk = list(range(first, min(first + 1000, count + 1)))

    def in_order() -> None:
        for uid in walk:
            typ, _ = c.uid("FETCH", str(uid), "BODY.PEEK[]")
            assert typ == "OK"

    with_cpu("1000 UID FETCH BODY[] in order", in_order)
    found: list[object] = []
    r["UID SEARCH TEXT rare"] = timed(lambda: found.append(c.uid("SEARCH", "TEXT", RARE)))
    _typ, data = found[0]  # type: ignore[misc]
    assert data[0].split() == [str(count // 2 + 1).encode()], data

    def sync_newest() -> None:  # a client's sync: every UID, then the newest 50 envelopes
        typ, got = c.uid("SEARCH", "ALL")
        assert typ == "OK" and len(got[0].split()) == count
        newest = b",".join(got[0].split()[-50:]).decode()
        typ, fetched = c.uid("FETCH", newest, "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")
        assert typ == "OK" and len([f for f in fetched if f != b")"]) == 50

    r["UID SEARCH ALL + FETCH 50 ENV"] = timed(sync_newest)
    c.store("1:*", "-FLAGS.SILENT", "(\\Flagged)")  # untimed: each round sets them anew
    r["STORE +FLAGS 1:*"] = timed(lambda: c.store("1:*", "+FLAGS.SILENT", "(\\Flagged)"))
    r["UID FETCH 1:* (UID FLAGS)"] = timed(lambda: c.uid("FETCH", "1:*", "(UID FLAGS)"))
    # the warm listings again each round: one run is 50-110 ms and swings by a third
    with_cpu("FETCH ENVELOPE again", lambda: c.fetch("1:*", ENVELOPE_ITEMS))
    with_cpu("FETCH BODYSTRUCTURE again", lambda: c.fetch("1:*", "BODYSTRUCTURE"))
    return r


async def _idler(port: int, ready: asyncio.Event, seen: list[float]) -> asyncio.StreamWriter:
    ctx = None
    if TLS:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    await reader.readline()
    writer.write(f'a LOGIN "{USER}" "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
    # generous: thousands of logins and SELECTs of a 10,000-message mailbox queue up
    while not (line := await asyncio.wait_for(reader.readline(), 300)).startswith(b"+"):
        if not line or line.startswith(b"* BYE"):
            raise ConnectionError("server refused an IDLE connection")

    async def wait() -> None:
        await ready.wait()
        while True:
            line = await reader.readline()
            if not line or line.endswith(b"EXISTS\r\n"):
                seen.append(time.perf_counter())
                return

    asyncio.get_running_loop().create_task(wait())
    return writer


async def idle_test(port: int, n: int, pids: Callable[[], list[int]]) -> dict[str, float]:
    before = sum(proc_pss_kib(p) for p in pids())
    ready, seen = asyncio.Event(), []
    writers: list[asyncio.StreamWriter] = []
    for start in range(0, n, 200):
        writers += await asyncio.gather(
            *(_idler(port, ready, seen) for _ in range(min(200, n - start)))
        )
    await asyncio.sleep(2)
    after = sum(proc_pss_kib(p) for p in pids())
    ready.set()
    started = time.perf_counter()
    c = await asyncio.to_thread(login, port)
    await asyncio.to_thread(c.append, "INBOX", None, None, make_messages(1, seed=99)[0])
    deadline = time.monotonic() + 60
    while len(seen) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a count
        await asyncio.sleep(0.01)
    fanout = (max(seen) - started) if len(seen) == n else float("nan")
    for w in writers:
        w.close()
    await asyncio.to_thread(c.logout)
    return {
        f"IDLE x{n} KiB/conn": (after - before) / n,
        f"IDLE x{n} fan-out s": fanout,
    }


def _private_store() -> tuple[str, Callable[[], None], Callable[[], list[int]]]:
    """A throwaway PostgreSQL cluster, as the tests start (tests/pg.py): its URL, how to
    stop it, and its processes (the postmaster's tree)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pg import PgCluster, find_pg_bin

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("correo-pg: PostgreSQL is not installed")
    cluster = PgCluster(bin_dir)
    cluster.start()
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    return cluster.new_database(), cluster.stop, lambda: process_tree(postmaster)


TARGETS = {
    "correo": ("correo",),
    "correo-pg": ("correo-pg",),
    "dovecot": ("dovecot",),
    "both": ("correo", "dovecot"),
    "all": ("correo", "correo-pg", "dovecot"),
}


def main(argv: list[str] | None = None) -> int:
    global TLS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=list(TARGETS), default="both")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--idle", type=int, nargs="*", default=[1000, 10_000])
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/correo-imapbench"))
    p.add_argument("--tls", action="store_true", help="implicit TLS (IMAPS) to every server")
    p.add_argument("--store", default="private", help="correo-pg: a postgresql:// URL or 'private'")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the repeated operations")
    p.add_argument("--port", type=int, default=21430, help="first of the ports (uses +0..+23)")
    a = p.parse_args(argv)
    TLS = a.tls
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    messages = make_messages(a.messages)
    results: dict[str, dict[str, float]] = {}
    ports = {"correo": a.port, "dovecot": a.port + 10, "correo-pg": a.port + 20}
    running: dict[str, tuple[int, Callable[[], None]]] = {}
    cleanups: list[Callable[[], None]] = []
    database: Callable[[], list[int]] = list  # the private cluster's processes, if any
    try:
        for target in TARGETS[a.target]:  # every server up at once: rounds alternate
            port, work = ports[target], a.workdir / target
            if target.startswith("correo"):
                store = None
                if target == "correo-pg":
                    if a.store == "private":
                        store, stop_pg, database = _private_store()
                        cleanups.append(stop_pg)
                    else:
                        store = a.store
                srv = correo_start(work, port, store, a.tls)
                running[target] = (srv.pid, srv.stop)
            else:
                proc = dovecot_start(work, port, a.tls)
                if proc is None:
                    print("dovecot not installed; skipped")
                    continue
                running[target] = (proc.pid, proc.terminate)
        tree = {t: (lambda root=root: process_tree(root)) for t, (root, _s) in running.items()}
        own = {
            t: (lambda f=f: f() + database()) if t == "correo-pg" else f for t, f in tree.items()
        }
        cpu = {t: (lambda f=f: tree_cpu_seconds(f())) for t, f in own.items()}
        clients: dict[str, imaplib.IMAP4] = {}
        for target in running:
            results[target] = load(ports[target], messages, tree[target])
        for target in running:
            clients[target] = login(ports[target])
            results[target] |= first_ops(clients[target])
        # Rounds alternate between the servers (and their order), the median kept: one
        # round swings by a third on a shared 2-core machine, for any server.
        rounds: dict[str, list[dict[str, float]]] = {t: [] for t in running}
        for n in range(a.rounds):
            order = list(running) if n % 2 == 0 else list(reversed(running))
            for target in order:
                rounds[target].append(round_ops(clients[target], len(messages), 7 + n, cpu[target]))
        for target, got in rounds.items():
            for name in got[0]:
                results[target][name] = statistics.median(g[name] for g in got)
            clients[target].logout()
        for target in running:
            for n in a.idle:
                results[target] |= asyncio.run(idle_test(ports[target], n, tree[target]))
    finally:
        for _root, stop in running.values():
            stop()
        for cleanup in cleanups:
            cleanup()
    if not results:
        return 1
    print(
        f"\n{a.messages} messages, {'TLS' if a.tls else 'plaintext'}, median of {a.rounds}"
        " rounds; time in s unless /s"
    )
    targets = list(results)
    names = list(next(iter(results.values())))
    base = "dovecot" if "dovecot" in results else None
    others = [t for t in targets if t != base]
    head = f"{'operation':32} " + " ".join(f"{t:>12}" for t in targets)
    if base:
        head += "".join(f"{t + '/dovecot':>20}" for t in others)
    print(head)
    for name in names:
        vals = [results[t].get(name, float("nan")) for t in targets]
        line = f"{name:32} " + " ".join(f"{v:12.4f}" for v in vals)
        if base:
            ref = results[base].get(name, float("nan"))
            for t in others:
                v = results[t].get(name, float("nan"))
                # a ratio above 1 is always correo worse: times divide, rates invert
                ratio = (
                    (ref / v if v else float("nan"))
                    if "/s" in name
                    else (v / ref if ref else float("nan"))
                )
                line += f"{ratio:19.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
