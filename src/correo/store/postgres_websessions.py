"""Web sessions of the PostgreSQL store: the counterpart of ``sqlite_websessions.py``.

Shared by every node, so a login made on one node is good on all of them.
"""

from __future__ import annotations

import time

from correo.store.postgres_base import Conn, PgBase
from correo.store.postgres_commit import PgAfterCommit

__all__ = ["PgWebSessionOps"]


class PgWebSessionOps(PgBase):
    async def web_session_put(self, key: str, account: str, expires: float) -> None:
        now = time.time()

        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute("DELETE FROM web_sessions WHERE expires < %s", (now,))
            await conn.execute(
                "INSERT INTO web_sessions (key, account, expires) VALUES (%s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET account = EXCLUDED.account,"
                " expires = EXCLUDED.expires",
                (key, account, expires),
            )
            return None, []

        await self._write(op)

    async def web_session_get(self, key: str) -> tuple[str, float] | None:
        row = await self._fetchone(
            "SELECT account, expires FROM web_sessions WHERE key = %s AND expires >= %s",
            (key, time.time()),
        )
        return None if row is None else (str(row[0]), float(row[1]))

    async def web_session_delete(self, key: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute("DELETE FROM web_sessions WHERE key = %s", (key,))
            return None, []

        await self._write(op)

    async def web_sessions_end(self, account: str, keep: str = "") -> int:
        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            cur = await conn.execute(
                "DELETE FROM web_sessions WHERE account = %s AND key <> %s", (account, keep)
            )
            return cur.rowcount, []

        ended: int = await self._write(op)
        return ended
