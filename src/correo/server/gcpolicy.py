"""Garbage-collector policy of ``correo serve``: keep full collections short, time them all.

CPython's cycle collector runs on the event loop's thread, and a full (generation 2)
collection walks every tracked object: with 10,000 IMAP sessions (about 90 tracked
objects each) that took 90-420 ms, a stall of every client at once.  It runs each time
the old generation has grown by a quarter, so a ramp to 10,000 sessions met five or six.

Sessions are freed by reference counting when they close (the full collections of a
10,000-session bench found next to nothing to free), so what survived one full
collection need not be walked by the next.  :class:`GcPolicy` moves the survivors into
the permanent generation (``gc.freeze``) right when a full collection ends, when nothing
young is left to freeze with them.  A frozen object is still freed when its last
reference goes; only a frozen *cycle* outlives its use, so once an ``unfreeze_every``
interval the permanent generation is handed back and the next full collection walks it.

The collector calls its callbacks from inside whatever code allocated the object that
started the collection: code that may hold any lock, a metric's among them.  So the
callback takes no lock, logs nothing and creates no tracked object: it writes the
generation and the duration into a preallocated ring, and a timer on the loop hands
them to ``observe`` (the ``correo_gc_pause_seconds`` histogram) outside the collector.
"""

from __future__ import annotations

import asyncio
import gc
import time
from array import array
from collections.abc import Callable
from typing import Any, Final

__all__ = ["EXPORT_EVERY", "RING", "UNFREEZE_EVERY", "YOUNG_THRESHOLD", "GcPolicy"]

#: How often frozen survivors go back to the collector (a frozen cycle lives this long).
UNFREEZE_EVERY: Final = 3600.0
#: How often the recorded pauses are handed to ``observe``, on the loop.
EXPORT_EVERY: Final = 1.0
#: Collections recorded between two exports; older ones are counted as ``dropped``.
RING: Final = 1024
#: Container allocations (net) between two young collections: CPython's 700 made an SMTP
#: delivery set off several of them, and the MX bench (5 KB messages, 20 connections)
#: delivered 405 -> 492 messages/s and spent 1.68 -> 1.58 ms of CPU a message with 10,000;
#: what dies young is freed by reference counting before the collector sees it anyway.
YOUNG_THRESHOLD: Final = 10_000


class GcPolicy:
    """Freeze the survivors of each full collection; record every collection's pause.

    ``observe(generation, seconds)`` is called on the loop, never from the collector.
    ``freeze_from``: the youngest generation whose collection freezes (2: full ones).
    ``slow(generation, seconds, cpu_seconds)``, if given, is told of collections that took
    ``slow_after`` or more of the thread's CPU time (as the loop watchdog counts), so a
    ``loop.blocked`` report can be explained; on a busy host wall time says little.
    """

    __slots__ = (
        "_cpu",
        "_cpu_start",
        "_gens",
        "_installed",
        "_read",
        "_secs",
        "_start",
        "_thresholds",
        "_timers",
        "_written",
        "dropped",
        "export_every",
        "freeze",
        "freeze_from",
        "frozen_collections",
        "observe",
        "slow",
        "slow_after",
        "unfreeze_every",
        "unfreezes",
        "young",
    )

    def __init__(
        self,
        observe: Callable[[int, float], None] | None = None,
        *,
        freeze: bool = True,
        freeze_from: int = 2,
        unfreeze_every: float = UNFREEZE_EVERY,
        export_every: float = EXPORT_EVERY,
        slow: Callable[[int, float, float], None] | None = None,
        slow_after: float = 0.1,
        young: int = YOUNG_THRESHOLD,
    ) -> None:
        self.observe = observe
        self.young = young
        self.freeze = freeze
        self.freeze_from = freeze_from
        self.unfreeze_every = unfreeze_every
        self.export_every = export_every
        self.slow = slow
        self.slow_after = slow_after
        # written by the collector's callback only: plain numbers, preallocated arrays
        self._start = 0.0
        self._cpu_start = 0.0
        self._secs = array("d", bytes(8 * RING))
        self._cpu = array("d", bytes(8 * RING))
        self._gens = bytearray(RING)
        self._written = 0  # collections recorded, ever
        self.frozen_collections = 0  # full collections whose survivors were frozen
        # the loop's side
        self._read = 0  # collections handed to observe, ever
        self.dropped = 0  # overwritten before an export read them
        self.unfreezes = 0
        self._installed = False
        self._timers: list[asyncio.TimerHandle] = []
        self._thresholds: tuple[int, int, int] | None = None  # the collector's, before start

    def start(self) -> None:
        """From now on, on the running loop (the start-up heap is frozen at the first
        full collection)."""
        if self._installed:
            return
        gc.callbacks.append(self._callback)
        self._installed = True
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self.young, *self._thresholds[1:])
        loop = asyncio.get_running_loop()
        self._timers = [loop.call_later(self.export_every, self._export)]
        if self.freeze:
            self._timers.append(loop.call_later(self.unfreeze_every, self._unfreeze))

    def stop(self) -> None:
        """Uninstall; what was recorded is handed to ``observe`` first."""
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        self.export()

    def export(self) -> int:
        """Hand what the callback recorded to ``observe``/``slow``; how many collections."""
        written = self._written  # the callback may run meanwhile: it only writes ahead
        if written - self._read > RING:
            self.dropped += written - self._read - RING
            self._read = written - RING
        done = 0
        while self._read < written:
            i = self._read % RING
            generation, seconds, cpu = self._gens[i], self._secs[i], self._cpu[i]
            self._read += 1
            done += 1
            if self.observe is not None:
                self.observe(generation, seconds)
            if self.slow is not None and cpu >= self.slow_after:
                self.slow(generation, seconds, cpu)
        return done

    def _export(self) -> None:
        loop = asyncio.get_running_loop()
        # first, so that an observer that raises costs one export, not all that follow
        self._timers[0] = loop.call_later(self.export_every, self._export)
        self.export()

    def _unfreeze(self) -> None:
        gc.unfreeze()  # the next full collection walks (and frees) it all once
        self.unfreezes += 1
        loop = asyncio.get_running_loop()
        self._timers[1] = loop.call_later(self.unfreeze_every, self._unfreeze)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        """Inside the collector: numbers into preallocated slots, no lock, no logging."""
        if phase == "start":
            self._start = time.perf_counter()
            self._cpu_start = time.thread_time()
            return
        generation = info["generation"]
        if generation >= self.freeze_from and self.freeze:
            # every younger generation was merged into this one and its garbage freed;
            # after a full collection what is left are survivors only (after one of
            # generation 1, the old generation may also hold cycles that died there)
            gc.freeze()
            self.frozen_collections += 1
        if self._start:
            i = self._written % RING
            self._secs[i] = time.perf_counter() - self._start
            self._cpu[i] = time.thread_time() - self._cpu_start
            self._gens[i] = generation
            self._written += 1
            self._start = 0.0
