"""Access control lists (RFC 4314) of :class:`SqliteStore`: who may do what in a mailbox.

A mixin like ``sqlite_metadata.py``, whose mailbox key it shares.  Entries are keyed by
the owner, the mailbox's UIDVALIDITY (a RENAME keeps it, a new mailbox never shares it,
so the rights follow the mailbox and end with it) and the identifier (an account name
or ``anyone``).  Every read joins the live mailbox, so rows of a deleted mailbox grant
nothing.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from correo.store.sqlite_metadata import box_key, sweep_deleted

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["ACL_ACCOUNT_TABLES", "ACL_SCHEMA", "AclOps"]

ACL_SCHEMA = """
CREATE TABLE IF NOT EXISTS acl (
    account TEXT NOT NULL, box INTEGER NOT NULL, identifier TEXT NOT NULL,
    rights TEXT NOT NULL, PRIMARY KEY (account, box, identifier)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS acl_identifier ON acl (identifier);
"""

#: Removed (or set aside) with the owner's account.
ACL_ACCOUNT_TABLES = ("acl",)


class AclOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _reader(self) -> sqlite3.Connection: ...

    async def acl_get(self, account: str, mailbox: str) -> dict[str, str]:
        def read() -> dict[str, str]:
            conn = self._reader()
            box = box_key(conn, account, mailbox)
            rows = conn.execute(
                "SELECT identifier, rights FROM acl WHERE account = ? AND box = ?",
                (account, box),
            )
            return {str(i): str(r) for i, r in rows}

        found: dict[str, str] = await self._read(read)
        return found

    async def acl_set(self, account: str, mailbox: str, identifier: str, rights: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            box = box_key(conn, account, mailbox)
            sweep_deleted(conn, "acl", account)
            if rights:
                conn.execute(
                    "INSERT OR REPLACE INTO acl (account, box, identifier, rights)"
                    " VALUES (?, ?, ?, ?)",
                    (account, box, identifier, rights),
                )
            else:
                conn.execute(
                    "DELETE FROM acl WHERE account = ? AND box = ? AND identifier = ?",
                    (account, box, identifier),
                )
            return None, []

        await self._write(op)

    async def acl_rights(self, account: str, mailbox: str, identifier: str) -> str:
        def read() -> str:
            rows = self._reader().execute(
                "SELECT acl.rights FROM acl JOIN accounts a ON a.name = acl.account"
                " JOIN mailboxes m ON m.account_id = a.id AND m.uidvalidity = acl.box"
                " WHERE acl.account = ? AND m.name = ? AND acl.identifier IN (?, 'anyone')",
                (account, mailbox, identifier),
            )
            return "".join(sorted(set("".join(str(r[0]) for r in rows))))

        found: str = await self._read(read)
        return found

    async def acl_shared(self, identifier: str) -> list[tuple[str, str, str]]:
        def read() -> list[tuple[str, str, str]]:
            rows = self._reader().execute(
                "SELECT acl.account, m.name, acl.rights FROM acl"
                " JOIN accounts a ON a.name = acl.account"
                " JOIN mailboxes m ON m.account_id = a.id AND m.uidvalidity = acl.box"
                " WHERE acl.identifier IN (?, 'anyone') AND acl.account <> ?",
                (identifier, identifier),
            )
            merged: dict[tuple[str, str], set[str]] = {}
            for owner, name, rights in rows:
                merged.setdefault((str(owner), str(name)), set()).update(str(rights))
            return sorted((o, n, "".join(sorted(r))) for (o, n), r in merged.items())

        found: list[tuple[str, str, str]] = await self._read(read)
        return found
