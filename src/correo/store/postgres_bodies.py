"""Bodies of many messages at once, for the PostgreSQL store: the counterpart of
``sqlite_bodies.py``.

A FETCH of bodies for many messages is, read one by one, one network round trip per
message: the round trips, not the bytes, are what a FETCH of 1,000 small messages costs.
Here the inline (small) bodies of a whole group come in one query; big (chunked) bodies
are left out and streamed as before. The caller bounds the group in bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from correo.store.postgres_base import PgBase

__all__ = ["PgBodyOps"]


class PgBodyOps(PgBase):
    async def read_inlines(
        self, account: str, mailbox: str, uids: Sequence[int]
    ) -> dict[int, bytes]:
        if not uids:
            return {}
        rows = await self._fetchall(
            "SELECT m.uid, b.data FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id"
            " JOIN accounts a ON a.id = x.account_id JOIN blobs b ON b.id = m.blob_id"
            " WHERE a.name = %s AND x.name = %s AND m.uid = ANY(%s::bigint[])"
            " AND b.data IS NOT NULL",
            (account, mailbox, list(uids)),
        )
        return {int(uid): bytes(data) for uid, data in rows}
