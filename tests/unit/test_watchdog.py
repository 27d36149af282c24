"""The loop watchdog reports callbacks that hog the loop, and nothing else."""

from __future__ import annotations

import asyncio
import io
import time

from correo.log import Logger
from correo.server.watchdog import LoopWatchdog


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_busy_callback_is_reported_with_its_duration() -> None:
    stream = io.StringIO()

    async def main() -> int:
        dog = LoopWatchdog(Logger(stream, "debug"))
        dog.start()
        await asyncio.sleep(0.06)
        _spin(0.3)  # the loop cannot run the heartbeat meanwhile
        await asyncio.sleep(0.06)  # the late heartbeat runs and reports
        dog.stop()
        return dog.stalls

    assert asyncio.run(main()) == 1
    line = stream.getvalue()
    assert "event=loop.blocked" in line
    ms = int(line.split("ms=", 1)[1].split()[0])
    assert ms >= 250


def test_waiting_is_not_a_stall() -> None:
    stream = io.StringIO()

    async def main() -> int:
        dog = LoopWatchdog(Logger(stream, "debug"))
        dog.start()
        await asyncio.sleep(0.3)  # idle: the heartbeat keeps running
        dog.stop()
        return dog.stalls

    assert asyncio.run(main()) == 0
    assert "loop.blocked" not in stream.getvalue()


def test_a_blocking_sleep_without_cpu_is_not_blamed_on_the_server() -> None:
    """A descheduled process looks like this: late heartbeat, no CPU used by the loop."""
    stream = io.StringIO()

    async def main() -> int:
        dog = LoopWatchdog(Logger(stream, "debug"))
        dog.start()
        await asyncio.sleep(0.06)
        time.sleep(0.3)  # noqa: ASYNC251 - stands in for the host pausing the process
        await asyncio.sleep(0.06)
        dog.stop()
        return dog.stalls

    assert asyncio.run(main()) == 0
