"""The life of a worker process (DKIM signing, text index) around its frames.

Both run as ``python -I -m correo.server.<worker>``: frames in on stdin, answers out on
stdout, the parent's end of stdin closing (shutdown, or the server dying) ends them.
Standard library only, so a worker imports no more than its own job needs.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

__all__ = ["run", "write_all"]


def write_all(wfd: int, frames: list[bytes]) -> None:
    """The answers of one read, in one write where the pipe takes them."""
    data = b"".join(frames)
    while data:
        data = data[os.write(wfd, data) :]


def run(serve: Callable[[int, int], None]) -> None:
    """Serve stdin to stdout until end of file, as a batch task that ignores ^C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the server
    # A pipe write wakes its reader "synchronously": Linux puts the worker on the
    # server's CPU and, as it has slept, lets it preempt the event loop there.  A batch
    # task never preempts on wake-up; it takes an idle core or waits its turn.
    if hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            pass
    try:
        serve(sys.stdin.fileno(), sys.stdout.fileno())
    except (BrokenPipeError, KeyboardInterrupt):
        pass
