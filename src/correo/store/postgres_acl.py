"""Access control lists (RFC 4314) of the PostgreSQL store: the counterpart of
``sqlite_acl.py``, keyed the same way (owner, mailbox UIDVALIDITY, identifier)."""

from __future__ import annotations

from functools import partial
from typing import Final

from correo.store.postgres_base import Conn, PgBase
from correo.store.postgres_commit import PgAfterCommit
from correo.store.postgres_metadata import box_key, sweep_deleted

__all__ = ["ACL_MIGRATION", "PgAclOps"]

ACL_MIGRATION: Final = """
CREATE TABLE acl (
    account text NOT NULL, box bigint NOT NULL, identifier text COLLATE "C" NOT NULL,
    rights text NOT NULL, PRIMARY KEY (account, box, identifier));
CREATE INDEX acl_identifier ON acl (identifier);
"""

_JOINED = (
    " FROM acl JOIN accounts a ON a.name = acl.account"
    " JOIN mailboxes m ON m.account_id = a.id AND m.uidvalidity = acl.box"
)


class PgAclOps(PgBase):
    async def acl_get(self, account: str, mailbox: str) -> dict[str, str]:
        box = await box_key(self._fetchone, account, mailbox)
        rows = await self._fetchall(
            "SELECT identifier, rights FROM acl WHERE account = %s AND box = %s", (account, box)
        )
        return {str(i): str(r) for i, r in rows}

    async def acl_set(self, account: str, mailbox: str, identifier: str, rights: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            box = await box_key(partial(self._one, conn), account, mailbox)
            await sweep_deleted(conn, "acl", account)
            if rights:
                await conn.execute(
                    "INSERT INTO acl (account, box, identifier, rights) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (account, box, identifier)"
                    " DO UPDATE SET rights = EXCLUDED.rights",
                    (account, box, identifier, rights),
                )
            else:
                await conn.execute(
                    "DELETE FROM acl WHERE account = %s AND box = %s AND identifier = %s",
                    (account, box, identifier),
                )
            return None, []

        await self._write(op)

    async def acl_rights(self, account: str, mailbox: str, identifier: str) -> str:
        rows = await self._fetchall(
            "SELECT acl.rights" + _JOINED + " WHERE acl.account = %s AND m.name = %s"
            " AND acl.identifier IN (%s, 'anyone')",
            (account, mailbox, identifier),
        )
        return "".join(sorted(set("".join(str(r[0]) for r in rows))))

    async def acl_shared(self, identifier: str) -> list[tuple[str, str, str]]:
        rows = await self._fetchall(
            "SELECT acl.account, m.name, acl.rights" + _JOINED
            + " WHERE acl.identifier IN (%s, 'anyone') AND acl.account <> %s",
            (identifier, identifier),
        )  # fmt: skip
        merged: dict[tuple[str, str], set[str]] = {}
        for owner, name, rights in rows:
            merged.setdefault((str(owner), str(name)), set()).update(str(rights))
        return sorted((o, n, "".join(sorted(r))) for (o, n), r in merged.items())
