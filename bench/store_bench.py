"""The mail store alone, SQLite against PostgreSQL: concurrent durable deliveries.

    python bench/store_bench.py [--backend sqlite|postgresql|both] [-n 5000] [-c 20]
                                [--size 5000] [--accounts 10] [--url postgresql://…]

N deliveries of SIZE bytes, C at a time, spread over ACCOUNTS inboxes (1 = every
delivery into one mailbox, the worst case for row locks), each awaited until durably
committed, as a 250 after DATA is.  Then every message is read back once.  Without
--url, PostgreSQL is a private cluster started for the run (as the tests start it,
fsync on).  Reported: deliveries per second, reads per second, CPU milliseconds per
delivery of this process and of the PostgreSQL server processes (measured per process,
so other load on the machine does not count), and the group-commit factor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from correo.store.api import DeliveryTarget, Envelope, MailStore  # noqa: E402


def _cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of processes (0 for those gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _postgres_pids(data_dir: Path | None) -> list[int]:
    """The postmaster of ``data_dir`` and its children."""
    if data_dir is None:
        return []
    try:
        master = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                pids.append(int(entry))
    return pids


async def _run(store: MailStore, n: int, c: int, size: int, accounts: int) -> tuple[float, float]:
    body = b"Subject: bench\r\n\r\n" + b"x" * max(0, size - 18)
    targets = [[DeliveryTarget(f"user{i}@bench.test")] for i in range(accounts)]
    for t in targets:
        await store.create_account(t[0].account)
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            spool = store.new_spool()
            spool.write(body)
            await store.deliver(spool, Envelope("s@bench.test"), targets[i % accounts])

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(c)])
    delivered = time.perf_counter() - started
    started = time.perf_counter()
    for t in targets:
        for info in await store.list_messages(t[0].account):
            data = await store.read_inline(t[0].account, "INBOX", info.uid)
            assert data is not None and len(data) == len(body)
    return delivered, time.perf_counter() - started


def bench(backend: str, a: argparse.Namespace) -> dict[str, float]:
    cluster = None
    pg_data: Path | None = None
    with tempfile.TemporaryDirectory(prefix="correo-store-bench-") as tmp:
        store: MailStore
        if backend == "sqlite":
            from correo.store.sqlite import SqliteStore

            store = SqliteStore(Path(tmp) / "store", recover=True)
        else:
            from correo.store.postgres import PostgresStore

            url = a.url
            if url is None:
                from tests.pg import PgCluster, find_pg_bin

                bin_dir = find_pg_bin()
                if bin_dir is None:
                    raise SystemExit("PostgreSQL is not installed (or pass --url)")
                cluster = PgCluster(bin_dir)
                cluster.start()
                pg_data = cluster.data
                url = cluster.new_database()
            store = PostgresStore(url, Path(tmp) / "store", recover=True)
        try:

            async def go() -> dict[str, float]:
                await store.open()
                pids = _postgres_pids(pg_data)
                cpu0, pg0 = time.process_time(), _cpu_of(pids)
                write_s, read_s = await _run(store, a.n, a.c, a.size, a.accounts)
                cpu, pg = time.process_time() - cpu0, _cpu_of(pids) - pg0
                batches, writes = getattr(store, "commit_stats", (0, 0))
                await store.close()
                return {
                    "deliveries/s": a.n / write_s,
                    "reads/s": a.n / read_s,
                    "correo CPU ms/msg": cpu * 1000 / a.n,
                    "postgres CPU ms/msg": pg * 1000 / a.n,
                    "writes per commit": writes / batches if batches else 0.0,
                }

            return asyncio.run(go())
        finally:
            if cluster is not None:
                cluster.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("-c", type=int, default=20)
    p.add_argument("--size", type=int, default=5000)
    p.add_argument("--accounts", type=int, default=10)
    p.add_argument("--url", default=None, help="an existing PostgreSQL database to use")
    a = p.parse_args()
    names = ["sqlite", "postgresql"] if a.backend == "both" else [a.backend]
    results = {name: bench(name, a) for name in names}
    print(f"n={a.n} c={a.c} size={a.size} accounts={a.accounts}")
    print(f"{'':24}" + "".join(f"{n:>12}" for n in names))
    for key in next(iter(results.values())):
        print(f"{key:24}" + "".join(f"{results[n][key]:>12.2f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
