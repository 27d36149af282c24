"""SEARCH TEXT/BODY candidates on PostgreSQL: the ``strpos`` scan against the trigram index.

    python bench/pg_search_bench.py --messages 10000 --rounds 5

Builds one mailbox of N messages in a throwaway cluster (tests/pg.py: fsync on) whose
search texts are 2-20 KB drawn from the words of docs/ (in their index form, as the
indexer writes them), then asks the store for the candidates of a rare word (in 3
messages) and a common one (in about 60 %), in both query shapes the store has (one
``strpos`` per needle, the scan; one LIKE per needle, which the index can answer), rounds
taking turns: first without ``text_docs_trgm``, then with it (made as ``correo store
search-index on`` makes it). Reports medians of wall time and of the CPU of the
cluster's processes per query.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from measure import process_tree, tree_cpu_seconds  # noqa: E402
from tests.pg import PgCluster, find_pg_bin  # noqa: E402

from correo.delivery.textindex import index_form  # noqa: E402
from correo.store.api import DeliveryTarget, Envelope  # noqa: E402
from correo.store.postgres import PostgresStore  # noqa: E402
from correo.store.postgres_schema import set_search_index  # noqa: E402

ACCOUNT = "a@x.test"
RARE = "zanzibarquartz"


def vocabulary() -> list[str]:
    words: dict[str, None] = {}
    for path in sorted((ROOT / "docs").glob("*.md")):
        for word in re.findall(r"[a-z][a-z'-]{2,}", path.read_text().casefold()):
            words.setdefault(word, None)
    return list(words)[:4000]


def texts(n: int, words: list[str], rnd: random.Random) -> list[str]:
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(words))))  # Zipf-like
    out = []
    for i in range(n):
        size = rnd.randint(2000, 20000)
        picked: list[str] = []
        length = 0
        while length < size:
            chunk = rnd.choices(words, cum_weights=cum, k=256)
            picked.extend(chunk)
            length += sum(len(w) + 1 for w in chunk)
        if i % (n // 3) == 7:
            picked.insert(rnd.randrange(len(picked)), RARE)
        out.append(index_form(" ".join(picked)))
    return out


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: tree_cpu_seconds([pid]) for pid in pids}


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds of the processes alive at both reads (an exited worker counts 0)."""
    return sum(after[p] - before[p] for p in before if p in after and after[p] >= before[p])


async def build(url: str, root: Path, docs: list[str]) -> PostgresStore:
    store = PostgresStore(url, root, recover=True)
    await store.open()
    spool = store.new_spool()
    spool.write(b"Subject: s\r\n\r\nbody\r\n")
    await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(ACCOUNT)])
    import psycopg

    n = len(docs)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, modseq)"
                " SELECT mailbox_id, g, blob_id, size, internal_date, modseq FROM messages,"
                " generate_series(2, %s) AS g WHERE uid = 1",
                (n,),
            )
            await conn.execute("UPDATE blobs SET refs = %s", (n,))
            await conn.execute("UPDATE mailboxes SET uidnext = %s", (n + 1,))
        (box,) = (await (await conn.execute("SELECT id FROM mailboxes")).fetchone()) or (0,)
        async with conn.cursor().copy("COPY text_docs (mailbox_id, uid, text) FROM STDIN") as copy:
            for uid, text in enumerate(docs, 1):
                await copy.write_row((box, uid, text))
        await conn.execute("VACUUM ANALYZE text_docs")
    return store


async def query(
    store: PostgresStore, pids: list[int], like: bool, word: str
) -> tuple[float, float, int]:
    store._trgm_index, store._trgm_checked = like, time.monotonic()  # the query shape
    pids[:] = process_tree(pids[0])
    cpu0, t0 = cpu_of(pids), time.perf_counter()
    maybe, _ = await store.text_candidates(ACCOUNT, "INBOX", [word])
    wall = time.perf_counter() - t0
    return wall, spent(cpu0, cpu_of(pids)), len(maybe)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rnd = random.Random(12)
    words = vocabulary()
    docs = texts(args.messages, words, rnd)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    counts = dict.fromkeys([w for w in words if len(w) >= 6 and w.isalpha()][:300], 0)
    for d in docs:
        present = set(d.split())
        for w in counts:
            counts[w] += w in present
    common = min(counts, key=lambda w: abs(counts[w] - 0.6 * len(docs)))
    print(
        f"{len(docs)} texts, {mb:.1f} MB in index form, {len(words)} words;"
        f" rare {RARE!r}, common {common!r} (in {counts[common]})"
    )
    bin_dir = find_pg_bin()
    assert bin_dir is not None
    cluster = PgCluster(bin_dir)
    cluster.start()
    root = Path(tempfile.mkdtemp(prefix="pgsearch-"))
    try:
        url = cluster.new_database()
        store = await build(url, root, docs)
        pids = process_tree(int((Path(cluster.data) / "postmaster.pid").read_text().split()[0]))
        results: dict[str, list[tuple[float, float, int]]] = {}

        async def rounds(label: str, shapes: dict[str, bool]) -> None:
            for _ in range(args.rounds):
                for name, like in shapes.items():
                    for kind, word in (("rare", RARE), ("common", common)):
                        results.setdefault(f"{label}, {name}, {kind}", []).append(
                            await query(store, pids, like, word)
                        )

        print(f"load average before: {os.getloadavg()}")
        await rounds("no index", {"strpos": False, "LIKE of the needle": True})
        async with await __import__("psycopg").AsyncConnection.connect(
            url, autocommit=True
        ) as conn:
            t0 = time.perf_counter()
            pids[:] = process_tree(pids[0])
            cpu0 = cpu_of(pids)
            assert await set_search_index(conn, True) == "on"
            print(
                f"search-index on: {time.perf_counter() - t0:.1f} s,"
                f" cluster CPU {spent(cpu0, cpu_of(process_tree(pids[0]))):.1f} s"
            )
        pids[:] = process_tree(pids[0])
        await rounds("index", {"strpos": False, "LIKE of the needle": True})
        print(f"load average after: {os.getloadavg()}")
        for key, rows in results.items():
            wall = statistics.median(r[0] for r in rows) * 1000
            cpu = statistics.median(r[1] for r in rows) * 1000
            print(f"  {key:40} wall {wall:8.1f} ms  PG CPU {cpu:8.1f} ms  candidates {rows[0][2]}")
        await store.close()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
