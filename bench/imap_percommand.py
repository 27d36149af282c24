"""Server CPU per single-body IMAP FETCH command, two correo trees side by side.

    python bench/imap_percommand.py --tree base=/var/tmp/imapshell-base/src --tree new=src
        [--store sqlite|pg] [--messages 3000] [--rounds 25] [--port 24100]
        [--workdir /var/tmp/imapshell-bench] [--spy new:OUT.txt]

Each ``--tree NAME=SRC`` is a correo served from that source folder (``PYTHONPATH``; a
tree exported with ``git archive`` serves as "before"). Every server gets the same
mailbox (``--messages`` messages of 2-100 KB, appended over IMAP, then the server left
to settle); then ``--rounds`` rounds, the trees' order alternating, of 1,000 random
``UID FETCH n BODY.PEEK[]``, one per command (the same picks for every tree in a
round; with ``--block 100`` the trees take turns every 100 commands, ABBA, so that a
change in the machine's load falls on both). Per round the server's CPU is read from
/proc (correo's process, not the database's: what changes between trees is correo's
own work) and printed as µs per command, mean and median over the rounds, and the
median of the rounds' ratios to the first tree. It is counted twice: utime + stime of
/proc/PID/stat, in 10 ms ticks (1-2 ms of a ~200 ms round), and the threads' schedstat
in nanoseconds, the steadier figure.

``--spy NAME:OUT``: py-spy records that tree's server (``-r 400 -f raw``) through all
its rounds; ``OUT`` gets the raw stacks, aggregated by ``--aggregate OUT``.
"""

from __future__ import annotations

import argparse
import functools
import imaplib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from imap_bench import USER, _private_store, correo_start, make_messages, settle
from measure import process_tree, tree_cpu_seconds

__all__ = ["main"]

_SPY = os.environ.get("PY_SPY", "/tmp/spy/bin/py-spy")


def _login(port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=600)
    client.login(USER, "benchpass-2026")
    return client


def _cpu_ns(pid: int) -> int:
    """CPU time of all the process's threads in ns (schedstat: no 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total


def _round(client: imaplib.IMAP4, picks: list[int]) -> None:
    for uid in picks:
        typ, _ = client.uid("FETCH", str(uid), "BODY.PEEK[]")
        assert typ == "OK"


def aggregate(path: Path, top: int = 40) -> str:
    """Self and total samples per function from py-spy's raw (collapsed) stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} samples"]
    for title, counter in (("self", own), ("total", total)):
        lines.append(f"-- {title}")
        for frame, n in counter.most_common(top):
            lines.append(f"{n / samples * 100:6.2f}%  {frame}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", default=[], help="NAME=SRC (repeat)")
    p.add_argument("--store", choices=["sqlite", "pg"], default="sqlite")
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--commands", type=int, default=1000, help="single FETCHes per round")
    p.add_argument(
        "--block", type=int, default=1000, help="trees alternate every BLOCK commands of a round"
    )
    p.add_argument("--port", type=int, default=24100, help="first port (uses +0..+9 a tree)")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/imapshell-bench"))
    p.add_argument("--spy", help="NAME:OUT, py-spy that tree's server into OUT")
    p.add_argument("--aggregate", type=Path, help="print a py-spy raw file's summary, exit")
    a = p.parse_args(argv)
    if a.aggregate is not None:
        print(aggregate(a.aggregate))
        return 0
    trees = dict(t.split("=", 1) for t in a.tree)
    if not trees:
        p.error("at least one --tree NAME=SRC")
    messages = make_messages(a.messages)
    stops: list[object] = []
    servers: dict[str, tuple[int, int]] = {}  # name: (port, pid)
    stop_pg = None
    try:
        urls: dict[str, str | None] = dict.fromkeys(trees)
        if a.store == "pg":
            url, stop_pg, _db = _private_store()
            base_url = url.rsplit("/", 1)[0]
            for i, name in enumerate(trees):  # a database each, on the one cluster
                urls[name] = url if i == 0 else _new_database(url, base_url, i)
        for i, (name, src) in enumerate(trees.items()):
            port = a.port + 10 * i
            os.environ["PYTHONPATH"] = str(Path(src).resolve())
            srv = correo_start(a.workdir / name, port, urls[name])
            stops.append(srv.stop)
            servers[name] = (port, srv.pid)
        os.environ.pop("PYTHONPATH", None)
        clients: dict[str, imaplib.IMAP4] = {}
        for name, (port, pid) in servers.items():
            c = _login(port)
            for m in messages:
                assert c.append("INBOX", None, None, m)[0] == "OK"
            settle(functools.partial(process_tree, pid))
            c.select("INBOX", readonly=False)
            _round(c, list(range(1, 101)))  # warm: the first commands' imports and caches
            clients[name] = c
        spy = None
        if a.spy:
            who, out = a.spy.split(":", 1)
            spy = subprocess.Popen(
                [_SPY, "record", "-r", "400", "-f", "raw", "-o", out, "-p", str(servers[who][1])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        per: dict[str, list[float]] = {n: [] for n in servers}
        wall: dict[str, list[float]] = {n: [] for n in servers}
        fine: dict[str, list[float]] = {n: [] for n in servers}
        loads = [os.getloadavg()[0]]
        for r in range(a.rounds):
            rnd = random.Random(1000 + r)
            picks = [rnd.randint(1, a.messages) for _ in range(a.commands)]
            got = {n: [0.0, 0.0, 0.0] for n in servers}  # ticks s, schedstat ns, wall s
            for b, start in enumerate(range(0, a.commands, a.block)):
                block = picks[start : start + a.block]
                order = list(servers) if (r + b) % 2 == 0 else list(reversed(servers))
                for name in order:
                    pid, sums = servers[name][1], got[name]
                    cpu0, ns0, t0 = tree_cpu_seconds([pid]), _cpu_ns(pid), time.perf_counter()
                    _round(clients[name], block)
                    sums[2] += time.perf_counter() - t0
                    sums[0] += tree_cpu_seconds([pid]) - cpu0
                    sums[1] += _cpu_ns(pid) - ns0
            for name, (ticks, ns, spent) in got.items():
                wall[name].append(spent)
                per[name].append(ticks / a.commands * 1e6)
                fine[name].append(ns / a.commands / 1e3)
            loads.append(os.getloadavg()[0])
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        for c in clients.values():
            c.logout()
    finally:
        for stop in stops:
            stop()  # type: ignore[operator]
        if stop_pg is not None:
            stop_pg()
        shutil.rmtree(a.workdir, ignore_errors=True)
    print(
        f"\n{a.store}, {a.messages} messages, {a.rounds} rounds of {a.commands} random single"
        f" UID FETCH BODY.PEEK[]; load average {min(loads):.1f}-{max(loads):.1f}"
    )
    first = next(iter(per))
    for title, got in (("/proc/PID/stat ticks", per), ("schedstat", fine)):
        print(f"CPU µs per command, {title}:")
        for name in got:
            mean, med = statistics.mean(got[name]), statistics.median(got[name])
            ratio = mean / statistics.mean(got[first])
            paired = statistics.median(x / y for x, y in zip(got[name], got[first], strict=True))
            print(
                f"{name:>8}: mean {mean:6.1f} median {med:6.1f} ({ratio:.3f}x {first},"
                f" median of the rounds' ratios {paired:.3f});"
                f" wall ms/round median {statistics.median(wall[name]) * 1000:.0f}"
            )
    return 0


def _new_database(url: str, base_url: str, i: int) -> str:
    """Another database on the private cluster: the first URL's name with a suffix."""
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0] + f"_{i}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    return f"{base_url}/{name}" + (url[url.index("?") :] if "?" in url else "")


if __name__ == "__main__":
    raise SystemExit(main())
