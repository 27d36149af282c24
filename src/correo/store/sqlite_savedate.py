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
_CHUNK = 500  # UIDs per query (SQLite's bound on parameters is far above)


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
        wanted = list(uids)

        def read() -> dict[int, float]:
            conn = self._reader()
            row = conn.execute(
                "SELECT m.id FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
                " WHERE a.name = ? AND m.name = ?",
                (account, mailbox),
            ).fetchone()
            if row is None:
                return {}
            out: dict[int, float] = {}
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for uid, saved in conn.execute(
                    f"SELECT uid, saved FROM messages WHERE mailbox_id = ? AND uid IN ({marks})"
                    " AND saved IS NOT NULL",
                    (row[0], *chunk),
                ):
                    out[int(uid)] = float(saved)
            return out

        found: dict[int, float] = await self._read(read)
        return found
