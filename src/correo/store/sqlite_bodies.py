"""Bodies of many messages at once (:meth:`MailStore.read_inlines`) for SqliteStore.

One read for a whole group of small messages instead of one per message; file-backed
bodies are left out (streamed as before). The caller bounds the group in bytes (a few
MB: a few ms from the mapped database), so it is read on the event loop's thread like
other small indexed reads: a hop to a reader thread and back costs two wake-ups per
group, which on a busy machine wait for a core each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from correo.store.sqlite_base import rows_for_uids

if TYPE_CHECKING:
    from typing import Any

__all__ = ["BodyOps"]


class BodyOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        def _read_now(self, fn: Any, *args: Any) -> Any: ...
        def _reader(self) -> sqlite3.Connection: ...

    async def read_inlines(
        self, account: str, mailbox: str, uids: Sequence[int]
    ) -> dict[int, bytes]:
        def read() -> dict[int, bytes]:
            rows = rows_for_uids(
                self._reader(),
                account,
                mailbox,
                uids,
                "SELECT m.uid, b.data FROM messages m JOIN blobs b ON b.id = m.blob_id"
                " WHERE m.mailbox_id = ? AND m.uid IN ({marks}) AND b.path IS NULL",
            )
            return {int(uid): b"" if data is None else bytes(data) for uid, data in rows}

        found: dict[int, bytes] = self._read_now(read)
        return found
