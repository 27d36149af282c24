"""METADATA (RFC 5464) of :class:`SqliteStore`: annotations of accounts and mailboxes.

A mixin like ``sqlite_websessions.py``.  A mailbox's entries are keyed by its
UIDVALIDITY, which a RENAME keeps and a new mailbox never shares, so they follow the
mailbox and end with it: rows of a deleted mailbox are unreachable and are swept by
the account's next write.  The server (account) level is box 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from correo.store.api import MailboxError

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["METADATA_ACCOUNT_TABLES", "METADATA_SCHEMA", "MetadataOps", "box_key", "sweep_deleted"]

METADATA_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    account TEXT NOT NULL, box INTEGER NOT NULL, entry TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (account, box, entry)) WITHOUT ROWID;
"""

#: Removed (or set aside) with the account, keyed by its name like the Sieve tables.
METADATA_ACCOUNT_TABLES = ("annotations",)

_BOX = (
    "SELECT m.uidvalidity FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
    " WHERE a.name = ? AND m.name = ?"
)
_LIVE = (
    "box = 0 OR box IN (SELECT m.uidvalidity FROM mailboxes m"
    " JOIN accounts a ON a.id = m.account_id WHERE a.name = ?)"
)


def box_key(conn: sqlite3.Connection, account: str, mailbox: str | None) -> int:
    """The key of a mailbox's rows, here and in the ACL table: its UIDVALIDITY (0, the
    account's own); MailboxError NONEXISTENT when there is no such mailbox."""
    if mailbox is None:
        return 0
    row = conn.execute(_BOX, (account, mailbox)).fetchone()
    if row is None:
        raise MailboxError("No such mailbox", "NONEXISTENT")
    return int(row[0])


def sweep_deleted(
    conn: sqlite3.Connection, table: Literal["acl", "annotations"], account: str
) -> None:
    """Drop the account's rows of mailboxes deleted since (no read reaches them)."""
    conn.execute(f"DELETE FROM {table} WHERE account = ? AND NOT ({_LIVE})", (account, account))


class MetadataOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _reader(self) -> sqlite3.Connection: ...

    async def metadata_get(
        self, account: str, mailbox: str | None, entries: Sequence[str]
    ) -> dict[str, bytes]:
        def read() -> dict[str, bytes]:
            conn = self._reader()
            box = box_key(conn, account, mailbox)
            out: dict[str, bytes] = {}
            for entry in entries:
                # the entry itself, and the range of names that start with "entry/"
                rows = conn.execute(
                    "SELECT entry, value FROM annotations WHERE account = ? AND box = ?"
                    " AND (entry = ? OR (entry > ? AND entry < ?))",
                    (account, box, entry, entry + "/", entry + "0"),
                )
                out.update((str(name), bytes(value)) for name, value in rows)
            return out

        found: dict[str, bytes] = await self._read(read)
        return found

    async def metadata_set(
        self,
        account: str,
        mailbox: str | None,
        values: Mapping[str, bytes | None],
        *,
        max_entries: int = 0,
    ) -> None:
        items = list(values.items())

        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            box = box_key(conn, account, mailbox)
            sweep_deleted(conn, "annotations", account)
            for entry, value in items:
                if value is None:
                    conn.execute(
                        "DELETE FROM annotations WHERE account = ? AND box = ? AND entry = ?",
                        (account, box, entry),
                    )
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO annotations (account, box, entry, value)"
                        " VALUES (?, ?, ?, ?)",
                        (account, box, entry, value),
                    )
            if max_entries:
                (count,) = conn.execute(
                    "SELECT count(*) FROM annotations WHERE account = ?", (account,)
                ).fetchone()
                if count > max_entries:  # RFC 5464 §4.3: nothing of the command is kept
                    raise MailboxError("Too many annotations", "METADATA TOOMANY")
            return None, []

        await self._write(op)
