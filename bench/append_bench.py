"""APPEND alone, side by side: correo on SQLite, correo on PostgreSQL, Dovecot (issue 12).

    python bench/append_bench.py [--target all] [--messages 1000] [--rounds 5] [--tls]

One imaplib client per server APPENDs ``--messages`` messages (the same seeded 2-100 KB
messages as ``imap_bench.py``) per round; rounds alternate between the servers (A/B/C,
then C/B/A), every server up at once.  Per server: the median time per APPEND and the
CPU per APPEND of its own processes (correo on PostgreSQL: its process and, apart, the
private cluster's), read from /proc.  Every server acknowledges an APPEND only once it
is on stable storage (Dovecot: ``mail_fsync = always``; correo: its commit).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import imap_bench as ib
from measure import process_tree, tree_cpu_seconds

__all__ = ["main"]


def _tree_cpu(root: int) -> float:
    return tree_cpu_seconds(process_tree(root))


def _cpu_of(pids: Callable[[], list[int]]) -> float:
    return tree_cpu_seconds(pids())


def _round(
    port: int, messages: list[bytes], cpus: dict[str, Callable[[], float]]
) -> dict[str, float]:
    """One client's APPENDs: ms per APPEND, and ms of CPU per APPEND of each process group."""
    c = ib.login(port)
    before = {k: f() for k, f in cpus.items()}
    started = time.perf_counter()
    for m in messages:
        typ, _ = c.append("INBOX", None, None, m)
        assert typ == "OK"
    wall = time.perf_counter() - started
    after = {k: f() for k, f in cpus.items()}
    c.logout()
    n = len(messages)
    out = {"ms/APPEND": 1000 * wall / n}
    for k in cpus:
        out[f"CPU ms/APPEND {k}"] = 1000 * (after[k] - before[k]) / n
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=list(ib.TARGETS), default="all")
    p.add_argument("--messages", type=int, default=1000, help="APPENDs per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tls", action="store_true", help="implicit TLS (IMAPS) to every server")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/correo-appendbench"))
    p.add_argument("--port", type=int, default=21630, help="first of the ports (uses +0..+33)")
    p.add_argument(
        "--base",
        type=Path,
        help="a second correo on PostgreSQL, 'correo-pg-base', run from this src folder"
        " (the tree before a change, e.g. from git archive), in the same rounds",
    )
    a = p.parse_args(argv)
    ib.TLS = a.tls
    messages = ib.make_messages(a.messages)
    ports = {"correo": a.port, "dovecot": a.port + 10, "correo-pg": a.port + 20}
    targets = list(ib.TARGETS[a.target])
    if a.base is not None:
        targets.insert(
            targets.index("correo-pg") if "correo-pg" in targets else 0, "correo-pg-base"
        )
        ports["correo-pg-base"] = a.port + 30
    running: dict[str, Callable[[], None]] = {}
    cpus: dict[str, dict[str, Callable[[], float]]] = {}
    cleanups: list[Callable[[], None]] = []
    rounds: dict[str, list[dict[str, float]]] = {}
    try:
        for target in targets:
            port, work = ports[target], a.workdir / target
            if target.startswith("correo"):
                store = None
                database: Callable[[], list[int]] | None = None
                if target.startswith("correo-pg"):
                    store, stop_pg, database = ib._private_store()
                    cleanups.append(stop_pg)
                before = os.environ.get("PYTHONPATH")
                if target == "correo-pg-base":  # the child imports correo from there
                    os.environ["PYTHONPATH"] = str(a.base.resolve())
                try:
                    srv = ib.correo_start(work, port, store, a.tls)
                finally:
                    if before is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = before
                running[target] = srv.stop
                cpus[target] = {"server": functools.partial(_tree_cpu, srv.pid)}
                if database is not None:
                    cpus[target]["database"] = functools.partial(_cpu_of, database)
            else:
                proc = ib.dovecot_start(work, port, a.tls)
                if proc is None:
                    print("dovecot not installed; skipped")
                    continue
                running[target] = proc.terminate
                cpus[target] = {"server": functools.partial(_tree_cpu, proc.pid)}
            rounds[target] = []
        for target in running:  # warm up: a first APPEND creates what later ones reuse
            _round(ports[target], messages[:20], cpus[target])
        for n in range(a.rounds):
            order = list(running) if n % 2 == 0 else list(reversed(running))
            for target in order:
                rounds[target].append(_round(ports[target], messages, cpus[target]))
    finally:
        for stop in running.values():
            stop()
        for cleanup in cleanups:
            cleanup()
    load = os.getloadavg()
    print(
        f"\n{a.messages} APPENDs a round, {'TLS' if a.tls else 'plaintext'}, median of"
        f" {a.rounds} rounds; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    base = rounds.get("dovecot")
    for target, got in rounds.items():
        med = {k: statistics.median(g[k] for g in got) for k in got[0]}
        line = f"{target:10} " + "  ".join(f"{k} {v:.3f}" for k, v in med.items())
        line += "  (ms/APPEND per round: " + " ".join(f"{g['ms/APPEND']:.2f}" for g in got) + ")"
        if base and target != "dovecot":
            ref = statistics.median(g["ms/APPEND"] for g in base)
            line += f"  time / dovecot {med['ms/APPEND'] / ref:.2f}x"
        if target == "correo-pg" and "correo-pg-base" in rounds:
            ref = statistics.median(g["ms/APPEND"] for g in rounds["correo-pg-base"])
            line += f"  / correo-pg-base {med['ms/APPEND'] / ref:.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
