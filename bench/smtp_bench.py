"""The SMTP benchmark of the foundation issue: correo side by side with Postfix -> Dovecot.

    python bench/smtp_bench.py [--target correo|peer|both] [-n 5000] [-c 20] [--size 5000]
    python bench/smtp_bench.py --target correo --store private   # correo on PostgreSQL
    python bench/smtp_bench.py --stores sqlite,private --rounds 3  # both stores and the
                                                                   # peer, rounds alternating
    python bench/smtp_bench.py --modes mx,starttls,submissions --rounds 2 -n 3000

--modes picks how the load arrives (one table per mode, targets interleaved in each round):
mx is plaintext SMTP on the MX port; starttls the same port upgraded with STARTTLS;
submissions is implicit TLS on the submissions port with AUTH PLAIN as user1, which each
target DKIM-signs (correo with the domain's keys from `correo init`, the peer with OpenDKIM
as a milter when it is installed).

For each target: start it fresh, push N messages over C connections into its MX listener,
then poll POP3 STAT over every user until all N are retrievable. Reported per target:
acceptance rate, end-to-end rate (N / first connect -> all retrievable), machine CPU seconds
per message (minus the load generator's own), peak RSS, DATA-end -> 250 latency, and the
CPU of the target's own processes per message (correo: the server and, on PostgreSQL, the
database's processes; the peer: every Postfix and Dovecot process, children reaped by
their masters included) -- the figure that stays meaningful when other work shares the
machine. "Until idle" also counts what a target does after the load (correo's text index
catching up), waiting after retrieval until its processes are idle, minus the bench's POP3
logins at the per-login cost measured on those processes before the load. "Main process"
is the part of that of correo's server process alone (its threads included, its DKIM
signing workers not): what bounds a server whose event loop is one core. With --rounds,
the targets take turns and the table shows medians.
Needs root for the peer (Postfix and Dovecot start as root).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from smtp_load import LoadResult, Security, percentile, run, run_load

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
    own_cpu: dict[str, float]  # component -> CPU seconds of its processes over the run
    settled_cpu: float = 0.0  # all components, until idle after retrieval, logins taken out
    main_cpu: float = 0.0  # the same for one process alone (correo's server), if given

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

    def own_per_msg(self, component: str | None = None) -> float:
        """CPU s/msg of the target's own processes (one component, or all of them)."""
        parts = self.own_cpu.values() if component is None else [self.own_cpu.get(component, 0)]
        return sum(parts) / max(1, self.load.accepted)

    @property
    def settled_per_msg(self) -> float:
        """CPU s/msg of the target's own processes until they were idle again."""
        return self.settled_cpu / max(1, self.load.accepted)

    @property
    def main_per_msg(self) -> float:
        """CPU s/msg of the main process alone until idle (0 when not measured)."""
        return self.main_cpu / max(1, self.load.accepted)

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
    components: dict[str, Callable[[], Iterable[int]]],
    n: int,
    c: int,
    size: int,
    users: int,
    timeout: float,
    sec: Security | None = None,
    main_pid: int | None = None,
) -> Outcome:
    """Load one running target and wait until everything it accepted is retrievable."""
    cal0 = sum(_own_cpu(f()) for f in components.values())
    main_cal0 = _self_cpu(main_pid)
    baseline, poll = calibrate(pop)
    # what one POP3 login costs the target's own processes (argon2id on correo)
    login_cpu = (sum(_own_cpu(f()) for f in components.values()) - cal0) / len(pop.users)
    login_main = (_self_cpu(main_pid) - main_cal0) / len(pop.users)
    print(
        f"  [{name}] POP3 poll round {poll.round_seconds:.2f}s, "
        f"{poll.cpu_per_login:.3f} CPU s per login",
        flush=True,
    )
    domain = pop.users[0].split("@")[1]
    cpu = CpuWindow()
    if hwm_pid is not None:
        reset_hwm(hwm_pid)  # forget the calibration logins' memory
    own0 = {k: _own_cpu(f()) for k, f in components.items()}
    main0 = _self_cpu(main_pid)
    with RssSampler(pids) as rss:
        cpu.start()
        res = run(
            run_load("127.0.0.1", smtp_port, n, c, size, users, domain, sec=sec or Security())
        )
        # correo: the kernel's exact peak over the load, read before any POP3 login.
        hwm = proc_kib(hwm_pid, "VmHWM") if hwm_pid is not None else 0
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"  [{name}] load: {res.summary()} (load average {load})", flush=True)
        for line in res.error_samples:
            print(f"  [{name}]   error: {line}", flush=True)
        expected = {u: baseline[u] + res.accepted_by_rcpt[u] for u in pop.users}
        own1 = {k: _own_cpu(f()) for k, f in components.items()}  # the load, not the polls
        got = wait_retrievable(pop, expected, timeout, quiet=rss.paused)
        cpu.stop()
    idle = _until_idle(lambda: sum(_own_cpu(f()) for f in components.values()))
    settled = idle - sum(own0.values()) - got.logins * login_cpu
    main = _self_cpu(main_pid) - main0 - got.logins * login_main
    got.counts = {u: got.counts[u] - baseline[u] for u in pop.users}
    peak = max(rss.peak_kib, hwm)
    own = {k: own1[k] - own0[k] for k in components}
    out = Outcome(name, res, got, poll, cpu.seconds, peak, rss.peak_pss_kib, own, settled, main)
    print(
        f"  [{name}] own CPU {1000 * out.own_per_msg():.2f} ms/msg during the load, "
        f"{1000 * out.settled_per_msg:.2f} ms/msg until idle "
        f"(main process {1000 * out.main_per_msg:.2f}) "
        f"({got.logins} POP3 logins at {login_cpu:.3f} s taken out)",
        flush=True,
    )
    print(
        f"  [{name}] retrievable {out.retrievable}/{res.accepted} after "
        f"{out.e2e_seconds:.2f}s ({got.logins} POP3 logins)",
        flush=True,
    )
    return out


_TICK = os.sysconf("SC_CLK_TCK")
_IDLE_WINDOW = 0.5  # seconds
_IDLE_SHARE = 0.03  # of one core: below that over a window, the target is idle
_IDLE_LIMIT = 120.0  # seconds at most


def _until_idle(read: Callable[[], float]) -> float:
    """Wait until the target's processes stop working, then their CPU seconds.

    Work a target leaves for after the load (correo's text index catches up once the
    SMTP burst ends) is part of what a message costs, so the figure includes it.
    """
    deadline = time.monotonic() + _IDLE_LIMIT
    last = read()
    while time.monotonic() < deadline:
        time.sleep(_IDLE_WINDOW)
        now = read()
        if now - last < _IDLE_SHARE * _IDLE_WINDOW:
            return now
        last = now
    return last


def _own_cpu(pids: Iterable[int]) -> float:
    """utime+stime+cutime+cstime of these processes: a child that exits is reaped by its
    parent (a Postfix or Dovecot master, the PostgreSQL postmaster) and counted there."""
    total = 0
    for pid in set(pids):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / _TICK


def _self_cpu(pid: int | None) -> float:
    """utime+stime of one process (all its threads; not its children), seconds."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _move_listeners(toml: Path, keep: set[int]) -> None:
    """Every other listener of ``[listen]`` to a free port (other benches may run)."""
    text = toml.read_text()
    head, sep, rest = text.partition("[listen]")
    body, sep2, tail = rest.partition("\n[")

    def move(m: re.Match[str]) -> str:
        return m.group(0) if int(m.group(1)) in keep else f'"127.0.0.1:{_free_port()}"'

    body = re.sub(r'"127\.0\.0\.1:(\d+)"', move, body)
    toml.write_text(head + sep + body + sep2 + tail)


MODES = ("mx", "starttls", "submissions")


def _security(mode: str, user: str, password: str) -> Security:
    """How the load arrives in one mode (see the module docstring)."""
    if mode == "starttls":
        return Security(starttls=True)
    if mode == "submissions":
        return Security(tls=True, auth=(user, password))
    return Security()


def run_peer(a: argparse.Namespace, mode: str = "mx") -> Outcome:
    cfg = peer.PeerConfig(workdir=a.peer_workdir, users=a.users)
    if mode == "submissions" and not peer.opendkim_available():
        print("peer: opendkim is not installed: submissions WITHOUT DKIM signing", flush=True)
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
        port = cfg.submissions_port if mode == "submissions" else cfg.smtp_port
        return bench_target(
            "peer", port, pop, lambda: peer.peer_pids(cfg), None,
            {"postfix+dovecot": lambda: peer.peer_pids(cfg)},
            a.n, a.c, a.size, a.users, a.timeout,
            _security(mode, pop.users[0], peer.PASSWORD),
        )  # fmt: skip
    finally:
        if not a.keep:
            peer.stop(cfg)


class _PrivatePg:
    """A throwaway PostgreSQL cluster (as the tests start it: fsync and synchronous_commit
    on), one per bench run; each round gets a new database in it."""

    cluster: Any = None

    @classmethod
    def database(cls) -> str:
        if cls.cluster is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.pg import PgCluster, find_pg_bin

            bin_dir = find_pg_bin()
            if bin_dir is None:
                raise SystemExit("--store private: PostgreSQL is not installed")
            cluster = PgCluster(bin_dir)
            cluster.start()
            cls.cluster = cluster
        return str(cls.cluster.new_database())

    @classmethod
    def pids(cls) -> list[int]:
        if cls.cluster is None:
            return []
        pidfile = Path(cls.cluster.data) / "postmaster.pid"
        try:
            return process_tree(int(pidfile.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            return []

    @classmethod
    def stop(cls) -> None:
        if cls.cluster is not None:
            cls.cluster.stop()
            cls.cluster = None


def run_correo(
    a: argparse.Namespace,
    store: str | None = None,
    name: str = "correo",
    mode: str = "mx",
    src: Path | None = None,
) -> Outcome:
    """``src``: run correo from this source tree (``--baseline-src``) instead."""
    if src is None:
        return _run_correo(a, store, name, mode)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)  # the server and its CLI children import from it
    try:
        return _run_correo(a, store, name, mode)
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def _run_correo(a: argparse.Namespace, store: str | None, name: str, mode: str) -> Outcome:
    store = a.store if store is None else (None if store == "sqlite" else store)
    on_pg = store is not None
    if store == "private":  # a PostgreSQL of its own, as the tests start (tests/pg.py)
        store = _PrivatePg.database()
    srv = correo_server.CorreoServer(
        a.correo_data, smtp_port=_free_port(), pop3s_port=_free_port(), users=a.users, store=store
    )
    print(f"{name}: setting up" + (f" on {store}" if store else ""), flush=True)
    srv.setup()
    assert srv.data is not None
    toml = srv.data / "correo.toml"
    subs_port = _free_port()
    toml.write_text(
        re.sub(
            r'(?m)^submissions = \["127\.0\.0\.1:\d+"\]',
            f'submissions = ["127.0.0.1:{subs_port}"]',
            toml.read_text(),
        )
    )
    _move_listeners(toml, {srv.smtp_port, srv.pop3s_port, subs_port})
    srv.start()
    port = subs_port if mode == "submissions" else srv.smtp_port
    return _bench_correo(a, srv, name, on_pg, port, mode)


def _bench_correo(
    a: argparse.Namespace,
    srv: correo_server.CorreoServer,
    name: str,
    on_pg: bool,
    port: int | None = None,
    mode: str = "mx",
) -> Outcome:
    components: dict[str, Callable[[], Iterable[int]]] = {"correo": lambda: process_tree(srv.pid)}
    if on_pg and _PrivatePg.cluster is not None:
        components["postgres"] = _PrivatePg.pids
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
            name, port or srv.smtp_port, pop, lambda: process_tree(srv.pid), srv.pid, components,
            a.n, a.c, a.size, a.users, a.timeout,
            _security(mode, pop.users[0], correo_server.PASSWORD), main_pid=srv.pid,
        )  # fmt: skip
    finally:
        if a.keep:
            srv.stop()
        else:
            srv.clean()


def _rows() -> list[tuple[str, Callable[[Outcome], float], str, bool]]:
    return [
        ("accepted", lambda o: o.load.accepted, "{:.0f}", False),
        ("errors", lambda o: o.load.errors, "{:.0f}", False),
        ("acceptance rate (msg/s)", lambda o: o.load.acceptance_rate, "{:.0f}", True),
        ("end-to-end rate (msg/s)", lambda o: o.e2e_rate, "{:.0f}", True),
        ("all accepted (s)", lambda o: o.load.t_last_accept - o.load.t_start, "{:.2f}", False),
        ("end-to-end time (s)", lambda o: o.e2e_seconds, "{:.2f}", False),
        ("CPU s/msg (machine)", lambda o: o.cpu_per_msg, "{:.5f}", True),
        ("CPU s/msg (own processes)", lambda o: o.own_per_msg(), "{:.5f}", True),
        ("CPU s/msg (own, until idle)", lambda o: o.settled_per_msg, "{:.5f}", True),
        ("  main process, until idle", lambda o: o.main_per_msg, "{:.5f}", False),
        ("  of which correo", lambda o: o.own_per_msg("correo"), "{:.5f}", False),
        ("  of which postgres", lambda o: o.own_per_msg("postgres"), "{:.5f}", False),
        ("POP3 poll round (s)", lambda o: o.poll.round_seconds, "{:.2f}", False),
        ("peak RSS (MiB)", lambda o: o.peak_rss_kib / 1024, "{:.1f}", True),
        ("peak PSS (MiB)", lambda o: o.peak_pss_kib / 1024, "{:.1f}", True),
        ("latency p50 (ms)", lambda o: percentile(o.load.latencies, 50) * 1000, "{:.1f}", True),
        ("latency p99 (ms)", lambda o: percentile(o.load.latencies, 99) * 1000, "{:.1f}", True),
    ]


def _table(outcomes: dict[str, list[Outcome]]) -> str:
    """Medians over the rounds; the ratio columns are each correo target / the peer."""
    names = list(outcomes)
    mine = [n for n in names if n != "peer"] if "peer" in names else []
    head = f"{'':27}" + "".join(f"{n:>14}" for n in names)
    head += "".join(f"{n + '/peer':>20}" for n in mine)
    out = [head]
    for label, get, fmt, with_ratio in _rows():
        vals = {n: statistics.median(get(o) for o in outcomes[n]) for n in names}
        line = f"{label:27}" + "".join(f"{fmt.format(vals[n]):>14}" for n in names)
        if with_ratio:
            peer_val = vals.get("peer", 0.0)
            line += "".join(f"{(vals[n] / peer_val if peer_val else 0.0):>19.2f}x" for n in mine)
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
    p.add_argument(
        "--stores",
        default=None,
        help="several correo targets, comma-separated: sqlite, private, postgresql://...",
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also run each correo target from this source tree (e.g. an exported older"
        " commit's src/), as '<target>-base', in the same rounds",
    )
    p.add_argument("--rounds", type=int, default=1, help="rounds; targets take turns")
    p.add_argument(
        "--modes",
        default="mx",
        help="comma-separated: mx (plaintext), starttls, submissions (implicit TLS, AUTH, DKIM)",
    )
    a = p.parse_args(argv)
    modes = a.modes.split(",")
    if bad := [m for m in modes if m not in MODES]:
        p.error(f"--modes: unknown {', '.join(bad)} (known: {', '.join(MODES)})")
    targets: list[tuple[str, str, Callable[[], Outcome]]] = []
    for mode in modes:
        if a.target in ("correo", "both"):
            if a.stores:
                for store in a.stores.split(","):
                    label = "correo-" + ("pg" if store != "sqlite" else "sqlite")
                    fn = functools.partial(run_correo, a, store, label, mode)
                    targets.append((mode, label, fn))
                    if a.baseline_src is not None:
                        base = functools.partial(
                            run_correo, a, store, label + "-base", mode, a.baseline_src.resolve()
                        )
                        targets.append((mode, label + "-base", base))
            else:
                targets.append(
                    (mode, "correo", functools.partial(run_correo, a, None, "correo", mode))
                )
        if a.target in ("peer", "both"):
            targets.append((mode, "peer", functools.partial(run_peer, a, mode)))
    by_mode: dict[str, dict[str, list[Outcome]]] = {m: {} for m in modes}
    failed = False
    try:
        for rnd in range(a.rounds):
            for mode, name, run_one in targets:
                print(f"--- round {rnd + 1}/{a.rounds}: {name} ({mode})", flush=True)
                try:
                    by_mode[mode].setdefault(name, []).append(run_one())
                except (Exception, SystemExit) as exc:  # one broken target must not hide another
                    traceback.print_exc()
                    print(f"{name}: FAILED: {exc!r}", file=sys.stderr, flush=True)
                    failed = True
    finally:
        _PrivatePg.stop()
    for mode in modes:
        outcomes = {k: v for k, v in by_mode[mode].items() if v}
        print(
            f"\n[{mode}] n={a.n} c={a.c} size={a.size} users={a.users} rounds={a.rounds} "
            f"(medians; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})"
        )
        if outcomes:
            print(_table(outcomes))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
