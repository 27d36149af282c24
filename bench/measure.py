"""Machine-wide measurements shared by the bench scripts: CPU from /proc/stat, RSS, POP3 STAT.

CPU is read for the whole machine (not per process) so that a multi-process peer such as
Postfix + Dovecot is charged for every helper it forks; the load generator's own CPU is then
subtracted using getrusage of this process.
"""

from __future__ import annotations

import contextlib
import os
import poplib
import resource
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = [
    "CpuWindow",
    "PollCost",
    "PopTarget",
    "Retrieval",
    "RssSampler",
    "calibrate",
    "machine_cpu_seconds",
    "poll_round",
    "pop3_counts",
    "pop3_stat",
    "pop3_total",
    "proc_kib",
    "proc_pss_kib",
    "proc_rss_kib",
    "process_tree",
    "reset_hwm",
    "self_cpu_seconds",
    "wait_retrievable",
]

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of all cores since boot: user+nice+system+irq+softirq+steal.

    idle and iowait are left out: waiting for the disk is not work done.
    """
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICK


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """User+system CPU seconds used so far by these processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _TICK


def self_cpu_seconds() -> float:
    """CPU of this process (the load generator and its sampler threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass(slots=True)
class CpuWindow:
    """Machine CPU minus our own CPU between start() and stop()."""

    machine0: float = 0.0
    self0: float = 0.0
    seconds: float = 0.0

    def start(self) -> None:
        self.machine0 = machine_cpu_seconds()
        self.self0 = self_cpu_seconds()

    def stop(self) -> float:
        machine = machine_cpu_seconds() - self.machine0
        own = self_cpu_seconds() - self.self0
        self.seconds = max(0.0, machine - own)
        return self.seconds


def proc_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM`-style line of /proc/PID/status, in KiB (0 if the process is gone)."""
    key = field.encode() + b":"
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def proc_pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split among their users, so sums do not overcount."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def process_tree(root: int) -> list[int]:
    """root and all its descendants, walking /proc/PID/task/TID/children (cheap: ~1 ms)."""
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    todo.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def proc_rss_kib(pid: int) -> int:
    """Current RSS from /proc/PID/statm, several times cheaper to read than status."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_KIB
    except (OSError, ValueError, IndexError):
        return 0


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5), so peaks are of this run only."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Samples the summed VmRSS of a changing set of processes every `interval` seconds.

    The set is re-read each time because Postfix and Dovecot fork and reap helpers. PSS
    (smaps_rollup, ~0.3 ms a process) is read only every `pss_every` samples so that the
    sampler does not steal CPU from the server it measures.
    """

    def __init__(
        self, pids: Callable[[], Iterable[int]], interval: float = 0.1, pss_every: int = 10
    ) -> None:
        self._pids = pids
        self._interval = interval
        self._pss_every = pss_every
        self._n = 0
        self._stop = threading.Event()
        self._idle = threading.Lock()  # held while sampling; taken by paused()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self.peak_kib = 0
        self.peak_pss_kib = 0
        self.first_kib = 0

    def sample(self) -> int:
        """Summed VmRSS now; also updates the PSS peak (a fairer sum for many processes)."""
        pids = list(self._pids())
        rss = sum(proc_rss_kib(pid) for pid in pids)
        self.peak_kib = max(self.peak_kib, rss)
        if self._n % self._pss_every == 0:
            self.peak_pss_kib = max(self.peak_pss_kib, sum(proc_pss_kib(pid) for pid in pids))
        self._n += 1
        return rss

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._idle:
                self.sample()
            self._stop.wait(self._interval)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No samples inside: the bench's own POP3 logins (argon2 needs 64 MiB each on
        correo) must not count as the server's memory for receiving mail."""
        with self._idle:
            yield

    def __enter__(self) -> RssSampler:
        self.first_kib = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._n = 0  # a final PSS reading too
        self.sample()


@dataclass(frozen=True, slots=True)
class PopTarget:
    """How to log in to count mail: implicit TLS without verification, or plain POP3."""

    host: str
    port: int
    tls: bool
    users: tuple[str, ...]
    password: str


def _connect(t: PopTarget) -> poplib.POP3:
    if t.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return poplib.POP3_SSL(t.host, t.port, context=ctx, timeout=60)
    return poplib.POP3(t.host, t.port, timeout=60)


def pop3_stat(t: PopTarget, user: str) -> tuple[int, float]:
    """(message count, monotonic time of the STAT reply) for one user.

    POP3 fixes the maildrop at login (RFC 1939 §4), so every poll is a fresh session.
    """
    pop = _connect(t)
    try:
        pop.user(user)
        pop.pass_(t.password)
        count = pop.stat()[0]
        return count, time.monotonic()
    finally:
        try:
            pop.quit()
        except (poplib.error_proto, OSError):
            pop.close()


def poll_round(t: PopTarget, users: Iterable[str]) -> dict[str, tuple[int, float]]:
    """STAT of several users at once: logins can be slow (password hashing), so overlap them."""
    users = list(users)
    if not users:
        return {}
    with ThreadPoolExecutor(max_workers=len(users)) as ex:
        return dict(zip(users, ex.map(lambda u: pop3_stat(t, u), users), strict=True))


def pop3_counts(t: PopTarget) -> dict[str, int]:
    """Current STAT count of every user."""
    return {u: c for u, (c, _t) in poll_round(t, t.users).items()}


def pop3_total(t: PopTarget) -> int:
    """Sum of POP3 STAT message counts over every user: what a client could retrieve now."""
    return sum(pop3_counts(t).values())


@dataclass(frozen=True, slots=True)
class PollCost:
    """What one POP3 login costs the machine, measured on an idle server before the load.

    The bench subtracts logins x cpu_per_login from the server's CPU, because the check
    that mail is retrievable is the bench's own doing, not part of receiving mail.
    """

    round_seconds: float
    cpu_per_login: float


def calibrate(t: PopTarget) -> tuple[dict[str, int], PollCost]:
    """One round over all users: the baseline counts and the cost of a login."""
    cpu = CpuWindow()
    cpu.start()
    t0 = time.monotonic()
    counts = pop3_counts(t)
    wall = time.monotonic() - t0
    return counts, PollCost(wall, cpu.stop() / max(1, len(t.users)))


@dataclass(slots=True)
class Retrieval:
    """When each user's mailbox was first seen complete, and how many logins it took."""

    done_at: dict[str, float]
    counts: dict[str, int]
    logins: int = 0

    @property
    def complete(self) -> bool:
        return len(self.done_at) == len(self.counts)

    @property
    def last(self) -> float:
        return max(self.done_at.values(), default=0.0)


def wait_retrievable(
    t: PopTarget,
    expected: dict[str, int],
    timeout: float,
    interval: float = 0.05,
    quiet: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> Retrieval:
    """Poll the users not yet complete until each STAT reaches its expected count.

    A user's time is its STAT reply that first shows every message (conservative: the mail
    was retrievable at or before it). A failed poll (busy server) counts as "not yet" until
    the deadline, so one hiccup does not void a long run.
    """
    deadline = time.monotonic() + timeout
    r = Retrieval({}, dict.fromkeys(expected, 0))
    while True:
        pending = [u for u in expected if u not in r.done_at]
        if not pending or time.monotonic() > deadline:
            return r
        try:
            with quiet():
                seen = poll_round(t, pending)
        except (poplib.error_proto, OSError):
            r.logins += len(pending)
            time.sleep(interval)
            continue
        r.logins += len(pending)
        for user, (count, at) in seen.items():
            r.counts[user] = count
            if count >= expected[user]:
                r.done_at[user] = at
        if len(r.done_at) < len(expected):
            time.sleep(interval)
