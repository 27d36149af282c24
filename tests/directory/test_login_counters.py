"""Failed-login counting with the counters in memory and in PostgreSQL: one set of rules.

The throttle's rules (tests/unit/test_throttle.py has them all) must give the same
verdicts whichever store keeps the counters; with PostgreSQL, every node's throttle
counts into the same rows, so a guesser gets one budget for the whole cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from correo.directory import Directory, DirectoryError
from correo.server import throttle as throttle_module
from correo.server.throttle import SHARED_RETRY, AuthThrottle, ThrottlePolicy, Verdict

IP = "192.0.2.7"
USER = "alice@example.com"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Node = Callable[[], AuthThrottle]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _nodes(kind: str, request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Node]:
    opened: list[Directory] = []
    url = ""
    if kind == "postgresql":
        url = request.getfixturevalue("pg_cluster").new_database(schema=True)

    def make() -> AuthThrottle:
        if not url:
            return AuthThrottle(ThrottlePolicy(), clock)
        from correo.directory.postgres import PostgresDirectory

        directory = PostgresDirectory(url)
        opened.append(directory)
        return AuthThrottle(ThrottlePolicy(), clock, directory.login_counters())

    yield make
    for directory in opened:
        directory.close()


@pytest.fixture(params=("memory", "postgresql"))
def node(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Node]:
    """Makes one node's throttle; with PostgreSQL every node shares one database."""
    yield from _nodes(request.param, request, clock)


@pytest.fixture
def shared_node(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Node]:
    """Nodes whose throttles share counters in PostgreSQL."""
    yield from _nodes("postgresql", request, clock)


def test_delay_schedule_and_lockout(node: Node, clock: FakeClock) -> None:
    throttle = node()
    expected = [0, 0, 0, 0, 1, 2, 4, 8, 15, 15]
    seen = []
    for _ in range(10):
        seen.append(throttle.check(IP, USER).delay)
        throttle.failure(IP, USER)
    assert seen == expected
    assert throttle.check(IP, USER) == Verdict(True, 15.0, 300.0)
    assert throttle.check("198.51.100.1", USER).locked  # the account, from anywhere
    throttle.success(IP, USER)  # the right password does not lift a lock
    assert throttle.check(IP, USER).locked
    clock.advance(300)
    assert throttle.check(IP, USER) == Verdict(False, 0.0)


def test_success_clears_and_attempts_count_from_their_start(node: Node) -> None:
    throttle = node()
    for _ in range(6):
        throttle.failure(IP, USER)
    throttle.success(IP, USER)
    assert throttle.check(IP, USER) == Verdict(False, 0.0)
    begun = [throttle.begin(IP, USER) for _ in range(15)]
    assert sum(not v.locked for v in begun) == 10
    assert [v.delay for v in begun[:6]] == [0, 0, 0, 0, 1, 2]


def test_one_budget_for_every_node(node: Node, clock: FakeClock) -> None:
    """Failures spread over two nodes add up; a lock set by one is kept by the other."""
    first, second = node(), node()
    shared = first.blocking
    for i in range(10):
        (first if i % 2 else second).failure(f"198.51.100.{i}", USER)
    # Shared: ten failures lock the account on both; in memory each node saw five.
    assert first.check(IP, USER).locked is shared
    assert second.check(IP, USER).locked is shared


def test_concurrent_attempts_across_nodes_never_pass_the_lock(shared_node: Node) -> None:
    nodes = [shared_node(), shared_node()]
    verdicts: list[Verdict] = []
    lock = threading.Lock()

    def attempt(throttle: AuthThrottle) -> None:
        for _ in range(10):
            verdict = throttle.begin(IP, USER)
            with lock:
                verdicts.append(verdict)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in nodes * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not v.locked for v in verdicts) == 10  # not ten per node


def test_abandoned_attempts_stop_counting(shared_node: Node, clock: FakeClock) -> None:
    """A node that died mid-attempt leaves pending attempts; they lapse."""
    throttle = shared_node()
    for _ in range(10):
        assert not throttle.begin(IP, USER).locked
    assert throttle.begin(IP, USER).locked
    clock.advance(121)
    assert not throttle.begin(IP, USER).locked


class _Away:
    """Shared counters whose database cannot be reached."""

    def __init__(self) -> None:
        self.calls = 0

    def update(self, *args: object) -> object:
        self.calls += 1
        raise DirectoryError("cannot update the login counters: connection refused")


def test_the_node_counts_alone_while_the_shared_counters_are_away(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    away = _Away()
    throttle = AuthThrottle(ThrottlePolicy(), clock, away)  # type: ignore[arg-type]
    assert throttle.blocking
    for _ in range(10):
        throttle.failure(IP, USER)
    assert throttle.check(IP, USER).locked
    # One timeout, not one per login: the database is asked again only later.
    assert away.calls == 1
    later = time.monotonic() + SHARED_RETRY
    monkeypatch.setattr(throttle_module.time, "monotonic", lambda: later)
    throttle.check(IP, USER)
    assert away.calls == 2


def test_idle_counters_are_swept_from_the_table(pg_cluster: object, clock: FakeClock) -> None:
    """Rows of keys idle past the lockout time do not pile up (a spray of addresses)."""
    import psycopg

    from correo.directory.postgres import PostgresDirectory

    url = pg_cluster.new_database(schema=True)  # type: ignore[attr-defined]

    def fail(key: str) -> None:
        with PostgresDirectory(url) as directory:  # a node's first update sweeps
            throttle = AuthThrottle(ThrottlePolicy(), clock, directory.login_counters())
            throttle.failure(key, None)

    fail("192.0.2.1")
    fail("192.0.2.2")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM login_failures").fetchone() == (2,)
    clock.advance(301)
    fail("192.0.2.3")
    with psycopg.connect(url) as conn:
        keys = conn.execute("SELECT key FROM login_failures").fetchall()
    assert keys == [("ip:192.0.2.3",)]
