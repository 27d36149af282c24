"""The collector policy of `correo serve` (server/gcpolicy.py): survivors of a full
collection are frozen, nothing leaks past an unfreeze, every collection is timed, and
the collector's callback takes no lock: a collection that starts while a metric's lock
is held (the callback runs inside the code that allocated) still ends."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from correo.metrics import Metrics
from correo.server.gcpolicy import RING, GcPolicy


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test process collects as before


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> _Node:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a


def _walked(obj: object) -> bool:
    """Whether the next full collection would walk ``obj`` (frozen ones it skips)."""
    return any(o is obj for o in gc.get_objects())


def test_full_collection_freezes_its_survivors_not_garbage() -> None:
    async def run() -> None:
        policy = GcPolicy()
        policy.start()
        try:
            kept = _cycle()
            dropped = weakref.ref(_cycle())  # unreachable cycle: garbage
            assert _walked(kept)
            gc.collect()
            assert dropped() is None  # freed by the collection, not frozen
            assert policy.frozen_collections == 1
            assert gc.get_freeze_count() > 0 and not _walked(kept)
            # a frozen object without cycles is still freed by reference counting
            plain = _Node()
            gone = weakref.ref(plain)
            gc.collect()
            assert not _walked(plain)
            del plain
            assert gone() is None
            # what is created after the freeze is walked by the next collection
            later = weakref.ref(_cycle())
            gc.collect()
            assert later() is None
        finally:
            policy.stop()

    asyncio.run(run())


def test_without_freeze_survivors_stay_walked() -> None:
    async def run() -> None:
        policy = GcPolicy(freeze=False)
        policy.start()
        try:
            kept = _cycle()
            gc.collect()
            assert policy.frozen_collections == 0 and _walked(kept)
        finally:
            policy.stop()

    asyncio.run(run())


def test_unfreeze_hands_frozen_cycles_back_to_the_collector() -> None:
    async def run() -> None:
        policy = GcPolicy(unfreeze_every=0.05)
        policy.start()
        try:
            held = [_cycle()]
            leaked = weakref.ref(held[0])
            gc.collect()
            assert gc.get_freeze_count() > 0
            held.clear()  # a frozen cycle: only the collector can free it
            assert leaked() is not None
            for _ in range(500):
                if policy.unfreezes:
                    break
                await asyncio.sleep(0.01)
            assert policy.unfreezes >= 1
            gc.collect()
            assert leaked() is None
        finally:
            policy.stop()

    asyncio.run(run())


def test_pauses_reach_the_histogram_from_the_loop_not_the_collector() -> None:
    metrics = Metrics()
    seen: list[tuple[int, float]] = []
    slow: list[int] = []

    def observe(generation: int, seconds: float) -> None:
        seen.append((generation, seconds))
        metrics.gc_pause(generation, seconds)

    async def run() -> None:
        policy = GcPolicy(
            observe, export_every=0.02, slow=lambda g, s, cpu: slow.append(g), slow_after=0.0
        )
        policy.start()
        policy.start()  # once only
        try:
            gc.collect(0)
            gc.collect(2)
            assert seen == []  # recorded only, until the loop's timer hands them on
            for _ in range(500):
                if 2 in [g for g, _ in seen]:
                    break
                await asyncio.sleep(0.01)
        finally:
            policy.stop()

    asyncio.run(run())
    generations = [g for g, _ in seen]
    assert 0 in generations and 2 in generations  # (the test's own collections and any other)
    assert all(s >= 0 for _, s in seen) and slow == generations
    count = len(seen)
    gc.collect()
    assert len(seen) == count  # stopped
    assert _full_collections(metrics) == generations.count(2)


def _full_collections(metrics: Metrics) -> int:
    """``correo_gc_pause_seconds_count{generation="2"}`` as exported."""
    prefix = 'correo_gc_pause_seconds_count{generation="2"} '
    text = metrics.exposition().decode()
    return int(float(next(x for x in text.splitlines() if x.startswith(prefix)).split()[-1]))


def test_collection_under_the_metrics_lock_does_not_deadlock() -> None:
    """The collector runs its callbacks inside the code that allocated, which may be
    observing this very histogram: a callback that observed a metric would wait on a
    lock its own thread holds, for ever."""
    metrics = Metrics()
    child = metrics._gc_pause[2]  # the histogram of full collections
    locks = [child._sum._lock, *(b._lock for b in child._buckets)]  # prometheus_client
    policy = GcPolicy(metrics.gc_pause, export_every=3600)  # exported by the test
    done = threading.Event()

    def collect_while_locked() -> None:
        for lock in locks:
            lock.acquire()
        try:
            gc.collect(2)  # as if an allocation inside observe() had started it
        finally:
            for lock in locks:
                lock.release()
        done.set()

    async def run() -> None:
        policy.start()
        try:
            # not on the loop's thread: a deadlock fails the test instead of hanging it
            worker = threading.Thread(target=collect_while_locked, daemon=True)
            worker.start()
            ended = await asyncio.to_thread(done.wait, 20)
            assert ended, "the collection never ended: its callback waited on the lock"
            worker.join(5)
            assert policy.export() >= 1  # and the pause reaches the histogram afterwards
        finally:
            if done.is_set():
                policy.stop()
            else:  # stop() would export, and wait on the lock the stuck thread holds
                gc.callbacks.remove(policy._callback)

    asyncio.run(run())
    assert _full_collections(metrics) >= 1


def test_a_burst_beyond_the_ring_is_counted_as_dropped() -> None:
    seen: list[int] = []

    async def run() -> None:
        policy = GcPolicy(lambda g, s: seen.append(g), freeze=False, export_every=3600)
        policy.start()
        try:
            for _ in range(RING + 10):
                gc.collect(0)
            assert policy.export() == RING
            assert policy.dropped >= 10
        finally:
            policy.stop()

    asyncio.run(run())
    assert len(seen) >= RING


def test_an_observer_that_raises_does_not_end_the_exports() -> None:
    seen: list[int] = []

    def observe(generation: int, seconds: float) -> None:
        seen.append(generation)
        if len(seen) == 1:
            raise RuntimeError("a broken observer")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        policy = GcPolicy(observe, freeze=False, export_every=0.01)
        policy.start()
        try:
            gc.collect(0)
            for _ in range(500):
                if seen:
                    break
                await asyncio.sleep(0.01)
            count = len(seen)
            gc.collect(0)  # recorded after the failed export: a later one hands it on
            for _ in range(500):
                if len(seen) > count:
                    break
                await asyncio.sleep(0.01)
            assert len(seen) > count and errors
        finally:
            policy.stop()

    asyncio.run(run())


def test_young_collections_are_spaced_while_it_runs_and_restored_after() -> None:
    before = gc.get_threshold()

    async def run() -> None:
        policy = GcPolicy(young=12_345)
        policy.start()
        try:
            assert gc.get_threshold() == (12_345, *before[1:])
            # a young collection now waits for about 12,345 net container allocations:
            # 3,000 more leave the count past CPython's 700, uncollected
            gc.collect(0)
            kept = [[] for _ in range(3_000)]
            assert gc.get_count()[0] >= 2_500
            del kept
        finally:
            policy.stop()
        assert gc.get_threshold() == before

    asyncio.run(run())
