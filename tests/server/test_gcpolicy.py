"""The collector policy of `correo serve` (server/gcpolicy.py): survivors of a full
collection are frozen, nothing leaks past an unfreeze, every collection is timed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from correo.metrics import Metrics
from correo.server.gcpolicy import GcPolicy


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
            for _ in range(200):
                if policy.unfreezes:
                    break
                await asyncio.sleep(0.01)
            assert policy.unfreezes >= 1
            gc.collect()
            assert leaked() is None
        finally:
            policy.stop()

    asyncio.run(run())


def test_every_collection_is_timed_by_generation() -> None:
    metrics = Metrics()
    seen: list[tuple[int, float]] = []

    def observe(generation: int, seconds: float) -> None:
        seen.append((generation, seconds))
        metrics.gc_pause(generation, seconds)

    async def run() -> None:
        policy = GcPolicy(observe)
        policy.start()
        policy.start()  # once only
        try:
            gc.collect(0)
            gc.collect(2)
        finally:
            policy.stop()

    asyncio.run(run())
    assert [g for g, _ in seen][-2:] == [0, 2]
    assert len([g for g, _ in seen if g == 2]) == 1
    assert all(s >= 0 for _, s in seen)
    count = len(seen)
    gc.collect()
    assert len(seen) == count  # stopped
    text = metrics.exposition().decode()
    assert 'correo_gc_pause_seconds_count{generation="2"} 1.0' in text
