"""Webhook calls of :class:`SqliteStore`: the durable queue behind ``correo.webhooks``.

A mixin like ``sqlite_tls.py``.  Rows live in mail.db, so a call queued by the commit
that files a message (or records a delivery) survives ``kill -9`` with it.  One process
owns an SQLite store, so its leases only keep two attempts of one call in that process
apart; ids are never reused (AUTOINCREMENT), as ``correo queue`` shows them.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from correo.store.api import WebhookCall, WebhookEntry

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["WEBHOOK_SCHEMA", "WebhookOps", "row_to_entry"]

WEBHOOK_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, url TEXT NOT NULL,
    event TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '', lease_until REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS webhook_calls_due ON webhook_calls (next_attempt);
CREATE TABLE IF NOT EXISTS webhook_keys (name TEXT PRIMARY KEY, key BLOB NOT NULL);
"""

COLUMNS = "id, key, url, event, payload, created, attempts, next_attempt, last_error, lease_until"
#: The listing leaves payloads out: they can be tens of kilobytes each.
LIST_COLUMNS = COLUMNS.replace("payload", "x''")


def row_to_entry(row: tuple[Any, ...]) -> WebhookEntry:
    """A row in :data:`COLUMNS` order as the API's record."""
    ident, key, url, event, payload, created, attempts, due, error, lease = row
    return WebhookEntry(
        int(ident),
        str(key),
        str(url),
        str(event),
        bytes(payload),
        float(created),
        int(attempts),
        float(due),
        str(error),
        float(lease),
    )


class WebhookOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...

    async def webhook_add(self, calls: Sequence[WebhookCall], now: float) -> list[int]:
        def op(conn: sqlite3.Connection) -> tuple[list[int], list[AfterCommit]]:
            ids: list[int] = []
            for c in calls:
                cur = conn.execute(
                    "INSERT INTO webhook_calls (key, url, event, payload, created, next_attempt)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (c.key, c.url, c.event, c.payload, now, now),
                )
                ids.append(int(cur.lastrowid or 0))
            return ids, []

        if not calls:
            return []
        result: list[int] = await self._write(op)
        return result

    async def webhook_due(
        self, now: float, limit: int, exclude: Collection[int] = (), lease: float = 300.0
    ) -> list[WebhookEntry]:
        skip = set(exclude)

        def op(conn: sqlite3.Connection) -> tuple[list[WebhookEntry], list[AfterCommit]]:
            # One process owns the store: a lease left by an earlier run is ours to take.
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM webhook_calls WHERE next_attempt <= ?"
                " ORDER BY next_attempt, id LIMIT ?",
                (now, limit + len(skip)),
            ).fetchall()
            taken = [row_to_entry(r) for r in rows if int(r[0]) not in skip][:limit]
            conn.executemany(
                "UPDATE webhook_calls SET lease_until = ? WHERE id = ?",
                [(now + lease, e.id) for e in taken],
            )
            return taken, []

        result: list[WebhookEntry] = await self._write(op)
        return result

    async def webhook_done(self, webhook_id: int) -> None:
        await self.webhook_delete(webhook_id)

    async def webhook_failed(self, webhook_id: int, next_attempt: float, error: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            conn.execute(
                "UPDATE webhook_calls SET attempts = attempts + 1, next_attempt = ?,"
                " last_error = ?, lease_until = 0 WHERE id = ?",
                (next_attempt, error[:500], webhook_id),
            )
            return None, []

        await self._write(op)

    async def webhook_list(self) -> list[WebhookEntry]:
        def read() -> list[WebhookEntry]:
            rows = self._reader().execute(f"SELECT {LIST_COLUMNS} FROM webhook_calls ORDER BY id")
            return [row_to_entry(r) for r in rows]

        result: list[WebhookEntry] = await self._read(read)
        return result

    async def webhook_get(self, webhook_id: int) -> WebhookEntry | None:
        def read() -> WebhookEntry | None:
            row = (
                self._reader()
                .execute(f"SELECT {COLUMNS} FROM webhook_calls WHERE id = ?", (webhook_id,))
                .fetchone()
            )
            return None if row is None else row_to_entry(row)

        result: WebhookEntry | None = await self._read(read)
        return result

    async def webhook_retry(self, webhook_id: int | None, now: float) -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            if webhook_id is None:
                cur = conn.execute("UPDATE webhook_calls SET next_attempt = ?", (now,))
            else:
                cur = conn.execute(
                    "UPDATE webhook_calls SET next_attempt = ? WHERE id = ?", (now, webhook_id)
                )
            return cur.rowcount, []

        result: int = await self._write(op)
        return result

    async def webhook_delete(self, webhook_id: int) -> bool:
        def op(conn: sqlite3.Connection) -> tuple[bool, list[AfterCommit]]:
            cur = conn.execute("DELETE FROM webhook_calls WHERE id = ?", (webhook_id,))
            return cur.rowcount > 0, []

        result: bool = await self._write(op)
        return result

    async def webhook_next_due(self) -> float | None:
        def read() -> float | None:
            row = (
                self._reader()
                .execute("SELECT min(max(next_attempt, lease_until)) FROM webhook_calls")
                .fetchone()
            )
            return None if row is None or row[0] is None else float(row[0])

        result: float | None = await self._read(read)
        return result

    async def webhook_key(self) -> bytes:
        fresh = secrets.token_bytes(32)

        def op(conn: sqlite3.Connection) -> tuple[bytes, list[AfterCommit]]:
            conn.execute(
                "INSERT OR IGNORE INTO webhook_keys (name, key) VALUES ('links', ?)", (fresh,)
            )
            row = conn.execute("SELECT key FROM webhook_keys WHERE name = 'links'").fetchone()
            return bytes(row[0]), []

        result: bytes = await self._write(op)
        return result
