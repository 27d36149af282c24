"""Logins with the directory in SQLite against the directory in PostgreSQL.

    python bench/login_bench.py                  # both, a private PostgreSQL cluster
    python bench/login_bench.py --url postgresql://…/db   # an existing (empty) database

Two measurements per backend:

* **in process**: what one login costs the directory and the throttle, without sockets —
  ``verify_password`` of a remembered login (on PostgreSQL it first reads the directory's
  serial: the price of "a change on another node counts at once"), the same with a
  full argon2id verification, and a throttle round (``begin`` + ``success``; on
  PostgreSQL a transaction on the shared counters);
* **end to end**: IMAP ``LOGIN``/``LOGOUT`` over implicit TLS against ``correo serve``
  (``-c`` clients in threads, each login on a new connection), logins per second.

Run it on an idle machine: the figures are CPU-bound and shared with PostgreSQL.
"""

from __future__ import annotations

import argparse
import imaplib
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.correo_server import DOMAIN, PASSWORD, CorreoServer

from correo.directory import Directory, PasswordScheme, SqliteDirectory
from correo.server.throttle import AuthThrottle, ThrottlePolicy


def _per_call(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call, the median of three runs of ``n``."""
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def in_process(directory: Directory, label: str, n: int) -> dict[str, float]:
    directory.add_domain("bench.test")
    directory.add_user("alice@bench.test", PASSWORD)
    directory.verify_password("alice@bench.test", PASSWORD)  # now remembered
    counters = directory.login_counters()
    throttle = AuthThrottle(
        ThrottlePolicy(), time.time if counters else time.monotonic, counters=counters
    )

    def throttled() -> None:
        throttle.begin("192.0.2.1", "alice@bench.test")
        throttle.success("192.0.2.1", "alice@bench.test")

    results = {
        "remembered login µs": _per_call(
            lambda: directory.verify_password("alice@bench.test", PASSWORD), n
        ),
        "lookup (resolve) µs": _per_call(lambda: directory.resolve("alice+x@bench.test"), n),
        "throttle round µs": _per_call(throttled, n // 4),
    }
    print(f"  {label}: " + ", ".join(f"{k} {v:.0f}" for k, v in results.items()), flush=True)
    return results


_LISTENERS = [
    "smtp",
    "submission",
    "submissions",
    "pop3",
    "pop3s",
    "imap",
    "imaps",
    "lmtp",
    "sieve",
    "http",
    "https",
    "metrics",
]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [int(sock.getsockname()[1]) for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def end_to_end(store: str | None, logins: int, clients: int) -> float:
    smtp, pop3s, imaps = _free_ports(3)
    server = CorreoServer(users=1, store=store, smtp_port=smtp, pop3s_port=pop3s)
    server.setup()
    assert server.data is not None
    toml = server.data / "correo.toml"
    wanted = {"smtp": smtp, "pop3s": pop3s, "imaps": imaps}
    lines = []
    for line in toml.read_text().splitlines():
        name = line.split(" = ", 1)[0]
        if line.startswith(f"{name} = [") and name in _LISTENERS:
            port = wanted.get(name)
            line = f'{name} = ["127.0.0.1:{port}"]' if port else f"{name} = []"
        lines.append(line)
    toml.write_text("\n".join(lines) + "\n")
    server.start()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    user = f"user1@{DOMAIN}"
    done = 0
    lock = threading.Lock()

    def worker(count: int) -> None:
        nonlocal done
        for _ in range(count):
            client = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=context, timeout=30)
            client.login(user, PASSWORD)
            client.logout()
            with lock:
                done += 1

    try:
        worker(1)  # the first login pays argon2; the rest are remembered
        threads = [
            threading.Thread(target=worker, args=(logins // clients,)) for _ in range(clients)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        server.clean()
    return (done - 1) / elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="an empty PostgreSQL database (default: a private cluster)")
    p.add_argument("-n", type=int, default=2000, help="calls per in-process measurement")
    p.add_argument("--logins", type=int, default=400, help="end-to-end logins")
    p.add_argument("-c", type=int, default=8, help="end-to-end concurrent clients")
    a = p.parse_args()
    cluster = None
    url = a.url
    if url is None:
        from tests.pg import PgCluster, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            print("no PostgreSQL installed", file=sys.stderr)
            return 1
        cluster = PgCluster(bin_dir)
        cluster.start()
        url = cluster.new_database()
    try:
        from correo.directory.postgres import PostgresDirectory

        print("in process (median of 3 runs):")
        with tempfile.TemporaryDirectory() as tmp:
            scheme = PasswordScheme()
            sqlite = SqliteDirectory(
                Path(tmp) / "directory.db", passwords=scheme, remember_logins=300
            )
            in_process(sqlite, "sqlite    ", a.n)
            sqlite.close()
        pg = PostgresDirectory(url, passwords=PasswordScheme(), remember_logins=300, watch=True)
        in_process(pg, "postgresql", a.n)
        pg.close()
        print(f"end to end, IMAP LOGIN/LOGOUT over TLS, {a.c} clients:")
        e2e_url = cluster.new_database() if cluster is not None else url
        for label, store in (("sqlite    ", None), ("postgresql", e2e_url)):
            rate = end_to_end(store, a.logins, a.c)
            print(f"  {label}: {rate:.0f} logins/s", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
