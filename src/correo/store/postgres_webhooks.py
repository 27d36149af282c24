"""Webhook calls of the PostgreSQL store: the counterpart of ``sqlite_webhooks.py``.

Every node's sender asks :meth:`webhook_due` for work; the calls it returns are leased
to this node (``lease_until``, ``lease_owner``) by the statement that finds them, with
``FOR UPDATE SKIP LOCKED``, so one node makes each attempt.  A node that dies
mid-attempt leaves a lease that runs out, and another node (or this one, restarted:
its own leases are its to take again) makes the attempt.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence

from correo.store.api import WebhookCall, WebhookEntry
from correo.store.postgres_base import Conn, PgBase
from correo.store.postgres_commit import PgAfterCommit
from correo.store.sqlite_webhooks import COLUMNS, row_to_entry

__all__ = ["PgWebhookOps"]

_LIST_COLUMNS = COLUMNS.replace("payload", "''::bytea")


class PgWebhookOps(PgBase):
    async def webhook_add(self, calls: Sequence[WebhookCall], now: float) -> list[int]:
        async def op(conn: Conn) -> tuple[list[int], list[PgAfterCommit]]:
            rows = await self._all(
                conn,
                "INSERT INTO webhook_calls (key, url, event, payload, created, next_attempt)"
                " SELECT t.key, t.url, t.event, t.payload, %s, %s FROM unnest("
                "%b::text[], %b::text[], %b::text[], %b::bytea[]) WITH ORDINALITY"  # binary: no hex
                " AS t(key, url, event, payload, n) ORDER BY t.n RETURNING id",
                (
                    now,
                    now,
                    [c.key for c in calls],
                    [c.url for c in calls],
                    [c.event for c in calls],
                    [c.payload for c in calls],
                ),
            )
            return [int(r[0]) for r in rows], []

        if not calls:
            return []
        result: list[int] = await self._write(op)
        return result

    async def webhook_due(
        self, now: float, limit: int, exclude: Collection[int] = (), lease: float = 300.0
    ) -> list[WebhookEntry]:
        owner = self.lease_owner

        async def op(conn: Conn) -> tuple[list[WebhookEntry], list[PgAfterCommit]]:
            rows = await self._all(
                conn,
                "WITH free AS (SELECT id FROM webhook_calls WHERE next_attempt <= %s"
                " AND (lease_until <= %s OR lease_owner = %s) AND NOT id = ANY(%s::bigint[])"
                " ORDER BY next_attempt, id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE webhook_calls w SET lease_until = %s, lease_owner = %s FROM free"
                f" WHERE w.id = free.id RETURNING {_prefixed('w.')}",
                (now, now, owner, list(exclude), limit, now + lease, owner),
            )
            entries = [row_to_entry(r) for r in rows]
            entries.sort(key=lambda e: (e.next_attempt, e.id))
            return entries, []

        result: list[WebhookEntry] = await self._write(op)
        return result

    async def webhook_done(self, webhook_id: int) -> None:
        await self.webhook_delete(webhook_id)

    async def webhook_failed(self, webhook_id: int, next_attempt: float, error: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute(
                "UPDATE webhook_calls SET attempts = attempts + 1, next_attempt = %s,"
                " last_error = %s, lease_until = 0, lease_owner = NULL WHERE id = %s",
                (next_attempt, error[:500].replace("\x00", " "), webhook_id),
            )
            return None, []

        await self._write(op)

    async def webhook_list(self) -> list[WebhookEntry]:
        rows = await self._fetchall(f"SELECT {_LIST_COLUMNS} FROM webhook_calls ORDER BY id")
        return [row_to_entry(r) for r in rows]

    async def webhook_get(self, webhook_id: int) -> WebhookEntry | None:
        row = await self._fetchone(
            f"SELECT {COLUMNS} FROM webhook_calls WHERE id = %s", (webhook_id,)
        )
        return None if row is None else row_to_entry(row)

    async def webhook_retry(self, webhook_id: int | None, now: float) -> int:
        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            if webhook_id is None:
                cur = await conn.execute("UPDATE webhook_calls SET next_attempt = %s", (now,))
            else:
                cur = await conn.execute(
                    "UPDATE webhook_calls SET next_attempt = %s WHERE id = %s", (now, webhook_id)
                )
            return cur.rowcount, []

        result: int = await self._write(op)
        return result

    async def webhook_delete(self, webhook_id: int) -> bool:
        async def op(conn: Conn) -> tuple[bool, list[PgAfterCommit]]:
            cur = await conn.execute("DELETE FROM webhook_calls WHERE id = %s", (webhook_id,))
            return cur.rowcount > 0, []

        result: bool = await self._write(op)
        return result

    async def webhook_next_due(self) -> float | None:
        row = await self._fetchone(
            "SELECT min(greatest(next_attempt, lease_until)) FROM webhook_calls"
        )
        return None if row is None or row[0] is None else float(row[0])

    async def webhook_key(self) -> bytes:
        row = await self._fetchone("SELECT key FROM webhook_keys WHERE name = 'links'")
        if row is not None:
            return bytes(row[0])

        async def op(conn: Conn) -> tuple[bytes, list[PgAfterCommit]]:
            await conn.execute(
                "INSERT INTO webhook_keys (name, key) VALUES ('links', %s)"
                " ON CONFLICT (name) DO NOTHING",
                (secrets.token_bytes(32),),
            )
            found = await self._one(conn, "SELECT key FROM webhook_keys WHERE name = 'links'")
            assert found is not None
            return bytes(found[0]), []

        result: bytes = await self._write(op)
        return result


def _prefixed(prefix: str) -> str:
    return ", ".join(prefix + c.strip() for c in COLUMNS.split(","))
