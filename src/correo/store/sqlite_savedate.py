"""Save dates (RFC 8514 SAVEDATE) of :class:`SqliteStore`: when each message copy was
saved into its mailbox.

A mixin like ``sqlite_metadata.py``.  The time is written by a trigger on every insert
into ``messages`` (delivery, APPEND, COPY, MOVE, import), so no write path has to know
about it; messages stored before the column existed have none (SAVEDATE NIL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from correo.store.sqlite_base import rows_for_uids

if TYPE_CHECKING:
    from typing import Any

__all__ = ["SaveDateOps", "prepare_save_dates"]

_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS messages_saved AFTER INSERT ON messages
    WHEN NEW.saved IS NULL BEGIN
    UPDATE messages SET saved = (julianday('now') - 2440587.5) * 86400.0
    WHERE mailbox_id = NEW.mailbox_id AND uid = NEW.uid;
END;
"""


def prepare_save_dates(conn: sqlite3.Connection) -> None:
    """The migration: the ``saved`` column (NULL for messages already stored) and its
    trigger; idempotent, run when the store opens."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    if "saved" not in columns:
        conn.execute("ALTER TABLE messages ADD COLUMN saved REAL")
    conn.executescript(_TRIGGER)


class SaveDateOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        async def _read(self, fn: Any, *args: Any) -> Any: ...
        def _reader(self) -> sqlite3.Connection: ...

    async def save_dates(self, account: str, mailbox: str, uids: Sequence[int]) -> dict[int, float]:
        def read() -> dict[int, float]:
            rows = rows_for_uids(
                self._reader(),
                account,
                mailbox,
                uids,
                "SELECT uid, saved FROM messages WHERE mailbox_id = ? AND uid IN ({marks})"
                " AND saved IS NOT NULL",
            )
            return {int(uid): float(saved) for uid, saved in rows}

        found: dict[int, float] = await self._read(read)
        return found
