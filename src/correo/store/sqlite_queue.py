"""The outbound queue of :class:`correo.store.sqlite.SqliteStore`: entries share the
message's body blob (one reference each) and keep one row per recipient.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING

from correo.store.api import (
    QueuedMessage,
    QueueEntry,
    QueueRecipientState,
    QueueSummary,
    RecipientUpdate,
    StoreError,
)

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["QueueOps"]


class QueueOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _release_blobs(self, conn: sqlite3.Connection, blob_ids: list[int]) -> list[str]: ...
        def _unlink_later(self, paths: list[str]) -> AfterCommit: ...
        def _blob_chunks(
            self,
            data: bytes | None,
            path: str | None,
            skip: int,
            chunk_size: int,
            end: int | None = None,
        ) -> AsyncIterator[bytes]: ...

    async def queue_list(self) -> list[QueueEntry]:
        def read() -> list[QueueEntry]:
            conn = self._reader()
            entries = []
            for qid, sender, size, skip, created in conn.execute(
                "SELECT q.id, q.sender, b.size, q.skip, q.created FROM queue q "
                "JOIN blobs b ON b.id = q.blob_id ORDER BY q.id"
            ):
                rcpts = tuple(
                    (a, s, e)
                    for a, s, e in conn.execute(
                        "SELECT address, status, last_error FROM queue_recipients "
                        "WHERE queue_id=? ORDER BY address",
                        (qid,),
                    )
                )
                entries.append(QueueEntry(qid, sender, size - skip, created, rcpts))
            return entries

        result: list[QueueEntry] = await self._read(read)
        return result

    def _queued_message(self, conn: sqlite3.Connection, row: Any) -> QueuedMessage:
        qid, sender, size, skip, created, envid, ret, body, smtputf8, auth = row
        recipients = tuple(
            QueueRecipientState(a, n, o, s, at, na, e, bool(w))
            for a, n, o, s, at, na, e, w in conn.execute(
                "SELECT address, notify, orcpt, status, attempts, next_attempt, last_error, warned"
                " FROM queue_recipients WHERE queue_id=? ORDER BY address",
                (qid,),
            )
        )
        return QueuedMessage(
            qid, sender, size - skip, created, envid, ret, body, bool(smtputf8), auth, recipients
        )

    _QUEUE_COLUMNS = (
        "q.id, q.sender, b.size, q.skip, q.created, q.envid, q.ret, q.body, q.smtputf8,"
        " q.authenticated FROM queue q JOIN blobs b ON b.id = q.blob_id"
    )

    async def queue_due(
        self, now: float, limit: int = 100, exclude: Collection[int] = ()
    ) -> list[QueuedMessage]:
        skip = sorted(set(exclude))

        def read() -> list[QueuedMessage]:
            conn = self._reader()
            ids: list[int] = []
            # Over-fetch by the excluded count, then drop them in Python: a NOT IN list of
            # hundreds of parameters would hit SQLite's variable limit.
            excluded = set(skip)
            for (qid,) in conn.execute(
                "SELECT queue_id FROM queue_recipients WHERE status='queued'"
                " AND next_attempt <= ? GROUP BY queue_id ORDER BY min(next_attempt), queue_id"
                " LIMIT ?",
                (now, limit + len(skip)),
            ):
                if qid not in excluded:
                    ids.append(qid)
                    if len(ids) >= limit:
                        break
            out = []
            for qid in ids:
                row = conn.execute(f"SELECT {self._QUEUE_COLUMNS} WHERE q.id=?", (qid,)).fetchone()
                if row is not None:
                    out.append(self._queued_message(conn, row))
            return out

        result: list[QueuedMessage] = await self._read(read)
        return result

    async def queue_get(self, queue_id: int) -> QueuedMessage | None:
        def read() -> QueuedMessage | None:
            conn = self._reader()
            row = conn.execute(f"SELECT {self._QUEUE_COLUMNS} WHERE q.id=?", (queue_id,)).fetchone()
            return None if row is None else self._queued_message(conn, row)

        result: QueuedMessage | None = await self._read(read)
        return result

    async def queue_read(self, queue_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        def locate() -> tuple[bytes | None, str | None, int]:
            row = (
                self._reader()
                .execute(
                    "SELECT b.data, b.path, q.skip FROM queue q JOIN blobs b ON b.id = q.blob_id"
                    " WHERE q.id=?",
                    (queue_id,),
                )
                .fetchone()
            )
            if row is None:
                raise StoreError(f"queue entry {queue_id} does not exist")
            return row[0], row[1], int(row[2])

        data, path, skip = await self._read(locate)
        async for chunk in self._blob_chunks(data, path, skip, chunk_size):
            yield chunk

    def _drop_queue_entry(self, conn: sqlite3.Connection, queue_id: int) -> list[str]:
        row = conn.execute("DELETE FROM queue WHERE id=? RETURNING blob_id", (queue_id,)).fetchone()
        conn.execute("DELETE FROM queue_recipients WHERE queue_id=?", (queue_id,))
        return [] if row is None else self._release_blobs(conn, [row[0]])

    async def queue_update(self, queue_id: int, updates: Sequence[RecipientUpdate]) -> bool:
        def op(conn: sqlite3.Connection) -> tuple[bool, list[AfterCommit]]:
            for u in updates:
                conn.execute(
                    "UPDATE queue_recipients SET status=?, next_attempt=?, last_error=?,"
                    " attempts=attempts+?, warned=COALESCE(?, warned)"
                    " WHERE queue_id=? AND address=?",
                    (
                        u.status,
                        u.next_attempt,
                        u.last_error,
                        int(u.counted),
                        None if u.warned is None else int(u.warned),
                        queue_id,
                        u.address,
                    ),
                )
            (pending,) = conn.execute(
                "SELECT count(*) FROM queue_recipients WHERE queue_id=? AND status='queued'",
                (queue_id,),
            ).fetchone()
            if pending:
                return False, []
            return True, [self._unlink_later(self._drop_queue_entry(conn, queue_id))]

        done: bool = await self._write(op)
        return done

    async def queue_delete(self, queue_id: int) -> bool:
        def op(conn: sqlite3.Connection) -> tuple[bool, list[AfterCommit]]:
            exists = conn.execute("SELECT 1 FROM queue WHERE id=?", (queue_id,)).fetchone()
            if exists is None:
                return False, []
            return True, [self._unlink_later(self._drop_queue_entry(conn, queue_id))]

        deleted: bool = await self._write(op)
        return deleted

    async def queue_retry(self, queue_id: int | None = None, now: float | None = None) -> int:
        when = time.time() if now is None else now

        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            if queue_id is None:
                cur = conn.execute(
                    "UPDATE queue_recipients SET next_attempt=? WHERE status='queued'", (when,)
                )
            else:
                cur = conn.execute(
                    "UPDATE queue_recipients SET next_attempt=? WHERE status='queued'"
                    " AND queue_id=?",
                    (when, queue_id),
                )
            return cur.rowcount, []

        count: int = await self._write(op)
        return count

    async def queue_next_due(self) -> float | None:
        def read() -> float | None:
            (value,) = (
                self._reader()
                .execute("SELECT min(next_attempt) FROM queue_recipients WHERE status='queued'")
                .fetchone()
            )
            return None if value is None else float(value)

        result: float | None = await self._read(read)
        return result

    async def queue_summary(self, cap: int = 1_000_000) -> QueueSummary:
        def read() -> QueueSummary:
            conn = self._reader()
            (messages,) = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM queue LIMIT ?)", (cap,)
            ).fetchone()
            (recipients,) = conn.execute(  # the queue_due index
                "SELECT count(*) FROM (SELECT 1 FROM queue_recipients"
                " WHERE status='queued' LIMIT ?)",
                (cap,),
            ).fetchone()
            # ids grow with time: the first row is the oldest, found without a scan
            row = conn.execute("SELECT created FROM queue ORDER BY id LIMIT 1").fetchone()
            return QueueSummary(int(messages), int(recipients), None if row is None else row[0])

        result: QueueSummary = await self._read(read)
        return result
