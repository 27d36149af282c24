"""MDA data of :class:`SqliteStore`: Sieve scripts, vacation memory, junk tokens.

A separate mixin, like ``sqlite_mailboxes.py``, so the core of the store stays small.
Tables are keyed by account name, not id: they must survive the account's mailboxes
being recreated; ``delete_account`` and ``set_aside_account`` (``sqlite_accounts.py``)
take them along with the mail, so a new account of the same name starts without them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from correo.store.api import MailboxError

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["MDA_ACCOUNT_TABLES", "MDA_SCHEMA", "MdaOps"]

MDA_SCHEMA = """
CREATE TABLE IF NOT EXISTS sieve_scripts (
    account TEXT NOT NULL, name TEXT NOT NULL, script TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL,
    PRIMARY KEY (account, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vacation_seen (
    account TEXT NOT NULL, handle TEXT NOT NULL, sender TEXT NOT NULL, sent REAL NOT NULL,
    PRIMARY KEY (account, handle, sender)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS junk_totals (
    account TEXT PRIMARY KEY, spam INTEGER NOT NULL DEFAULT 0, ham INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS junk_tokens (
    account TEXT NOT NULL, token TEXT NOT NULL, spam INTEGER NOT NULL DEFAULT 0,
    ham INTEGER NOT NULL DEFAULT 0, seen REAL NOT NULL,
    PRIMARY KEY (account, token)) WITHOUT ROWID;
"""

#: Every MDA table, each with an ``account`` column: what goes when the account goes.
MDA_ACCOUNT_TABLES = ("sieve_scripts", "vacation_seen", "junk_totals", "junk_tokens")

#: Tokens kept per account; beyond it the rarest, oldest are pruned (bounded store).
MAX_JUNK_TOKENS = 200_000
#: Vacation rows older than this are useless (:days is capped at 90 by the interpreter).
_VACATION_HORIZON = 366 * 86400.0


class MdaOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    max_junk_tokens = MAX_JUNK_TOKENS

    if TYPE_CHECKING:

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _account_event(self, conn: sqlite3.Connection, account: str) -> AfterCommit: ...

    async def _mda_write(self, op: Any) -> Any:
        return await self._write(op)  # failures arrive as StoreError (see SqliteStore._write)

    # -- Sieve scripts (RFC 5804 semantics) ----------------------------------------------

    async def sieve_list(self, account: str) -> list[tuple[str, bool]]:
        def read() -> list[tuple[str, bool]]:
            rows = self._reader().execute(
                "SELECT name, active FROM sieve_scripts WHERE account=? ORDER BY name", (account,)
            )
            return [(str(n), bool(a)) for n, a in rows]

        result: list[tuple[str, bool]] = await self._read(read)
        return result

    async def sieve_get(self, account: str, name: str) -> str | None:
        def read() -> str | None:
            row = (
                self._reader()
                .execute(
                    "SELECT script FROM sieve_scripts WHERE account=? AND name=?", (account, name)
                )
                .fetchone()
            )
            return None if row is None else str(row[0])

        result: str | None = await self._read(read)
        return result

    async def sieve_put(self, account: str, name: str, text: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            conn.execute(
                "INSERT INTO sieve_scripts (account, name, script, updated) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (account, name) DO UPDATE SET script=excluded.script,"
                " updated=excluded.updated",
                (account, name, text, time.time()),
            )
            return None, [self._account_event(conn, account)]

        await self._mda_write(op)

    async def sieve_delete(self, account: str, name: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            row = conn.execute(
                "SELECT active FROM sieve_scripts WHERE account=? AND name=?", (account, name)
            ).fetchone()
            if row is None:
                raise MailboxError(f"no script {name!r}", "NONEXISTENT")
            if row[0]:  # RFC 5804 §2.10: the active script cannot be deleted
                raise MailboxError("script is active", "ACTIVE")
            conn.execute("DELETE FROM sieve_scripts WHERE account=? AND name=?", (account, name))
            return None, [self._account_event(conn, account)]

        await self._mda_write(op)

    async def sieve_rename(self, account: str, old: str, new: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            find = "SELECT 1 FROM sieve_scripts WHERE account=? AND name=?"
            if conn.execute(find, (account, old)).fetchone() is None:
                raise MailboxError(f"no script {old!r}", "NONEXISTENT")
            if old != new and conn.execute(find, (account, new)).fetchone() is not None:
                raise MailboxError(f"script {new!r} exists", "ALREADYEXISTS")
            conn.execute(
                "UPDATE sieve_scripts SET name=? WHERE account=? AND name=?", (new, account, old)
            )
            return None, [self._account_event(conn, account)]

        await self._mda_write(op)

    async def sieve_activate(self, account: str, name: str | None) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            if name is not None:
                row = conn.execute(
                    "SELECT 1 FROM sieve_scripts WHERE account=? AND name=?", (account, name)
                ).fetchone()
                if row is None:
                    raise MailboxError(f"no script {name!r}", "NONEXISTENT")
            conn.execute(
                "UPDATE sieve_scripts SET active=(name IS ?) WHERE account=?", (name, account)
            )
            return None, [self._account_event(conn, account)]

        await self._mda_write(op)

    async def sieve_active(self, account: str) -> tuple[str, str] | None:
        def read() -> tuple[str, str] | None:
            row = (
                self._reader()
                .execute(
                    "SELECT name, script FROM sieve_scripts WHERE account=? AND active=1",
                    (account,),
                )
                .fetchone()
            )
            return None if row is None else (str(row[0]), str(row[1]))

        result: tuple[str, str] | None = await self._read(read)
        return result

    # -- vacation duplicate suppression (RFC 5230 §4.2) ---------------------------------

    async def vacation_seen(self, account: str, handle: str, sender: str, days: int) -> bool:
        now = time.time()
        key = sender.lower()

        def op(conn: sqlite3.Connection) -> tuple[bool, list[AfterCommit]]:
            row = conn.execute(
                "SELECT sent FROM vacation_seen WHERE account=? AND handle=? AND sender=?",
                (account, handle, key),
            ).fetchone()
            if row is not None and now - float(row[0]) < days * 86400.0:
                return True, []
            conn.execute(
                "INSERT OR REPLACE INTO vacation_seen (account, handle, sender, sent)"
                " VALUES (?, ?, ?, ?)",
                (account, handle, key, now),
            )
            conn.execute(  # forget replies too old to matter (keeps the table bounded)
                "DELETE FROM vacation_seen WHERE account=? AND sent < ?",
                (account, now - _VACATION_HORIZON),
            )
            return False, []

        result: bool = await self._mda_write(op)
        return result

    # -- junk-filter token counts ------------------------------------------------------

    async def junk_counts(
        self, account: str, tokens: Collection[str]
    ) -> tuple[int, int, dict[str, tuple[int, int]]]:
        wanted = list(dict.fromkeys(tokens))

        def read() -> tuple[int, int, dict[str, tuple[int, int]]]:
            conn = self._reader()
            row = conn.execute(
                "SELECT spam, ham FROM junk_totals WHERE account=?", (account,)
            ).fetchone()
            spam, ham = (0, 0) if row is None else (int(row[0]), int(row[1]))
            found: dict[str, tuple[int, int]] = {}
            for i in range(0, len(wanted), 500):
                batch = wanted[i : i + 500]
                marks = ",".join("?" * len(batch))
                for token, s, h in conn.execute(
                    "SELECT token, spam, ham FROM junk_tokens"
                    f" WHERE account=? AND token IN ({marks})",
                    (account, *batch),
                ):
                    found[str(token)] = (int(s), int(h))
            return spam, ham, found

        result: tuple[int, int, dict[str, tuple[int, int]]] = await self._read(read)
        return result

    async def junk_learn(
        self, account: str, tokens: Collection[str], spam: bool, *, unlearn: bool = False
    ) -> None:
        unique = list(dict.fromkeys(tokens))
        column = "spam" if spam else "ham"
        delta = -1 if unlearn else 1
        now = time.time()
        limit = self.max_junk_tokens

        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            conn.execute("INSERT OR IGNORE INTO junk_totals (account) VALUES (?)", (account,))
            conn.execute(
                f"UPDATE junk_totals SET {column}=MAX(0, {column}+?) WHERE account=?",
                (delta, account),
            )
            if unlearn:
                conn.executemany(
                    f"UPDATE junk_tokens SET {column}=MAX(0, {column}-1)"
                    " WHERE account=? AND token=?",
                    [(account, t) for t in unique],
                )
                conn.execute(
                    "DELETE FROM junk_tokens WHERE account=? AND spam=0 AND ham=0", (account,)
                )
            else:
                conn.executemany(
                    f"INSERT INTO junk_tokens (account, token, {column}, seen) VALUES (?, ?, 1, ?)"
                    f" ON CONFLICT (account, token) DO UPDATE SET {column}={column}+1,"
                    " seen=excluded.seen",
                    [(account, t, now) for t in unique],
                )
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM junk_tokens WHERE account=?", (account,)
            ).fetchone()
            if count > limit:  # bounded: drop the rarest, least recently seen tokens
                conn.execute(
                    "DELETE FROM junk_tokens WHERE account=? AND token IN (SELECT token FROM"
                    " junk_tokens WHERE account=? ORDER BY spam+ham, seen LIMIT ?)",
                    (account, account, count - limit * 9 // 10),
                )
            return None, []

        await self._mda_write(op)
