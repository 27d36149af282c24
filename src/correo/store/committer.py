"""Group commit: one writer thread, one SQLite transaction and one fsync per batch.

Every write to the store is a function run inside the writer thread's transaction.
While one batch is being flushed to disk, new requests queue up and go into the next
batch, so under load many messages from many sessions share one WAL fsync — the
technique databases call group commit — without any artificial delay when idle.
Each request runs inside its own SAVEPOINT so one failure does not undo the others.

Failure rules (a full disk is the common case): every request of a batch is answered,
with its result or with the error that stopped it; a batch that cannot commit fails
all its requests with that error and leaves nothing behind for the next batch (the
transaction is rolled back, or the connection replaced); the writer thread outlives
any failure, so writes succeed again as soon as their cause (space) is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["AfterCommit", "GroupCommitter", "WriteOp"]

#: A post-commit action (unlinking freed blob files, waking waiters); runs in the thread.
AfterCommit = Callable[[], None]
#: A write: runs in the transaction, returns (result, after-commit actions).
WriteOp = Callable[[sqlite3.Connection], tuple[Any, list[AfterCommit]]]
#: (future, its loop, result, error): how one request of a batch ended.
_Outcome = tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, BaseException | None]

_STOP: Final = object()
_MAX_BATCH: Final = 512


class GroupCommitter:
    """The writer thread.

    ``on_begin(conn)`` runs at the start of every batch's transaction (the store checks
    there whether another process changed the database under its caches);
    ``on_rollback()`` runs whenever a request or a batch is rolled back, so state cached
    from inside the transaction (ids of rows that no longer exist) is dropped.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        on_begin: Callable[[sqlite3.Connection], None] | None = None,
        on_rollback: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._on_begin = on_begin
        self._on_rollback = on_rollback
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._conn: sqlite3.Connection | None = None
        self.batches = 0
        self.writes = 0
        self.failed_batches = 0
        #: Called with (seconds, writes) after each committed batch (metrics).
        self.observer: Callable[[float, int], None] | None = None

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
        """Queue a write; the future resolves once it is durably committed (or failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((op, future, loop))
        return future

    def _run(self) -> None:
        try:
            self._conn = self._connect()
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
                self._commit(batch)
                if stop:
                    return
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _commit(self, batch: list[Any]) -> None:
        """Run one batch; never raises, answers every request of it exactly once."""
        outcomes: list[_Outcome] = []
        after: list[AfterCommit] = []
        started = time.monotonic()
        try:
            if self._conn is None:  # dropped after a failure: a fresh one per batch
                self._conn = self._connect()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            if self._on_begin is not None:
                self._on_begin(conn)
            for op, future, loop in batch:
                conn.execute("SAVEPOINT op")
                try:
                    result, actions = op(conn)
                except Exception as exc:
                    self._rolled_back()
                    try:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                    except sqlite3.Error:
                        # SQLite dropped the whole transaction (SQLITE_FULL, I/O error):
                        # the other requests of the batch are lost too, for this cause.
                        raise exc from None
                    outcomes.append((future, loop, None, exc))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((future, loop, result, None))
                    after.extend(actions)
            conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsync'd here
            elapsed: float | None = time.monotonic() - started
        except BaseException as exc:  # the batch failed: each request gets the error
            self._abandon()
            self.failed_batches += 1
            outcomes = [(future, loop, None, exc) for _op, future, loop in batch]
            after = []
            elapsed = None
        self.batches += 1
        self.writes += len(batch)
        for action in after:
            try:
                action()
            except Exception:
                pass  # post-commit cleanup is best effort; start-up sweeps leftovers
        if elapsed is not None and self.observer is not None:
            with contextlib.suppress(Exception):  # metrics never cost a write
                self.observer(elapsed, len(batch))
        _answer(outcomes)

    def _rolled_back(self) -> None:
        if self._on_rollback is not None:
            with contextlib.suppress(Exception):
                self._on_rollback()

    def _abandon(self) -> None:
        """Leave no transaction open for the next batch: roll back, or reconnect."""
        self._rolled_back()
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")  # often already done by SQLite itself
        try:
            stuck = conn.in_transaction
        except sqlite3.Error:
            stuck = True
        if stuck:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._conn = None  # the next batch connects again


def _answer(outcomes: list[_Outcome]) -> None:
    """Hand each outcome to its future's event loop (futures are not thread-safe)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for future, loop, result, error in outcomes:
        by_loop.setdefault(loop, []).append((future, result, error))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:
            pass  # loop closed: nobody is waiting any more


def _resolve(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """On the loop: settle every future; one that cannot be settled stops no other."""
    for future, result, exc in items:
        try:
            if future.done():
                continue  # cancelled by a session that went away
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
        except Exception as bad:  # e.g. StopIteration cannot be set on a future
            if not future.done():
                future.set_exception(RuntimeError(f"store write failed: {bad!r}"))
