"""CPU per message per component: correo nodes and PostgreSQL, one node against two.

    python bench/cluster_bench.py [-n 3000] [-c 20] [--size 5000] [--nodes 1 2] [--sqlite]

For each node count: a fresh database on a private PostgreSQL cluster (as the tests start
one, tests/pg.py), that many correo nodes initialised on it with `correo init --store`,
``-n`` messages pushed over SMTP split evenly between the nodes, then a wait until every
message is in a mailbox (counted in the database). Reported: end-to-end rate, and the CPU
seconds per message of the correo processes (all nodes together) and of the PostgreSQL
server processes, read from /proc. On one machine the nodes, the database and the load
generator share the cores: the per-message CPU, not the rate, is what carries over to a
cluster of separate machines (docs/cluster.md, "Scaling"). ``--sqlite`` first measures
one node on the embedded store the same way, for the ratio of CPU per message.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from correo_server import CorreoServer
from measure import process_tree, tree_cpu_seconds
from smtp_load import LoadResult, run_load

__all__ = ["main"]


def _count(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM messages").fetchone()
    return int(row[0]) if row else 0


def _node(root: Path, k: int, url: str | None, users: int) -> CorreoServer:
    base = 22500 + 10 * k
    srv = CorreoServer(
        root / f"node{k}", smtp_port=base, pop3s_port=base + 1, users=users, store=url
    )
    srv.setup()
    toml = srv.data / "correo.toml"  # type: ignore[operator]
    text = toml.read_text()
    text = re.sub(r'(?m)^(\w+) = \["127\.0\.0\.1:\d+"\]$', r'\1 = ["127.0.0.1:0"]', text)
    text = re.sub(r"(?m)^smtp = \[.*\]$", f'smtp = ["127.0.0.1:{base}"]', text)
    text = re.sub(r"(?m)^pop3s = \[.*\]$", f'pop3s = ["127.0.0.1:{base + 1}"]', text)
    text = re.sub(r"(?m)^level = .*$", 'level = "warning"', text)
    toml.write_text(text)
    return srv


def _count_sqlite(data: Path) -> int:
    import sqlite3

    db = sqlite3.connect(f"file:{data / 'store' / 'mail.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        db.close()


def one_run(nodes: int, a: argparse.Namespace, cluster: object) -> dict[str, float]:
    """``nodes`` nodes on a fresh database; 0: one node on the embedded SQLite store."""
    url: str | None = cluster.new_database() if nodes else None  # type: ignore[attr-defined]
    pg_root = int((cluster.data / "postmaster.pid").read_text().split()[0])  # type: ignore[attr-defined]
    root = Path(tempfile.mkdtemp(prefix="correo-cluster-bench-"))
    servers = [_node(root, k, url, a.users if k == 0 else 0) for k in range(max(nodes, 1))]
    for srv in servers:
        srv.start()
    try:
        time.sleep(2)  # the nodes' start-up work is not the messages'

        def cpu() -> tuple[float, float]:
            correo = sum(tree_cpu_seconds(process_tree(s.pid)) for s in servers)
            return correo, tree_cpu_seconds(process_tree(pg_root))

        c0, p0 = cpu()
        started = time.monotonic()
        share = a.n // len(servers)

        async def load() -> list[LoadResult]:
            return list(
                await asyncio.gather(
                    *(
                        run_load(
                            port=s.smtp_port,
                            n=share,
                            concurrency=a.c // len(servers),
                            size=a.size,
                            users=a.users,
                        )
                        for s in servers
                    )
                )
            )

        results = asyncio.run(load())
        accepted = sum(r.accepted for r in results)
        deadline = time.monotonic() + a.timeout
        data = servers[0].data
        assert data is not None

        def count() -> int:
            return _count(url) if url is not None else _count_sqlite(data)

        while count() < accepted and time.monotonic() < deadline:
            time.sleep(0.2)
        wall = time.monotonic() - started
        c1, p1 = cpu()
        return {
            "accepted": accepted,
            "end-to-end msg/s": accepted / wall,
            "correo CPU ms/msg": 1000 * (c1 - c0) / max(accepted, 1),
            "PostgreSQL CPU ms/msg": 1000 * (p1 - p0) / max(accepted, 1),
        }
    finally:
        for srv in servers:
            srv.clean()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=3000, help="messages per run")
    p.add_argument("-c", type=int, default=20, help="SMTP connections, split between nodes")
    p.add_argument("--size", type=int, default=5000)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--sqlite", action="store_true", help="first one node on SQLite")
    a = p.parse_args(argv)
    from tests.pg import PgCluster, find_pg_bin

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed")
    cluster = PgCluster(bin_dir)
    cluster.start()
    results: dict[int, dict[str, float]] = {}
    try:
        for nodes in ([0] if a.sqlite else []) + a.nodes:
            results[nodes] = one_run(nodes, a, cluster)
            print(f"{nodes} node(s): {results[nodes]}", flush=True)
    finally:
        cluster.stop()
    print(f"\nn={a.n} c={a.c} size={a.size}")
    print(f"{'':24}" + "".join(f"{f'{k} node(s)' if k else 'SQLite':>12}" for k in results))
    for name in next(iter(results.values())):
        print(f"{name:24}" + "".join(f"{results[k][name]:12.2f}" for k in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
