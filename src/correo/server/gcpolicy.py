"""Garbage-collector policy of ``correo serve``: keep full collections short and timed.

CPython's cycle collector runs on the event loop's thread, and a full (generation 2)
collection walks every tracked object: with 10,000 IMAP sessions (about 90 tracked
objects each) that took 90-420 ms, a stall of every client at once.  It runs each time
the old generation has grown by a quarter, so a ramp to 10,000 sessions met five or six.

Sessions are freed by reference counting when they close (their state holds no cycles:
the full collections of a 10,000-session bench found next to nothing to free), so the
objects that survived a full collection need not be walked again by the next one.
:class:`GcPolicy` moves them into the permanent generation (``gc.freeze``) right when a
full collection ends, when nothing young is left to freeze with them: the next one walks
only what was created since.  A frozen object is still freed when its last reference
goes; only a frozen *cycle* would outlive its use, so once an ``unfreeze_every``
interval the permanent generation is handed back to the collector and the next full
collection walks it all once.

It also times every collection (``gc.callbacks``) for the ``correo_gc_pause_seconds``
histogram, by generation, so a pause can be told from other stalls.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["UNFREEZE_EVERY", "GcPolicy"]

#: How often frozen survivors go back to the collector (a frozen cycle lives this long).
UNFREEZE_EVERY: Final = 3600.0


class GcPolicy:
    """Freeze the survivors of each full collection; time every collection.

    ``observe(generation, seconds)`` is called after each collection; it runs inside the
    collector, so it must only record.
    """

    def __init__(
        self,
        observe: Callable[[int, float], None] | None = None,
        *,
        unfreeze_every: float = UNFREEZE_EVERY,
    ) -> None:
        self._observe = observe
        self.unfreeze_every = unfreeze_every
        self._start = 0.0
        self._installed = False
        self._timer: asyncio.TimerHandle | None = None
        self.frozen_collections = 0  # full collections whose survivors were frozen
        self.unfreezes = 0

    def start(self) -> None:
        """From now on (the start-up heap is frozen at the first full collection)."""
        if self._installed:
            return
        gc.callbacks.append(self._callback)
        self._installed = True
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.unfreeze_every, self._unfreeze)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def _unfreeze(self) -> None:
        gc.unfreeze()  # the next full collection walks (and frees) it all once
        self.unfreezes += 1
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.unfreeze_every, self._unfreeze)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        generation = int(info["generation"])
        if generation == 2:
            # every younger generation was merged into this one and its garbage freed:
            # what is left are survivors only
            gc.freeze()
            self.frozen_collections += 1
        if self._start and self._observe is not None:
            self._observe(generation, time.perf_counter() - self._start)
        self._start = 0.0
