"""Shared plumbing of the PostgreSQL store: pool reads, the committer, ids and bodies.

The mixins (``postgres_mailboxes``, ``postgres_queue``, ``postgres_mda``) and the store
itself (``postgres.py``) all extend :class:`PgBase`, so each file stays small and typed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from correo.store.api import MailboxError, StoreError
from correo.store.bodycache import DiskBodyCache
from correo.store.postgres_commit import PgCommitter, PgWriteOp
from correo.store.postgres_feed import ChangeFeed
from correo.store.postgres_health import PgHealth, connection_lost, store_error

__all__ = ["CHUNK", "Conn", "PgBase", "Row"]

#: Bytes per stored body chunk; a body up to this size is kept inline in ``blobs``.
CHUNK: Final = 256 * 1024

Conn = AsyncConnection[Any]
Row = tuple[Any, ...]

#: Mailbox names whose (id, UIDVALIDITY) a node keeps for its body cache, at most.
_MAX_NAMES: Final = 100_000

_FIND_MAILBOX: Final = (
    "SELECT m.id FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
    " WHERE a.name = %s AND m.name = %s"
)


class PgBase:
    """State and helpers every part of the PostgreSQL store uses."""

    url: str
    root: Path
    _pool: AsyncConnectionPool[Any]
    _committer: PgCommitter
    _health: PgHealth
    feed: ChangeFeed
    node: str
    lease_owner: str  # this node's name on queue leases, stable across restarts
    _hot: Conn | None = None  # the reads' preferred connection, taken from the pool
    _hot_cur: psycopg.AsyncCursor[Any] | None = None  # its cursor, used again and again
    _hot_busy: bool = False
    _disk_bodies: DiskBodyCache | None = None  # the node's body cache (bodycache.py)
    #: account -> mailbox name -> (mailbox id, UIDVALIDITY): how the body cache's keys
    #: are found without a round trip; learnt from the store's own reads, forgotten on
    #: a rename or deletion here and on any change another node announces
    _names: dict[str, dict[str, tuple[int, int]]]
    _names_epoch: int = 0  # moves with every forgetting: a read begun before learns nothing
    _names_count: int = 0

    # -- reads on the pool (autocommit: each statement sees every committed write) -----

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = await self._query(sql, params, one=False)
        return rows

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = await self._query(sql, params, one=True)
        return row

    async def _query(self, sql: str, params: Sequence[Any], *, one: bool) -> Any:
        """One statement on a pooled connection; a dead connection (the database
        restarted) is dropped and the read runs once more on a fresh one.

        A read goes to the node's *hot* connection when it is free: the pool hands out
        its connections in turn, and a database process that has just answered answers
        again about twice as fast as one that sat idle (measured on a loaded 2-core
        machine: 0.4-0.7 ms against 1.2-1.4 ms a round trip). One IMAP command after
        another (a client's UID FETCH n, one by one) is the case this pays for.
        """
        for attempt in (1, 2):
            try:
                if not self._hot_busy:
                    result = await self._hot_query(sql, params, one)
                else:
                    async with self._pool.connection(timeout=self._health.wait) as conn:
                        cur = await conn.execute(sql, params, binary=True)
                        result = await (cur.fetchone() if one else cur.fetchall())
            except psycopg.Error as exc:
                if connection_lost(exc):
                    await self._health.lost()
                    if attempt == 1:
                        continue
                raise store_error(exc) from exc
            self._health.answered()
            return result
        raise AssertionError("unreachable")

    async def _hot_query(self, sql: str, params: Sequence[Any], one: bool) -> Any:
        self._hot_busy = True
        try:
            conn = self._hot
            if conn is None:
                conn = self._hot = await self._pool.getconn(timeout=self._health.wait)
                self._hot_cur = None
            try:
                # one cursor for every read on it: a new one per statement cost about
                # 15 µs of a 50 KB body's 85 µs of client CPU (measured in-process); it
                # keeps its last result (at most one group of bodies) until the next
                cur = self._hot_cur
                if cur is None:
                    cur = self._hot_cur = conn.cursor(binary=True)
                await cur.execute(sql, params)
                return await (cur.fetchone() if one else cur.fetchall())
            except BaseException:
                # broken, or cancelled mid-statement: back to the pool, which checks it
                self._hot, self._hot_cur = None, None
                await self._pool.putconn(conn)
                raise
        finally:
            self._hot_busy = False

    async def _release_hot(self) -> None:
        """Give the hot connection back to the pool (before the pool closes)."""
        conn, self._hot, self._hot_cur = self._hot, None, None
        if conn is not None:
            await self._pool.putconn(conn)

    async def _write(
        self, op: PgWriteOp, keys: Sequence[tuple[str, str]] = (), *, guarded: bool = True
    ) -> Any:
        return await self._committer.submit(op, keys, guarded=guarded)

    async def _mailbox_row(
        self, account: str, mailbox: str, columns: str, joins: str = ""
    ) -> Row | None:
        """``m.id`` first, then ``columns`` of the mailbox; learns the id for the feed."""
        row = await self._fetchone(
            f"SELECT m.id, {columns} FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
            f"{joins} WHERE a.name = %s AND m.name = %s",
            (account, mailbox),
        )
        if row is not None:
            self.feed.remember(int(row[0]), (account, mailbox))
        return row

    # -- the body cache's names (postgres_bodies.py) --------------------------------------

    def _learn_box(
        self, account: str, mailbox: str, box_id: int, validity: int, epoch: int
    ) -> None:
        """Remember which mailbox ``mailbox`` is, as read by a statement that began at
        ``epoch``: a rename or deletion heard of since then may have made it stale."""
        if self._disk_bodies is None or epoch != self._names_epoch:
            return
        boxes = self._names.get(account)
        if boxes is None:
            if self._names_count >= _MAX_NAMES:
                self._names.clear()  # learnt again by the next reads
                self._names_count = 0
            boxes = self._names[account] = {}
        if mailbox not in boxes:
            self._names_count += 1
        boxes[mailbox] = (box_id, validity)
        self.feed.remember(box_id, (account, mailbox))  # so its notifications reach us

    def _forget_boxes(self, account: str | None) -> None:
        """Forget the account's mailbox names (None: every account's)."""
        self._names_epoch += 1
        if account is None:
            self._names.clear()
            self._names_count = 0
        else:
            self._names_count -= len(self._names.pop(account, ()))

    # -- inside a write ----------------------------------------------------------------

    @staticmethod
    async def _one(conn: Conn, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cur = await conn.execute(sql, params)
        return await cur.fetchone()

    @staticmethod
    async def _all(conn: Conn, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()

    async def _find_mailbox(self, conn: Conn, account: str, mailbox: str) -> int | None:
        row = await self._one(conn, _FIND_MAILBOX, (account, mailbox))
        return None if row is None else int(row[0])

    async def _box(self, conn: Conn, account: str, name: str) -> int:
        mailbox_id = await self._find_mailbox(conn, account, name)
        if mailbox_id is None:
            raise MailboxError(f"mailbox {name} does not exist", "NONEXISTENT")
        return mailbox_id

    async def _account_id(self, conn: Conn, account: str, create: bool) -> int | None:
        row = await self._one(conn, "SELECT id FROM accounts WHERE name = %s", (account,))
        if row is not None:
            return int(row[0])
        if not create:
            return None
        row = await self._one(
            conn,
            "INSERT INTO accounts (name, created) VALUES (%s, %s) ON CONFLICT (name)"
            " DO UPDATE SET name = EXCLUDED.name RETURNING id",
            (account, time.time()),
        )
        assert row is not None
        return int(row[0])

    async def _next_uidvalidity(self, conn: Conn) -> int:
        """Strictly increasing across the cluster (one row, locked by its update)."""
        row = await self._one(
            conn,
            "INSERT INTO meta (key, value) VALUES ('uidvalidity', %s) ON CONFLICT (key)"
            " DO UPDATE SET value = greatest(meta.value + 1, EXCLUDED.value) RETURNING value",
            (int(time.time()),),
        )
        assert row is not None
        return int(row[0])

    async def _mailbox_id(self, conn: Conn, account: str, mailbox: str) -> int:
        """The mailbox id, creating the account and the mailbox on first use."""
        found = await self._find_mailbox(conn, account, mailbox)
        if found is not None:
            return found
        account_id = await self._account_id(conn, account, create=True)
        row = await self._one(
            conn,
            "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (%s, %s, %s)"
            " ON CONFLICT (account_id, name) DO NOTHING RETURNING id",
            (account_id, mailbox, await self._next_uidvalidity(conn)),
        )
        if row is None:  # another node created it meanwhile
            return await self._box(conn, account, mailbox)
        await conn.execute(  # created by the server (INBOX, a delivery target): subscribed
            "INSERT INTO subscriptions (account_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (account_id, mailbox),
        )
        return int(row[0])

    async def _new_modseq(self, conn: Conn, mailbox_id: int) -> int:
        row = await self._one(
            conn,
            "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = %s"
            " RETURNING highestmodseq",
            (mailbox_id,),
        )
        assert row is not None
        return int(row[0])

    async def _release_blobs(self, conn: Conn, blob_ids: Sequence[int]) -> None:
        """Drop one reference per id (an id may repeat); delete bodies nobody uses."""
        if not blob_ids:
            return
        counts = Counter(blob_ids)
        ids = sorted(counts)
        # Lock in id order: two writers releasing shared bodies cannot deadlock.
        await conn.execute(
            "SELECT id FROM blobs WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE", (ids,)
        )
        rows = await self._all(
            conn,
            "UPDATE blobs b SET refs = b.refs - t.n FROM unnest(%s::bigint[], %s::int[])"
            " AS t(id, n) WHERE b.id = t.id RETURNING b.id, b.refs",
            (ids, [counts[i] for i in ids]),
        )
        dead = [int(r[0]) for r in rows if r[1] <= 0]
        if dead:
            await conn.execute("DELETE FROM blobs WHERE id = ANY(%s::bigint[])", (dead,))
            for table in ("blob_chunks", "blob_facts", "blob_digests"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE blob_id = ANY(%s::bigint[])", (dead,)
                )

    # -- bodies ------------------------------------------------------------------------

    async def _blob_stream(
        self, blob_id: int, size: int, start: int, end: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Bytes ``start``..``end`` of a chunked body, one stored chunk per query.

        No connection is held between chunks: a slow reader (an IMAP client on a thin
        line) never pins one of the pool's connections.
        """
        stop = size if end is None else min(end, size)
        position = start
        while position < stop:
            seq, offset = divmod(position, CHUNK)
            want = min(CHUNK - offset, stop - position)
            row = await self._fetchone(
                "SELECT substring(data FROM %s FOR %s) FROM blob_chunks"
                " WHERE blob_id = %s AND seq = %s",
                (offset + 1, want, blob_id, seq),
            )
            if row is None or not row[0]:
                raise StoreError(f"message body {blob_id} is gone")
            piece: bytes = row[0]
            position += len(piece)
            for i in range(0, len(piece), chunk_size):
                yield piece[i : i + chunk_size]
            await asyncio.sleep(0)


def drop_nul(text: str) -> str:
    """PostgreSQL text cannot hold NUL; index and token text loses nothing by a space."""
    return text.replace("\x00", " ") if "\x00" in text else text
