"""The SMTP benchmark of the foundation issue: correo side by side with Postfix -> Dovecot.

    python bench/smtp_bench.py [--target correo|peer|both] [-n 5000] [-c 20] [--size 5000]
    python bench/smtp_bench.py --target correo --store private   # correo on PostgreSQL

For each target: start it fresh, push N messages over C connections into its MX listener,
then poll POP3 STAT over every user until all N are retrievable. Reported per target:
acceptance rate, end-to-end rate (N / first connect -> all retrievable), machine CPU seconds
per message (minus the load generator's own), peak RSS, DATA-end -> 250 latency.
Needs root for the peer (Postfix and Dovecot start as root).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import correo_server
import peer_postfix_dovecot as peer
from measure import (
    CpuWindow,
    PollCost,
    PopTarget,
    Retrieval,
    RssSampler,
    calibrate,
    proc_kib,
    process_tree,
    reset_hwm,
    wait_retrievable,
)
from smtp_load import LoadResult, percentile, run, run_load

__all__ = ["Outcome", "bench_target", "main"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One target's figures."""

    name: str
    load: LoadResult
    retrieval: Retrieval
    poll: PollCost
    cpu_seconds: float
    peak_rss_kib: int
    peak_pss_kib: int

    @property
    def e2e_seconds(self) -> float:
        return self.retrieval.last - self.load.t_start

    @property
    def e2e_rate(self) -> float:
        if not self.retrieval.complete or self.e2e_seconds <= 0:
            return 0.0
        return self.load.accepted / self.e2e_seconds

    @property
    def retrievable(self) -> int:
        return sum(self.retrieval.counts.values())

    @property
    def cpu_per_msg(self) -> float:
        """Machine CPU minus the load generator minus the bench's own POP3 logins."""
        server = self.cpu_seconds - self.retrieval.logins * self.poll.cpu_per_login
        return max(0.0, server) / max(1, self.load.accepted)


def bench_target(
    name: str,
    smtp_port: int,
    pop: PopTarget,
    pids: Callable[[], Iterable[int]],
    hwm_pid: int | None,
    n: int,
    c: int,
    size: int,
    users: int,
    timeout: float,
) -> Outcome:
    """Load one running target and wait until everything it accepted is retrievable."""
    baseline, poll = calibrate(pop)
    print(
        f"  [{name}] POP3 poll round {poll.round_seconds:.2f}s, "
        f"{poll.cpu_per_login:.3f} CPU s per login",
        flush=True,
    )
    domain = pop.users[0].split("@")[1]
    cpu = CpuWindow()
    if hwm_pid is not None:
        reset_hwm(hwm_pid)  # forget the calibration logins' memory
    with RssSampler(pids) as rss:
        cpu.start()
        res = run(run_load("127.0.0.1", smtp_port, n, c, size, users, domain))
        # correo: the kernel's exact peak over the load, read before any POP3 login.
        hwm = proc_kib(hwm_pid, "VmHWM") if hwm_pid is not None else 0
        print(f"  [{name}] load: {res.summary()}", flush=True)
        for line in res.error_samples:
            print(f"  [{name}]   error: {line}", flush=True)
        expected = {u: baseline[u] + res.accepted_by_rcpt[u] for u in pop.users}
        got = wait_retrievable(pop, expected, timeout, quiet=rss.paused)
        cpu.stop()
    got.counts = {u: got.counts[u] - baseline[u] for u in pop.users}
    peak = max(rss.peak_kib, hwm)
    out = Outcome(name, res, got, poll, cpu.seconds, peak, rss.peak_pss_kib)
    print(
        f"  [{name}] retrievable {out.retrievable}/{res.accepted} after "
        f"{out.e2e_seconds:.2f}s ({got.logins} POP3 logins)",
        flush=True,
    )
    return out


def run_peer(a: argparse.Namespace) -> Outcome:
    cfg = peer.PeerConfig(workdir=a.peer_workdir, users=a.users)
    print("peer: Postfix -> LMTP -> Dovecot (setting up)", flush=True)
    peer.setup(cfg)
    peer.start(cfg)
    try:
        pop = PopTarget(
            "127.0.0.1",
            cfg.pop3_port,
            tls=False,
            users=tuple(f"user{i}@{peer.DOMAIN}" for i in range(1, a.users + 1)),
            password=peer.PASSWORD,
        )
        time.sleep(1)  # let the freshly forked daemons settle before measuring
        return bench_target(
            "peer", cfg.smtp_port, pop, lambda: peer.peer_pids(cfg), None,
            a.n, a.c, a.size, a.users, a.timeout,
        )  # fmt: skip
    finally:
        if not a.keep:
            peer.stop(cfg)


def run_correo(a: argparse.Namespace) -> Outcome:
    cluster = None
    store = a.store
    if store == "private":  # a PostgreSQL of its own, as the tests start (tests/pg.py)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.pg import PgCluster, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise SystemExit("--store private: PostgreSQL is not installed")
        cluster = PgCluster(bin_dir)
        cluster.start()
        store = cluster.new_database()
    srv = correo_server.CorreoServer(a.correo_data, users=a.users, store=store)
    print("correo: setting up" + (f" on {store}" if store else ""), flush=True)
    try:
        srv.setup()
        srv.start()
        return _bench_correo(a, srv)
    finally:
        if cluster is not None:
            cluster.stop()


def _bench_correo(a: argparse.Namespace, srv: correo_server.CorreoServer) -> Outcome:
    try:
        pop = PopTarget(
            "127.0.0.1",
            srv.pop3s_port,
            tls=True,
            users=tuple(f"user{i}@{correo_server.DOMAIN}" for i in range(1, a.users + 1)),
            password=correo_server.PASSWORD,
        )
        time.sleep(1)
        return bench_target(
            "correo", srv.smtp_port, pop, lambda: process_tree(srv.pid), srv.pid,
            a.n, a.c, a.size, a.users, a.timeout,
        )  # fmt: skip
    finally:
        if a.keep:
            srv.stop()
        else:
            srv.clean()


def _table(outcomes: list[Outcome]) -> str:
    rows: list[tuple[str, Callable[[Outcome], float], str, bool]] = [
        ("accepted", lambda o: o.load.accepted, "{:.0f}", False),
        ("errors", lambda o: o.load.errors, "{:.0f}", False),
        ("acceptance rate (msg/s)", lambda o: o.load.acceptance_rate, "{:.0f}", True),
        ("end-to-end rate (msg/s)", lambda o: o.e2e_rate, "{:.0f}", True),
        ("all accepted (s)", lambda o: o.load.t_last_accept - o.load.t_start, "{:.2f}", False),
        ("end-to-end time (s)", lambda o: o.e2e_seconds, "{:.2f}", False),
        ("CPU s/msg (machine)", lambda o: o.cpu_per_msg, "{:.5f}", True),
        ("POP3 poll round (s)", lambda o: o.poll.round_seconds, "{:.2f}", False),
        ("peak RSS (MiB)", lambda o: o.peak_rss_kib / 1024, "{:.1f}", True),
        ("peak PSS (MiB)", lambda o: o.peak_pss_kib / 1024, "{:.1f}", True),
        ("latency p50 (ms)", lambda o: percentile(o.load.latencies, 50) * 1000, "{:.1f}", True),
        ("latency p99 (ms)", lambda o: percentile(o.load.latencies, 99) * 1000, "{:.1f}", True),
    ]
    names = [o.name for o in outcomes]
    ratio = len(outcomes) == 2 and names == ["correo", "peer"]
    head = (
        f"{'':26}" + "".join(f"{n:>12}" for n in names) + (f"{'correo/peer':>14}" if ratio else "")
    )
    out = [head]
    for label, get, fmt, with_ratio in rows:
        vals = [get(o) for o in outcomes]
        line = f"{label:26}" + "".join(f"{fmt.format(v):>12}" for v in vals)
        if ratio and with_ratio:
            line += f"{(vals[0] / vals[1] if vals[1] else 0.0):>13.2f}x"
        out.append(line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="SMTP bench: correo vs Postfix -> LMTP -> Dovecot")
    p.add_argument("--target", choices=["correo", "peer", "both"], default="both")
    p.add_argument("-n", type=int, default=5000, help="messages")
    p.add_argument("-c", type=int, default=20, help="concurrent connections")
    p.add_argument("--size", type=int, default=5000, help="bytes per message")
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--timeout", type=float, default=600, help="end-to-end wait limit (s)")
    p.add_argument("--keep", action="store_true", help="leave the peer's data in place")
    p.add_argument("--peer-workdir", type=Path, default=peer.DEFAULT_WORKDIR)
    p.add_argument("--correo-data", type=Path, default=None)
    p.add_argument(
        "--store",
        default=None,
        help="correo on PostgreSQL: a postgresql:// URL, or 'private' for a throwaway cluster",
    )
    a = p.parse_args(argv)
    outcomes: list[Outcome] = []
    failed = False
    for name, fn in (("correo", run_correo), ("peer", run_peer)):
        if a.target not in (name, "both"):
            continue
        try:
            outcomes.append(fn(a))
        except (Exception, SystemExit) as exc:  # one broken target must not hide the other
            traceback.print_exc()
            print(f"{name}: FAILED: {exc!r}", file=sys.stderr, flush=True)
            failed = True
    print(f"\nn={a.n} c={a.c} size={a.size} users={a.users}")
    if outcomes:
        print(_table(outcomes))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
