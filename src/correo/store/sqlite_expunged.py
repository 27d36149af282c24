"""What an expunged message was, for JMAP's ``Email/changes`` across restarts.

``expunged`` records the UID and MODSEQ of every removed message (QRESYNC); JMAP names
an Email by the digest of its octets, so it needs the digest of what the UID held as
well.  ``expunged_digests`` keeps it, one row per ``expunged`` row, filled by a trigger
when a message row is deleted (every path: EXPUNGE, MOVE, Email/set), from the digest
already recorded for its body (JMAP records the digest of every message it lists, so a
message JMAP never saw has none, and needs none: no client can hold its id).  Rows go
with their mailbox.  A trigger rather than a column of ``expunged``: that row is written
after the message row is gone, by ``INSERT OR REPLACE``, which would drop the column.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from correo.store.api import StoreError

if TYPE_CHECKING:
    from typing import Any

__all__ = ["EXPUNGED_SCHEMA", "ExpungedOps"]

EXPUNGED_SCHEMA = """
CREATE TABLE IF NOT EXISTS expunged_digests (
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS expunged_digest_keep AFTER DELETE ON messages
    BEGIN INSERT OR REPLACE INTO expunged_digests (mailbox_id, uid, digest)
        SELECT old.mailbox_id, old.uid, digest FROM blob_digests WHERE blob_id = old.blob_id;
    END;
CREATE TRIGGER IF NOT EXISTS expunged_digest_gc AFTER DELETE ON mailboxes
    BEGIN DELETE FROM expunged_digests WHERE mailbox_id = old.id; END;
"""


class ExpungedOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        def _find_mailbox(
            self, conn: sqlite3.Connection, account: str, mailbox: str
        ) -> int | None: ...

    async def expunged_digests(self, account: str, mailbox: str, modseq: int) -> dict[int, str]:
        def read() -> dict[int, str]:
            conn = self._reader()
            mailbox_id = self._find_mailbox(conn, account, mailbox)
            if mailbox_id is None:
                return {}
            rows = conn.execute(
                "SELECT e.uid, d.digest FROM expunged e JOIN expunged_digests d"
                " ON d.mailbox_id = e.mailbox_id AND d.uid = e.uid"
                " WHERE e.mailbox_id=? AND e.modseq > ?",
                (mailbox_id, modseq),
            )
            return {int(uid): str(digest) for uid, digest in rows}

        try:
            result: dict[int, str] = await self._read(read)
        except sqlite3.Error as exc:
            raise StoreError(f"could not read expunged messages: {exc}") from exc
        return result
