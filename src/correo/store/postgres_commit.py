"""Group commit on PostgreSQL: concurrent writes of one node share one transaction.

Why batch at all, when PostgreSQL already flushes the WAL of concurrent commits
together: every write that allocates a UID or MODSEQ locks its mailbox row until it
commits, so writes into one busy mailbox (a shared INBOX, a list archive) would take one
WAL flush each, one after the other.  Batching them into one transaction makes that one
flush per batch, as the embedded store's ``committer.py`` does with SQLite.

Each write is an async function run on the batch's connection.  One that refuses
requests in the normal course (a mailbox that exists, a script that is active) runs in
a savepoint of its own and rolls back alone; the others (deliveries, expunges, the
queue) skip the savepoint's two round trips, and should one fail after all, the batch is
rolled back and run again without it.
Before the writes run, the batch locks every mailbox row they declared, in id order:
two nodes' batches then take their locks in the same order and cannot deadlock on them.
A deadlock or serialization failure that happens anyway (bodies shared across mailboxes)
aborts the batch, which is retried whole: nothing of it was committed.

Writes of one kind that can share a statement (small deliveries, ``postgres_group.py``)
carry a *group runner*: the batch hands all of them to it at once, after the locks and
before the other writes, and runs one on its own only where the runner declines it.
A runner that fails rolls the batch back; it is then run again without grouping.

Large bodies are not written here: they are staged beforehand on another connection
(``postgres.py``), so a 100 MB message never holds up the other sessions' writes.

Round trips: a lone client's APPEND waits for every one of its batch's.  A batch of one
write that has a *solo* form (a small delivery to one mailbox: one statement) sends its
mailbox lock and that statement in one pipeline and no BEGIN or COMMIT: the two run in
one implicit transaction that the pipeline's Sync commits, one round trip in all, the
locks taken in the same order as a batch's.  Otherwise the writer keeps
one connection of the pool for itself (a database process that has just answered answers
sooner than one the pool left idle, and no pool hand-over per batch), and the batch's
BEGIN goes in one message with its mailbox locks (two statements, simple query protocol,
values bound by psycopg on the client) instead of a round trip of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import psycopg
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from correo.store.api import StoreError
from correo.store.postgres_health import PgHealth, connection_lost, store_error

__all__ = [
    "PgAfterCommit",
    "PgCommitter",
    "PgGroupRun",
    "PgOutcome",
    "PgSolo",
    "PgWriteOp",
    "store_error",
]

#: A post-commit action (waking waiters, announcing changes); runs on the event loop.
PgAfterCommit = Callable[[], None]
#: A write: runs in the batch's transaction, returns (result, after-commit actions).
PgWriteOp = Callable[[AsyncConnection[Any]], Awaitable[tuple[Any, list[PgAfterCommit]]]]
#: A write's result and its after-commit actions.
PgOutcome = tuple[Any, list[PgAfterCommit]]
#: A write as one statement, sent (not read) inside the committer's pipeline; the
#: function it returns reads the outcome after the Sync, None when the write must run
#: as its op after all (nothing of it was kept but, at most, UIDs left unused).
PgSolo = Callable[[AsyncConnection[Any]], Awaitable[Callable[[], Awaitable[PgOutcome | None]]]]
#: Runs the payloads of several writes of one kind at once; per payload its outcome, or
#: None for a write to run on its own (its op) after all.
PgGroupRun = Callable[
    [AsyncConnection[Any], list[Any]],
    Awaitable[list[tuple[Any, list[PgAfterCommit]] | None]],
]

_MAX_BATCH: Final = 256
_SOLO_FRESH: Final = 5.0  # seconds since the writer's connection last answered
_RETRIES: Final = 5
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)

#: A batch's mailbox rows locked in id order.
_LOCK: Final = (
    "SELECT m.id FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
    " JOIN unnest(%s::text[], %s::text[]) AS k(account, name)"
    " ON a.name = k.account AND m.name = k.name ORDER BY m.id FOR UPDATE OF m"
)
#: The batch's start: BEGIN, then its mailbox rows locked, in one message.
_BEGIN_LOCKED: Final = "BEGIN; " + _LOCK


class _Item:
    __slots__ = ("future", "group", "guarded", "keys", "op", "solo")

    def __init__(
        self,
        op: PgWriteOp,
        keys: Sequence[tuple[str, str]],
        guarded: bool,
        future: asyncio.Future[Any],
        group: tuple[PgGroupRun, Any] | None,
        solo: PgSolo | None = None,
    ) -> None:
        self.op = op
        self.solo = solo
        self.keys = keys
        self.guarded = guarded
        self.future = future
        self.group = group


def _quiet(conn: AsyncConnection[Any]) -> bool:
    """Nothing waits to be read on the idle connection.  A database process that ended
    (a restart, an administrator) sent its last message and closed; the batch then takes
    the path that may run again on a new connection, since its BEGIN never reached one."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return not poller.poll(0)


class _Redo(Exception):
    """An unguarded write failed: the batch is rolled back and run again without it."""


class _Ungroup(Exception):
    """A group runner failed: the batch is rolled back and run again write by write."""


class PgCommitter:
    """One writer task per store: batches of writes, one transaction and one flush each."""

    def __init__(self, pool: AsyncConnectionPool[Any], health: PgHealth | None = None) -> None:
        self._pool = pool
        self._health = health if health is not None else PgHealth(pool)
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._conn: AsyncConnection[Any] | None = None  # the writer's own, kept between batches
        self._answered = 0.0  # monotonic time the writer's connection last answered
        self.batches = 0
        self.writes = 0
        #: Called with (seconds, writes) after each committed batch (metrics).
        self.observer: Callable[[float, int], None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="correo-pg-writer")

    async def stop(self) -> None:
        """Finish what was submitted, then end the writer task."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._release()

    async def _release(self) -> None:
        """The writer's connection back to the pool (which checks it, and replaces a
        broken one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self._pool.putconn(conn)

    def submit(
        self,
        op: PgWriteOp,
        keys: Sequence[tuple[str, str]] = (),
        *,
        guarded: bool = True,
        group: tuple[PgGroupRun, Any] | None = None,
        solo: PgSolo | None = None,
    ) -> asyncio.Future[Any]:
        """Queue a write; the future resolves once it is durably committed.

        ``keys``: the (account, mailbox) rows the write will lock, taken in id order first.
        ``guarded``: run it in a savepoint (two round trips) because it refuses requests
        in the normal course (a mailbox that exists); an unguarded write that fails
        anyway costs a rerun of its batch instead.
        ``group``: (runner, payload) for a write that may share a statement with others
        of its kind in the batch; ``op`` still runs it alone where the runner declines.
        ``solo``: the write as one statement, for a batch of it alone (see the module's
        docstring); ``op`` runs it where that declines.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._task is None or self._stopping:
            future.set_exception(StoreError("the store is closed"))
            return future
        self._queue.append(_Item(op, keys, guarded, future, group, solo))
        self._wake.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
                await self._commit(batch)
            if self._stopping:
                return

    async def _commit(self, batch: list[_Item]) -> None:
        refused: dict[int, BaseException] = {}  # index -> error, for writes that failed
        outcomes: dict[int, Any] = {}
        after: list[PgAfterCommit] = []
        failure: BaseException | None = None
        retries = 0
        reconnected = False
        grouping = True
        started = time.monotonic()
        while True:
            outcomes, after = {}, []
            sent: list[bool] = []  # COMMIT sent: after it, the outcome of a failure is unknown
            try:
                await self._attempt(batch, refused, outcomes, after, sent, grouping)
                self._health.answered()
                break
            except _Ungroup:
                grouping = False  # rolled back; once: the rerun has no groups
                continue
            except _Redo:
                continue  # rolled back; bounded: each rerun has one write fewer
            except _RETRYABLE:
                retries += 1
                if retries == _RETRIES:
                    failure = StoreError("the database kept aborting the write")
                    break
                await asyncio.sleep(0.01 * retries)
            except Exception as exc:
                if connection_lost(exc):
                    await self._release()
                    await self._health.lost()
                    if not sent and not reconnected:
                        reconnected = True  # nothing of it was committed: once more
                        continue
                failure = store_error(exc)
                break
        self.batches += 1
        self.writes += len(batch)
        if failure is None:
            for action in after:
                try:
                    action()
                except Exception:
                    pass  # wake-ups and announcements are best effort; pollers catch up
        if failure is None and self.observer is not None:
            with contextlib.suppress(Exception):  # metrics never cost a write
                self.observer(time.monotonic() - started, len(batch))
        for i, item in enumerate(batch):
            if item.future.done():
                continue
            error = refused.get(i, failure)
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(outcomes.get(i))

    async def _attempt(
        self,
        batch: list[_Item],
        refused: dict[int, BaseException],
        outcomes: dict[int, Any],
        after: list[PgAfterCommit],
        sent: list[bool],
        grouping: bool,
    ) -> None:
        keys = sorted({k for i, item in enumerate(batch) if i not in refused for k in item.keys})
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = await self._pool.getconn(timeout=self._health.wait)
        alone = batch[0].solo if len(batch) == 1 and not refused else None
        # only on a connection that answered lately: a peer that vanished without a word
        # (a moved address, a firewall's forgotten flow) fails the first write sent, and
        # the usual path, whose BEGIN is not a commit, runs again on a new connection
        recent = time.monotonic() - self._answered < _SOLO_FRESH
        if alone is not None and recent and _quiet(conn):
            sent.append(True)  # the Sync commits: a failure from here on is of unknown outcome
            try:
                async with conn.pipeline():
                    await conn.execute(_LOCK, ([k[0] for k in keys], [k[1] for k in keys]))
                    finish = await alone(conn)
                got = await finish()
            except BaseException:
                await self._abandon(conn)
                raise
            self._answered = time.monotonic()
            if got is not None:
                outcomes[0], actions = got
                after.extend(actions)
                return
            sent.clear()  # committed nothing but unused UIDs: the batch runs as usual
        try:
            if keys:
                await AsyncClientCursor(conn).execute(
                    _BEGIN_LOCKED, ([k[0] for k in keys], [k[1] for k in keys])
                )
            else:
                await conn.execute("BEGIN")
            await self._writes(conn, batch, refused, outcomes, after, grouping)
            sent.append(True)  # after COMMIT is sent, the outcome of a failure is unknown
            cur = await conn.execute("COMMIT")
            if cur.statusmessage != "COMMIT":  # an aborted transaction "commits" as ROLLBACK
                raise StoreError(f"the batch was not committed ({cur.statusmessage})")
            self._answered = time.monotonic()
        except BaseException:
            await self._abandon(conn)
            raise

    async def _abandon(self, conn: AsyncConnection[Any]) -> None:
        """Roll back what the failed batch began; a connection that cannot is released."""
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.execute("ROLLBACK")
        except Exception:
            await self._release()
        except BaseException:  # cancelled: the pool makes sure of the connection
            await asyncio.shield(self._release())
            raise

    async def _writes(
        self,
        conn: AsyncConnection[Any],
        batch: list[_Item],
        refused: dict[int, BaseException],
        outcomes: dict[int, Any],
        after: list[PgAfterCommit],
        grouping: bool,
    ) -> None:
        """The batch's writes in its open transaction: the groups first, then each other
        write in order (a guarded one in a savepoint of its own)."""
        grouped = await self._groups(conn, batch, refused) if grouping else {}
        for i, item in enumerate(batch):
            if i in refused:
                continue
            if i in grouped:
                outcomes[i], actions = grouped[i]
                after.extend(actions)
                continue
            try:
                if item.guarded:
                    async with conn.transaction():  # a savepoint of its own
                        result, actions = await item.op(conn)
                else:
                    result, actions = await item.op(conn)
            except _RETRYABLE:
                raise
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise  # the connection is gone: the batch fails whole
            except Exception as exc:
                refused[i] = store_error(exc)
                if not item.guarded:
                    raise _Redo from exc  # the transaction is spoilt: roll back
            else:
                outcomes[i] = result
                after.extend(actions)

    @staticmethod
    async def _groups(
        conn: AsyncConnection[Any], batch: list[_Item], refused: dict[int, BaseException]
    ) -> dict[int, tuple[Any, list[PgAfterCommit]]]:
        """Run each kind's grouped writes at once (two or more of a kind); their outcomes
        by batch index, without the ones the runner left to their own op."""
        kinds: dict[PgGroupRun, list[int]] = {}
        for i, item in enumerate(batch):
            if item.group is not None and i not in refused:
                kinds.setdefault(item.group[0], []).append(i)
        done: dict[int, tuple[Any, list[PgAfterCommit]]] = {}
        for run, indexes in kinds.items():
            if len(indexes) < 2:
                continue
            try:
                results = await run(conn, [batch[i].group[1] for i in indexes])  # type: ignore[index]
            except (*_RETRYABLE, psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except Exception as exc:
                raise _Ungroup from exc
            for i, result in zip(indexes, results, strict=True):
                if result is not None:
                    done[i] = result
        return done
