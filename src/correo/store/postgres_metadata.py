"""METADATA (RFC 5464) of the PostgreSQL store: the counterpart of ``sqlite_metadata.py``.

Keyed the same way (account, mailbox UIDVALIDITY or 0 for the server level, entry).
The entry limit is checked under a per-account transaction lock, so two sessions
setting entries at once cannot pass it together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Final, Literal

from correo.store.api import MailboxError
from correo.store.postgres_base import Conn, PgBase, Row
from correo.store.postgres_commit import PgAfterCommit

__all__ = ["METADATA_MIGRATION", "PgMetadataOps", "box_key", "sweep_deleted"]

METADATA_MIGRATION: Final = """
CREATE TABLE annotations (
    account text NOT NULL, box bigint NOT NULL, entry text COLLATE "C" NOT NULL,
    value bytea NOT NULL, PRIMARY KEY (account, box, entry));
"""

_BOX = (
    "SELECT m.uidvalidity FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
    " WHERE a.name = %s AND m.name = %s"
)


async def box_key(
    fetchone: Callable[[str, Sequence[Any]], Awaitable[Row | None]],
    account: str,
    mailbox: str | None,
) -> int:
    """The key of a mailbox's rows, here and in ``acl``: its UIDVALIDITY (0, the account's
    own), read by ``fetchone`` (pooled, or a transaction's connection); MailboxError
    NONEXISTENT when there is no such mailbox."""
    if mailbox is None:
        return 0
    row = await fetchone(_BOX, (account, mailbox))
    if row is None:
        raise MailboxError("No such mailbox", "NONEXISTENT")
    return int(row[0])


async def sweep_deleted(conn: Conn, table: Literal["acl", "annotations"], account: str) -> None:
    """Drop the account's rows of mailboxes deleted since (no read reaches them)."""
    await conn.execute(
        f"DELETE FROM {table} WHERE account = %s AND box <> 0 AND box NOT IN"
        " (SELECT m.uidvalidity FROM mailboxes m JOIN accounts a"
        " ON a.id = m.account_id WHERE a.name = %s)",
        (account, account),
    )


class PgMetadataOps(PgBase):
    async def metadata_get(
        self, account: str, mailbox: str | None, entries: Sequence[str]
    ) -> dict[str, bytes]:
        box = await box_key(self._fetchone, account, mailbox)
        out: dict[str, bytes] = {}
        for entry in entries:
            rows = await self._fetchall(
                "SELECT entry, value FROM annotations WHERE account = %s AND box = %s"
                " AND (entry = %s OR (entry > %s AND entry < %s))",
                (account, box, entry, entry + "/", entry + "0"),
            )
            out.update((str(name), bytes(value)) for name, value in rows)
        return out

    async def metadata_set(
        self,
        account: str,
        mailbox: str | None,
        values: Mapping[str, bytes | None],
        *,
        max_entries: int = 0,
    ) -> None:
        items = list(values.items())

        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('annotations:' || %s, 0))",
                (account,),
            )
            box = await box_key(partial(self._one, conn), account, mailbox)
            await sweep_deleted(conn, "annotations", account)
            for entry, value in items:
                if value is None:
                    await conn.execute(
                        "DELETE FROM annotations WHERE account = %s AND box = %s AND entry = %s",
                        (account, box, entry),
                    )
                else:
                    await conn.execute(
                        "INSERT INTO annotations (account, box, entry, value)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (account, box, entry)"
                        " DO UPDATE SET value = EXCLUDED.value",
                        (account, box, entry, value),
                    )
            if max_entries:
                row = await self._one(
                    conn, "SELECT count(*) FROM annotations WHERE account = %s", (account,)
                )
                if row is not None and int(row[0]) > max_entries:  # RFC 5464 §4.3
                    raise MailboxError("Too many annotations", "METADATA TOOMANY")
            return None, []

        await self._write(op)
