"""Group commit: one writer thread, one SQLite transaction and one fsync per batch.

Every write to the store is a function run inside the writer thread's transaction.
While one batch is being flushed to disk, new requests queue up and go into the next
batch, so under load many messages from many sessions share one WAL fsync — the
technique databases call group commit — without any artificial delay when idle.
Each request runs inside its own SAVEPOINT so one failure does not undo the others.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Final

__all__ = ["AfterCommit", "GroupCommitter", "WriteOp"]

#: A post-commit action (unlinking freed blob files, waking waiters); runs in the thread.
AfterCommit = Callable[[], None]
#: A write: runs in the transaction, returns (result, after-commit actions).
WriteOp = Callable[[sqlite3.Connection], tuple[Any, list[AfterCommit]]]

_STOP: Final = object()
_MAX_BATCH: Final = 512


class GroupCommitter:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.batches = 0
        self.writes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="correo-store-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def submit(self, op: WriteOp) -> asyncio.Future[Any]:
        """Queue a write; the future resolves once it is durably committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((op, future, loop))
        return future

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._commit(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, Any]] = []
        after: list[AfterCommit] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, future, loop in batch:
                conn.execute("SAVEPOINT op")
                try:
                    result, actions = op(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((future, loop, None, exc))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((future, loop, result, None))
                    after.extend(actions)
            conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsync'd here
        except Exception as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            outcomes = [(f, lp, None, exc) for f, _, lp in batch]
            after = []
        self.batches += 1
        self.writes += len(batch)
        for action in after:
            try:
                action()
            except Exception:
                pass  # post-commit cleanup is best effort; start-up sweeps leftovers
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for future, loop, result, error in outcomes:
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:
                pass  # loop closed: nobody is waiting any more


def _resolve(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in items:
        if future.done():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
