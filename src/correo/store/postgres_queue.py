"""The outbound queue of the PostgreSQL store, taken under leases.

Every node's runner asks :meth:`queue_due` for work.  The recipients it returns as due
are leased to this node (``lease_until``, ``lease_owner``) in the same statement that
finds them, with ``FOR UPDATE SKIP LOCKED``, so two nodes never attempt one recipient
at once.  Recording an outcome (:meth:`queue_update`) ends the lease; a node that dies
mid-attempt leaves a lease that runs out after :attr:`queue_lease` seconds, and then
another node takes the recipient.  Recipients leased by another node are shown not due
until their lease ends, so a runner holding their message does not attempt them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection, Sequence

from correo.store.api import (
    Envelope,
    QueuedMessage,
    QueuedRecipient,
    QueueEntry,
    QueueRecipientState,
    QueueSummary,
    RecipientUpdate,
    StoreError,
)
from correo.store.postgres_base import Conn, PgBase, Row
from correo.store.postgres_commit import PgAfterCommit

__all__ = ["PgQueueOps"]

_COLUMNS = (
    "SELECT q.id, q.sender, b.size, q.skip, q.created, q.envid, q.ret, q.body, q.smtputf8,"
    " q.authenticated FROM queue q JOIN blobs b ON b.id = q.blob_id"
)
_RECIPIENTS = (
    "SELECT queue_id, address, notify, orcpt, status, attempts, next_attempt, last_error,"
    " warned, lease_until, lease_owner FROM queue_recipients"
    " WHERE queue_id = ANY(%s::bigint[]) ORDER BY queue_id, address"
)


class PgQueueOps(PgBase):
    #: Seconds a node owns the recipients it took; longer than any one attempt lasts
    #: (connect, the peer's replies and DATA at RFC 5321 §4.5.3.2's timeouts).
    queue_lease = 1800.0

    async def _insert_queue(
        self,
        conn: Conn,
        blob_id: int,
        skip: int,
        envelope: Envelope,
        now: float,
        queued: Sequence[QueuedRecipient],
    ) -> int:
        row = await self._one(
            conn,
            "INSERT INTO queue (blob_id, skip, sender, envid, ret, body, smtputf8,"
            " authenticated, created) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                blob_id,
                skip,
                envelope.sender,
                envelope.envid,
                envelope.ret,
                envelope.body,
                envelope.smtputf8,
                envelope.authenticated,
                now,
            ),
        )
        assert row is not None
        queue_id = int(row[0])
        await conn.execute(
            "INSERT INTO queue_recipients (queue_id, address, notify, orcpt, next_attempt)"
            " SELECT %s, t.address, t.notify, t.orcpt, %s"
            " FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(address, notify, orcpt)"
            " ON CONFLICT DO NOTHING",
            (
                queue_id,
                now,
                [r.address for r in queued],
                [r.notify for r in queued],
                [r.orcpt for r in queued],
            ),
        )
        return queue_id

    def _messages(
        self, heads: list[Row], recipients: list[Row], now: float, mine: set[tuple[int, str]]
    ) -> list[QueuedMessage]:
        by_id: dict[int, list[QueueRecipientState]] = {}
        for row in recipients:
            qid, address, notify, orcpt, status, attempts, nxt, error, warned, until = row[:10]
            when = float(nxt)
            if status == "queued" and until > now and (qid, address) not in mine:
                # leased by a runner (here or on another node): not due for the caller
                when = max(when, float(until))
            by_id.setdefault(int(qid), []).append(
                QueueRecipientState(
                    address, notify, orcpt, status, int(attempts), when, error, bool(warned)
                )
            )
        return [
            QueuedMessage(
                int(qid),
                sender,
                int(size) - int(skip),
                float(created),
                envid,
                ret,
                body,
                bool(smtputf8),
                auth,
                tuple(by_id.get(int(qid), ())),
            )
            for qid, sender, size, skip, created, envid, ret, body, smtputf8, auth in heads
        ]

    async def queue_list(self) -> list[QueueEntry]:
        heads = await self._fetchall(
            "SELECT q.id, q.sender, b.size - q.skip, q.created FROM queue q"
            " JOIN blobs b ON b.id = q.blob_id ORDER BY q.id"
        )
        rows = await self._fetchall(
            "SELECT queue_id, address, status, last_error FROM queue_recipients"
            " ORDER BY queue_id, address"
        )
        by_id: dict[int, list[tuple[str, str, str]]] = {}
        for qid, address, status, error in rows:
            by_id.setdefault(int(qid), []).append((address, status, error))
        return [
            QueueEntry(int(qid), sender, int(size), float(created), tuple(by_id.get(int(qid), ())))
            for qid, sender, size, created in heads
        ]

    async def queue_due(
        self, now: float, limit: int = 100, exclude: Collection[int] = ()
    ) -> list[QueuedMessage]:
        skip = sorted(set(exclude))
        lease = now + self.queue_lease
        owner = self.lease_owner

        async def op(conn: Conn) -> tuple[list[QueuedMessage], list[PgAfterCommit]]:
            taken = await self._all(
                conn,
                "WITH due AS (SELECT queue_id FROM queue_recipients WHERE status = 'queued'"
                " AND next_attempt <= %s AND lease_until <= %s"
                " AND NOT queue_id = ANY(%s::bigint[])"
                " GROUP BY queue_id ORDER BY min(next_attempt), queue_id LIMIT %s),"
                " free AS (SELECT r.queue_id, r.address FROM queue_recipients r"
                " JOIN due ON due.queue_id = r.queue_id WHERE r.status = 'queued'"
                " AND r.next_attempt <= %s AND r.lease_until <= %s FOR UPDATE OF r SKIP LOCKED)"
                " UPDATE queue_recipients r SET lease_until = %s, lease_owner = %s FROM free"
                " WHERE r.queue_id = free.queue_id AND r.address = free.address"
                " RETURNING r.queue_id, r.address",
                (now, now, skip, limit, now, now, lease, owner),
            )
            if not taken:
                return [], []
            ids = sorted({int(r[0]) for r in taken})
            heads = await self._all(conn, _COLUMNS + " WHERE q.id = ANY(%s::bigint[])", (ids,))
            recipients = await self._all(conn, _RECIPIENTS, (ids,))
            mine = {(int(r[0]), str(r[1])) for r in taken}
            messages = self._messages(heads, recipients, now, mine)
            order = {qid: i for i, qid in enumerate(_due_order(recipients, mine))}
            messages.sort(key=lambda m: order.get(m.id, 0))
            return messages, []

        result: list[QueuedMessage] = await self._write(op, guarded=False)
        return result

    async def queue_get(self, queue_id: int) -> QueuedMessage | None:
        heads = await self._fetchall(_COLUMNS + " WHERE q.id = %s", (queue_id,))
        if not heads:
            return None
        recipients = await self._fetchall(_RECIPIENTS, ([queue_id],))
        return self._messages(heads, recipients, time.time(), set())[0]

    async def queue_read(self, queue_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        row = await self._fetchone(
            "SELECT b.id, b.size, q.skip, substring(b.data FROM q.skip + 1) FROM queue q"
            " JOIN blobs b ON b.id = q.blob_id WHERE q.id = %s",
            (queue_id,),
        )
        if row is None:
            raise StoreError(f"queue entry {queue_id} does not exist")
        data: bytes | None = row[3]
        if data is not None:
            for i in range(0, len(data), chunk_size):
                yield data[i : i + chunk_size]
            return
        async for chunk in self._blob_stream(
            int(row[0]), int(row[1]), int(row[2]), None, chunk_size
        ):
            yield chunk

    async def _drop_queue_entry(self, conn: Conn, queue_id: int) -> bool:
        row = await self._one(
            conn, "DELETE FROM queue WHERE id = %s RETURNING blob_id", (queue_id,)
        )
        await conn.execute("DELETE FROM queue_recipients WHERE queue_id = %s", (queue_id,))
        if row is None:
            return False
        await self._release_blobs(conn, [int(row[0])])
        return True

    async def queue_update(self, queue_id: int, updates: Sequence[RecipientUpdate]) -> bool:
        async def op(conn: Conn) -> tuple[bool, list[PgAfterCommit]]:
            if updates:
                await conn.execute(
                    "UPDATE queue_recipients r SET status = u.status, next_attempt = u.next,"
                    " last_error = u.error, attempts = r.attempts + u.counted,"
                    " warned = coalesce(u.warned, r.warned), lease_until = 0, lease_owner = NULL"
                    " FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[], %s::int[],"
                    " %s::bool[]) AS u(address, status, next, error, counted, warned)"
                    " WHERE r.queue_id = %s AND r.address = u.address",
                    (
                        [u.address for u in updates],
                        [u.status for u in updates],
                        [float(u.next_attempt) for u in updates],
                        [u.last_error for u in updates],
                        [int(u.counted) for u in updates],
                        [u.warned for u in updates],
                        queue_id,
                    ),
                )
            pending = await self._one(
                conn,
                "SELECT count(*) FROM queue_recipients WHERE queue_id = %s AND status = 'queued'",
                (queue_id,),
            )
            if pending is not None and pending[0]:
                return False, []
            await self._drop_queue_entry(conn, queue_id)
            return True, []

        done: bool = await self._write(op, guarded=False)
        return done

    async def queue_delete(self, queue_id: int) -> bool:
        async def op(conn: Conn) -> tuple[bool, list[PgAfterCommit]]:
            return await self._drop_queue_entry(conn, queue_id), []

        deleted: bool = await self._write(op, guarded=False)
        return deleted

    async def queue_retry(self, queue_id: int | None = None, now: float | None = None) -> int:
        when = time.time() if now is None else now

        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            # A leased recipient keeps its lease: the runner holding it finishes first.
            if queue_id is None:
                cur = await conn.execute(
                    "UPDATE queue_recipients SET next_attempt = %s WHERE status = 'queued'",
                    (when,),
                )
            else:
                cur = await conn.execute(
                    "UPDATE queue_recipients SET next_attempt = %s WHERE status = 'queued'"
                    " AND queue_id = %s",
                    (when, queue_id),
                )
            return cur.rowcount, []

        count: int = await self._write(op, guarded=False)
        return count

    async def queue_next_due(self) -> float | None:
        row = await self._fetchone(
            "SELECT min(greatest(next_attempt, lease_until)) FROM queue_recipients"
            " WHERE status = 'queued'"
        )
        return None if row is None or row[0] is None else float(row[0])

    async def queue_summary(self, cap: int = 1_000_000) -> QueueSummary:
        row = await self._fetchone(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM queue LIMIT %s) q),"
            " (SELECT count(*) FROM (SELECT 1 FROM queue_recipients"
            "  WHERE status = 'queued' LIMIT %s) r),"
            " (SELECT created FROM queue ORDER BY id LIMIT 1)",  # ids grow with time
            (cap, cap),
        )
        assert row is not None
        return QueueSummary(int(row[0]), int(row[1]), None if row[2] is None else float(row[2]))


def _due_order(recipients: list[Row], mine: set[tuple[int, str]]) -> list[int]:
    """Message ids by their earliest leased recipient's next attempt (as SQLite orders)."""
    first: dict[int, tuple[float, int]] = {}
    for row in recipients:
        qid, address, next_attempt = int(row[0]), str(row[1]), float(row[6])
        if (qid, address) in mine:
            key = (next_attempt, qid)
            if qid not in first or key < first[qid]:
                first[qid] = key
    return sorted(first, key=first.__getitem__)
