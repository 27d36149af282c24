"""Web sessions of :class:`SqliteStore`: the webmail's logins (``correo.web.session_auth``).

A mixin like ``sqlite_tls.py``.  A row is keyed by a digest of the session's secret, never
the secret itself, so a copy of mail.db opens no session; it lives in mail.db so a login
survives a restart.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["WEB_SESSION_SCHEMA", "WebSessionOps"]

WEB_SESSION_SCHEMA = """
CREATE TABLE IF NOT EXISTS web_sessions (
    key TEXT PRIMARY KEY, account TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS web_sessions_expires ON web_sessions (expires);
"""


class WebSessionOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        def _read_now(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _reader(self) -> sqlite3.Connection: ...

    async def web_session_put(self, key: str, account: str, expires: float) -> None:
        now = time.time()

        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            conn.execute("DELETE FROM web_sessions WHERE expires < ?", (now,))
            conn.execute(
                "INSERT OR REPLACE INTO web_sessions (key, account, expires) VALUES (?, ?, ?)",
                (key, account, expires),
            )
            return None, []

        await self._write(op)

    async def web_session_get(self, key: str) -> tuple[str, float] | None:
        def read() -> tuple[str, float] | None:
            row = (
                self._reader()
                .execute("SELECT account, expires FROM web_sessions WHERE key=?", (key,))
                .fetchone()
            )
            if row is None or float(row[1]) < time.time():
                return None
            return str(row[0]), float(row[1])

        found: tuple[str, float] | None = self._read_now(read)  # one indexed row
        return found

    async def web_session_delete(self, key: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            conn.execute("DELETE FROM web_sessions WHERE key=?", (key,))
            return None, []

        await self._write(op)

    async def web_sessions_end(self, account: str, keep: str = "") -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            cur = conn.execute(
                "DELETE FROM web_sessions WHERE account=? AND key<>?", (account, keep)
            )
            return cur.rowcount, []

        ended: int = await self._write(op)
        return ended
