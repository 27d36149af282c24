"""Event-loop watchdog: log every time the loop is kept from running for too long.

Every session of every protocol shares one asyncio loop, so a callback that computes
for a second (a backtracking regex, a quadratic walk over attacker-sized input) stalls
every client at once.  The watchdog makes such stalls visible to the administrator and
to the test suite: a heartbeat scheduled on the loop measures how late it runs, and a
small sampling thread records where the loop thread was while the heartbeat was overdue.

Only stalls during which the loop thread itself burned more than the threshold of CPU
time are reported: a machine that deschedules the process (a busy host, a laptop waking
up) delays the heartbeat too, and on a loaded host 50 ms of work can take 150 ms of wall
time, but neither is the server's doing, and nothing in correo can fix it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Final

from correo.log import Logger

__all__ = ["DEFAULT_THRESHOLD", "LoopWatchdog"]

#: The longest the loop may be kept busy by one callback before it is reported.
DEFAULT_THRESHOLD: Final = 0.100
_PACKAGE: Final = str(Path(__file__).resolve().parent.parent)


class LoopWatchdog:
    """Heartbeat on the loop plus a sampler thread; ``stalls`` counts what was logged."""

    def __init__(
        self, log: Logger, threshold: float = DEFAULT_THRESHOLD, interval: float = 0.025
    ) -> None:
        self.log = log
        self.threshold = threshold
        self.interval = interval
        self.stalls = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._beat = 0.0  # monotonic time of the last heartbeat
        self._cpu = 0.0  # the loop thread's CPU time at the last heartbeat
        self._where = ""  # where the sampler last saw the loop thread while overdue
        self._thread_id = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._beat, self._cpu = time.monotonic(), time.thread_time()
        self._handle = self._loop.call_later(self.interval, self._heartbeat)
        self._sampler = threading.Thread(
            target=self._sample, name="correo-loop-watchdog", daemon=True
        )
        self._sampler.start()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None

    def _heartbeat(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        late = now - self._beat - self.interval
        busy = cpu - self._cpu
        if late > self.threshold and busy > self.threshold:
            self.stalls += 1
            self.log.warning(
                "loop.blocked",
                ms=round(late * 1000),
                cpu_ms=round(busy * 1000),
                where=self._where or "unknown",
            )
        self._where = ""
        self._beat, self._cpu = now, cpu
        assert self._loop is not None
        self._handle = self._loop.call_later(self.interval, self._heartbeat)

    def _sample(self) -> None:
        """While the heartbeat is overdue, note the innermost correo frame of the loop."""
        while not self._stop.wait(self.threshold / 2):
            if time.monotonic() - self._beat < self.interval + self.threshold / 2:
                continue
            frame = sys._current_frames().get(self._thread_id)
            where = _innermost_own(frame)
            if where:
                self._where = where


def _innermost_own(frame: FrameType | None) -> str:
    """``file:line function`` of the innermost frame inside the correo package."""
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(_PACKAGE):
            name = path[len(_PACKAGE) + 1 :]
            return f"{name}:{frame.f_lineno}:{frame.f_code.co_name}"
        frame = frame.f_back
    return ""
