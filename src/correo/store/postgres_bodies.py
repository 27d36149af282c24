"""Reading message bodies from the PostgreSQL store, through the node's body cache.

A FETCH of bodies for many messages is, read one by one, one network round trip per
message: the round trips, not the bytes, are what a FETCH of 1,000 small messages costs.
Here the inline (small) bodies of a whole group come in one query; big (chunked) bodies
are left out and streamed as before. The caller bounds the group in bytes.

Small bodies are also kept in the node's body cache on disk (``bodycache.py``): written
when this node delivers or APPENDs a message, and when a read misses.  The cache's key
(mailbox id, UIDVALIDITY, UID) comes from the store's own resolution of the account's
mailbox name (``PgBase._names``, learnt from the database), never from client input, so
a session reaches only the mailboxes it could read from the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from correo.store.api import StoreError
from correo.store.bodycache import MAX_BODY
from correo.store.exists import exists_memo
from correo.store.postgres_base import PgBase
from correo.store.postgres_commit import PgAfterCommit

__all__ = ["PgBodyOps"]

_BODY = (
    " FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id"
    " JOIN accounts a ON a.id = x.account_id JOIN blobs b ON b.id = m.blob_id"
    " WHERE a.name = %s AND x.name = %s AND m.uid = %s"
)


class PgBodyOps(PgBase):
    def _cached(self, account: str, mailbox: str, uid: int) -> bytes | None:
        disk = self._disk_bodies
        if disk is None:
            return None
        box = self._names.get(account, {}).get(mailbox)
        return None if box is None else disk.get((box[0], box[1], uid))

    def _fill(self, box_id: int, validity: int, uid: int, data: bytes | None) -> None:
        if self._disk_bodies is not None and data is not None and len(data) <= MAX_BODY:
            self._disk_bodies.put((box_id, validity, uid), data)

    def _keep_new(
        self, placed: Sequence[tuple[int, int, int]], data: bytes | None
    ) -> PgAfterCommit:
        """After a delivery's commit: its small body into the cache, under each target's
        (mailbox id, UIDVALIDITY, UID), all three read by the commit's own statement (so
        no session need have had the mailbox open first: a client that APPENDs, then
        reads, finds what it wrote on this node).  Each mailbox's
        remembered message count moves on too (``exists.py``), so the EXISTS that
        follows an APPEND (the APPENDUID's state) costs no ``count(*)``."""

        def keep() -> None:
            memo = exists_memo(self)
            for box_id, uid, _validity in placed:  # in UID order, as allocated
                memo.added(box_id, uid)
            if self._disk_bodies is None or data is None:
                return
            for box_id, uid, validity in placed:
                self._fill(box_id, validity, uid, data)

        return keep

    async def read_inline(self, account: str, mailbox: str, uid: int) -> bytes | None:
        hit = self._cached(account, mailbox, uid)
        if hit is not None:
            return hit
        epoch = self._names_epoch
        row = await self._fetchone(
            "SELECT b.data, x.id, x.uidvalidity" + _BODY, (account, mailbox, uid)
        )
        if row is None:
            raise StoreError(f"message {uid} of {account}/{mailbox} does not exist")
        data: bytes | None = row[0]
        self._learn_box(account, mailbox, int(row[1]), int(row[2]), epoch)
        self._fill(int(row[1]), int(row[2]), uid, data)
        return data

    async def read_inlines(
        self, account: str, mailbox: str, uids: Sequence[int]
    ) -> dict[int, bytes]:
        if not uids:
            return {}
        found: dict[int, bytes] = {}
        wanted: list[int] = []
        for uid in uids:
            hit = self._cached(account, mailbox, uid)
            if hit is not None:
                found[uid] = hit
            else:
                wanted.append(uid)
        if not wanted:
            return found
        epoch = self._names_epoch
        rows = await self._fetchall(
            "SELECT m.uid, b.data, x.id, x.uidvalidity FROM messages m"
            " JOIN mailboxes x ON x.id = m.mailbox_id"
            " JOIN accounts a ON a.id = x.account_id JOIN blobs b ON b.id = m.blob_id"
            " WHERE a.name = %s AND x.name = %s AND m.uid = ANY(%s::bigint[])"
            " AND b.data IS NOT NULL",
            (account, mailbox, wanted),
        )
        for uid, data, box_id, validity in rows:
            found[int(uid)] = body = bytes(data)
            self._fill(int(box_id), int(validity), int(uid), body)
        if rows:
            self._learn_box(account, mailbox, int(rows[0][2]), int(rows[0][3]), epoch)
        return found

    async def read_message(
        self,
        account: str,
        mailbox: str,
        uid: int,
        chunk_size: int = 65536,
        start: int = 0,
        end: int | None = None,
    ) -> AsyncIterator[bytes]:
        data = self._cached(account, mailbox, uid)
        if data is not None:
            data = data[start:end]
        else:
            span = 2**31 - 1 if end is None else max(0, end - start)
            epoch = self._names_epoch
            # an inline body yields only the range asked for (a header: its first bytes)
            row = await self._fetchone(
                "SELECT b.id, b.size, substring(b.data FROM %s FOR %s), x.id, x.uidvalidity"
                + _BODY,
                (start + 1, span, account, mailbox, uid),
            )
            if row is None:
                raise StoreError(f"message {uid} of {account}/{mailbox} does not exist")
            data = row[2]
            self._learn_box(account, mailbox, int(row[3]), int(row[4]), epoch)
            if start == 0 and data is not None and len(data) == int(row[1]):  # all of it
                self._fill(int(row[3]), int(row[4]), uid, data)
            if data is None:  # a big body: streamed in its stored chunks
                async for chunk in self._blob_stream(
                    int(row[0]), int(row[1]), start, end, chunk_size
                ):
                    yield chunk
                return
        for i in range(0, len(data), chunk_size):
            yield data[i : i + chunk_size]
