"""Bodies of many messages at once (:meth:`MailStore.read_inlines`) for SqliteStore.

One read on the reader thread for a whole group of small messages instead of one thread
hop per message; file-backed bodies are left out (streamed as before). The caller
bounds the group in bytes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["BodyOps"]

_CHUNK = 500  # UIDs per statement


class BodyOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        async def _read(self, fn: Any, *args: Any) -> Any: ...
        def _reader(self) -> sqlite3.Connection: ...

    async def read_inlines(
        self, account: str, mailbox: str, uids: Sequence[int]
    ) -> dict[int, bytes]:
        wanted = list(uids)

        def read() -> dict[int, bytes]:
            conn = self._reader()
            row = conn.execute(
                "SELECT m.id FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
                " WHERE a.name = ? AND m.name = ?",
                (account, mailbox),
            ).fetchone()
            if row is None:
                return {}
            out: dict[int, bytes] = {}
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for uid, data in conn.execute(
                    "SELECT m.uid, b.data FROM messages m JOIN blobs b ON b.id = m.blob_id"
                    f" WHERE m.mailbox_id = ? AND m.uid IN ({marks}) AND b.path IS NULL",
                    (row[0], *chunk),
                ):
                    out[int(uid)] = b"" if data is None else bytes(data)
            return out

        found: dict[int, bytes] = await self._read(read)
        return found
