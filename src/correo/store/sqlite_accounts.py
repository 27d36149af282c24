"""Removing an account from :class:`SqliteStore`, or setting its data aside; the
account's URLAUTH mailbox access keys (RFC 4467 §2.2).

Mail state is keyed by the account's name (the directory address), so data left under
a name would belong to whoever is next given that address: a new owner would read the
old one's mail and run the old one's Sieve script (a redirect to the old owner
included). Removal therefore takes everything of the account in one transaction;
data kept on purpose moves to a *tombstone* name, the address followed by a space and
a deletion stamp, which no directory address can ever be (addresses hold no spaces).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from typing import TYPE_CHECKING

from correo.store.api import MailboxError
from correo.store.sqlite_acl import ACL_ACCOUNT_TABLES
from correo.store.sqlite_mailboxes import _forget_text
from correo.store.sqlite_mda import MDA_ACCOUNT_TABLES
from correo.store.sqlite_metadata import METADATA_ACCOUNT_TABLES
from correo.store.sqlite_records import RECORD_ACCOUNT_TABLES

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit, WriteOp

__all__ = ["AccountOps", "is_tombstone"]


def is_tombstone(name: str) -> bool:
    """True for a name that data was set aside under (never a login name)."""
    return " " in name


class AccountOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:
        _mailbox_ids: dict[tuple[str, str], int]

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _account_id(
            self, conn: sqlite3.Connection, account: str, create: bool
        ) -> int | None: ...
        def _release_blobs(self, conn: sqlite3.Connection, blob_ids: list[int]) -> list[str]: ...
        def _unlink_later(self, paths: list[str]) -> AfterCommit: ...
        def _text_later(self, op: WriteOp) -> AfterCommit: ...
        def _read_now(self, fn: Any, *args: Any) -> Any: ...

    async def delete_account(self, account: str) -> None:
        """Remove the account's mailboxes, messages (bodies no other copy uses),
        subscriptions, Sieve scripts, vacation memory and junk-filter counts, at once."""

        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            for table in (
                *MDA_ACCOUNT_TABLES,
                *RECORD_ACCOUNT_TABLES,
                *METADATA_ACCOUNT_TABLES,
                *ACL_ACCOUNT_TABLES,
            ):
                conn.execute(f"DELETE FROM {table} WHERE account=?", (account,))
            conn.execute("DELETE FROM acl WHERE identifier=?", (account,))  # its grants
            account_id = self._account_id(conn, account, create=False)
            self._forget_ids(account)
            if account_id is None:
                return None, []
            boxes = [
                r[0]
                for r in conn.execute("SELECT id FROM mailboxes WHERE account_id=?", (account_id,))
            ]
            freed: list[str] = []
            for mailbox_id in boxes:
                rows = conn.execute(
                    "DELETE FROM messages WHERE mailbox_id=? RETURNING blob_id", (mailbox_id,)
                ).fetchall()
                freed += self._release_blobs(conn, [r[0] for r in rows])
                conn.execute("DELETE FROM expunged WHERE mailbox_id=?", (mailbox_id,))
                conn.execute("DELETE FROM urlauth_keys WHERE mailbox_id=?", (mailbox_id,))
            conn.execute("DELETE FROM mailboxes WHERE account_id=?", (account_id,))
            conn.execute("DELETE FROM subscriptions WHERE account_id=?", (account_id,))
            conn.execute("DELETE FROM accounts WHERE id=?", (account_id,))
            forgets = [self._text_later(_forget_text(m, None)) for m in boxes]  # text index
            return None, [self._unlink_later(freed), *forgets]

        await self._write(op)

    async def set_aside_account(self, account: str) -> str | None:
        """Move everything of the account to a new tombstone name, in one transaction.

        Returns that name, or None when the store held nothing under ``account``. The
        address then starts empty; the old data stays readable under the tombstone.
        """
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tombstone = f"{account} (deleted {stamp} {secrets.token_hex(3)})"

        def op(conn: sqlite3.Connection) -> tuple[str | None, list[AfterCommit]]:
            account_id = self._account_id(conn, account, create=False)
            moved = 0
            for table in (
                *MDA_ACCOUNT_TABLES,
                *RECORD_ACCOUNT_TABLES,
                *METADATA_ACCOUNT_TABLES,
                *ACL_ACCOUNT_TABLES,
            ):
                cur = conn.execute(
                    f"UPDATE {table} SET account=? WHERE account=?", (tombstone, account)
                )
                moved += cur.rowcount
            conn.execute("DELETE FROM acl WHERE identifier=?", (account,))  # its grants
            self._forget_ids(account)
            if account_id is None and not moved:
                return None, []
            if account_id is None:  # scripts or filter data only: listed all the same
                self._account_id(conn, tombstone, create=True)
            else:
                conn.execute("UPDATE accounts SET name=? WHERE id=?", (tombstone, account_id))
            return tombstone, []

        result: str | None = await self._write(op)
        return result

    async def kept_accounts(self) -> list[tuple[str, int]]:
        """Tombstone names with their message counts, by name."""

        def read() -> list[tuple[str, int]]:
            rows = self._reader().execute(
                "SELECT a.name, count(m.uid) FROM accounts a"
                " LEFT JOIN mailboxes x ON x.account_id = a.id"
                " LEFT JOIN messages m ON m.mailbox_id = x.id"
                " WHERE instr(a.name, ' ') > 0 GROUP BY a.id ORDER BY a.name"
            )
            return [(str(name), int(count)) for name, count in rows]

        result: list[tuple[str, int]] = await self._read(read)
        return result

    # -- URLAUTH mailbox access keys (RFC 4467 §2.2) ------------------------------------

    async def urlauth_key(self, account: str, mailbox: str, *, create: bool = False) -> bytes:
        """The key of the mailbox as it is now: a row left by an earlier mailbox of the
        same id (SQLite reuses a freed highest rowid) has another UIDVALIDITY."""

        def read() -> tuple[int, int, bytes] | None:
            row = (
                self._reader()
                .execute(
                    "SELECT m.id, m.uidvalidity, k.key FROM mailboxes m"
                    " JOIN accounts a ON a.id = m.account_id"
                    " LEFT JOIN urlauth_keys k"
                    " ON k.mailbox_id = m.id AND k.uidvalidity = m.uidvalidity"
                    " WHERE a.name=? AND m.name=?",
                    (account, mailbox),
                )
                .fetchone()
            )
            return None if row is None else (int(row[0]), int(row[1]), row[2] or b"")

        found: tuple[int, int, bytes] | None = self._read_now(read)
        if found is None:
            raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
        if found[2] or not create:
            return bytes(found[2])
        fresh = secrets.token_bytes(32)  # RFC 4467 §2.2: unpredictable, >= 128 bits

        def op(conn: sqlite3.Connection) -> tuple[bytes, list[AfterCommit]]:
            row = conn.execute(
                "SELECT m.uidvalidity FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
                " WHERE m.id=? AND a.name=? AND m.name=?",
                (found[0], account, mailbox),
            ).fetchone()
            if row is None:
                raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
            old = conn.execute(
                "SELECT key FROM urlauth_keys WHERE mailbox_id=? AND uidvalidity=?",
                (found[0], row[0]),
            ).fetchone()
            if old is not None:
                return bytes(old[0]), []  # another session made it first
            conn.execute(
                "INSERT OR REPLACE INTO urlauth_keys (mailbox_id, uidvalidity, key)"
                " VALUES (?, ?, ?)",
                (found[0], row[0], fresh),
            )
            return fresh, []

        key: bytes = await self._write(op)
        return key

    async def urlauth_reset(self, account: str, mailbox: str | None = None) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            account_id = self._account_id(conn, account, create=False)
            if mailbox is None:
                conn.execute(
                    "DELETE FROM urlauth_keys WHERE mailbox_id IN"
                    " (SELECT id FROM mailboxes WHERE account_id=?)",
                    (account_id,),
                )
                return None, []
            row = conn.execute(
                "SELECT id FROM mailboxes WHERE account_id=? AND name=?", (account_id, mailbox)
            ).fetchone()
            if row is None:
                raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
            conn.execute("DELETE FROM urlauth_keys WHERE mailbox_id=?", (row[0],))
            return None, []

        await self._write(op)

    def _forget_ids(self, account: str) -> None:
        """Writer thread: no cached mailbox id of ``account`` survives its removal."""
        self._mailbox_ids = {k: v for k, v in self._mailbox_ids.items() if k[0] != account}
