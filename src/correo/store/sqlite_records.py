"""Sending identities and submissions of :class:`SqliteStore` (JMAP Identity and
EmailSubmission, RFC 8621 §6-7): JSON records with a per-(account, kind) counter.

A separate mixin, like ``sqlite_mda.py``.  Keyed by account name like the MDA tables,
so ``delete_account`` takes them along (``RECORD_ACCOUNT_TABLES``).  A removed record
keeps a tombstone row so ``/changes`` can name it; tombstones older than the newest
``_TOMBSTONES`` of the kind are dropped, and a client behind them resynchronises.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from correo.store.api import Record, StoreError

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["RECORD_ACCOUNT_TABLES", "RECORD_SCHEMA", "RecordOps"]

RECORD_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    account TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,
    created INTEGER NOT NULL, changed INTEGER NOT NULL, removed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, kind, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_changed ON records (account, kind, changed);
CREATE TABLE IF NOT EXISTS record_counters (
    account TEXT NOT NULL, kind TEXT NOT NULL, counter INTEGER NOT NULL, floor INTEGER NOT NULL,
    PRIMARY KEY (account, kind)) WITHOUT ROWID;
"""

#: What goes when the account goes.
RECORD_ACCOUNT_TABLES = ("records", "record_counters")

#: Tombstones kept per (account, kind); older ones raise the floor a change log starts at.
_TOMBSTONES = 1000


T = TypeVar("T")


class RecordOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _account_event(self, conn: sqlite3.Connection, account: str) -> AfterCommit: ...

    async def _read_records(self, fn: Callable[[sqlite3.Connection], T], empty: T, what: str) -> T:
        """``fn`` on a reader; ``empty`` before the writer has made the tables."""

        def read() -> T:
            try:
                return fn(self._reader())
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return empty  # nothing written yet (the writer creates the tables)
                raise

        try:
            result: T = await self._read(read)
        except sqlite3.Error as exc:
            raise StoreError(f"could not read {what}: {exc}") from exc
        return result

    async def records(self, account: str, kind: str, since: int = 0) -> tuple[int, list[Record]]:
        def read(conn: sqlite3.Connection) -> tuple[int, list[Record]]:
            row = conn.execute(
                "SELECT counter, floor FROM record_counters WHERE account=? AND kind=?",
                (account, kind),
            ).fetchone()
            counter, floor = (int(row[0]), int(row[1])) if row else (0, 0)
            if since and since < floor:
                raise StoreError("changes older than the oldest kept")
            rows = conn.execute(
                "SELECT id, data, created, changed, removed FROM records"
                " WHERE account=? AND kind=? AND changed>? AND (removed=0 OR ?>0)"
                " ORDER BY changed",
                (account, kind, since, since),
            )
            return counter, [
                Record(str(i), str(d), int(c), int(ch), bool(r)) for i, d, c, ch, r in rows
            ]

        return await self._read_records(read, (0, []), "records")

    async def record_get(self, account: str, kind: str, ident: str) -> Record | None:
        def read(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(
                "SELECT data, created, changed FROM records"
                " WHERE account=? AND kind=? AND id=? AND removed=0",
                (account, kind, ident),
            ).fetchone()
            return None if row is None else Record(ident, str(row[0]), int(row[1]), int(row[2]))

        return await self._read_records(read, None, "a record")

    async def record_put(
        self, account: str, kind: str, ident: str, data: str | None, *, keep: int = 0
    ) -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            # Created here (inside the batch: executescript would commit it), so the store's
            # start-up needs no step of its own; IF NOT EXISTS costs a schema lookup.
            for statement in RECORD_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute(
                "SELECT counter, floor FROM record_counters WHERE account=? AND kind=?",
                (account, kind),
            ).fetchone()
            counter, floor = (int(row[0]), int(row[1])) if row else (0, 0)
            old = conn.execute(
                "SELECT removed FROM records WHERE account=? AND kind=? AND id=?",
                (account, kind, ident),
            ).fetchone()
            live = old is not None and not old[0]
            if data is None and not live:
                return counter, []
            counter += 1
            if data is None:
                conn.execute(
                    "UPDATE records SET data='', changed=?, removed=1"
                    " WHERE account=? AND kind=? AND id=?",
                    (counter, account, kind, ident),
                )
            elif live:
                conn.execute(
                    "UPDATE records SET data=?, changed=? WHERE account=? AND kind=? AND id=?",
                    (data, counter, account, kind, ident),
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO records (account, kind, id, data, created, changed)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (account, kind, ident, data, counter, counter),
                )
            if keep > 0:  # the oldest live ones beyond ``keep`` become tombstones
                conn.execute(
                    "UPDATE records SET data='', removed=1, changed=? WHERE account=? AND kind=?"
                    " AND removed=0 AND id NOT IN (SELECT id FROM records WHERE account=?"
                    " AND kind=? AND removed=0 ORDER BY created DESC LIMIT ?)",
                    (counter, account, kind, account, kind, keep),
                )
            cut = conn.execute(
                "SELECT changed FROM records WHERE account=? AND kind=? AND removed=1"
                " ORDER BY changed DESC LIMIT 1 OFFSET ?",
                (account, kind, _TOMBSTONES),
            ).fetchone()
            if cut is not None:  # a change log older than this cannot be told any more
                floor = max(floor, int(cut[0]))
                conn.execute(
                    "DELETE FROM records WHERE account=? AND kind=? AND removed=1 AND changed<=?",
                    (account, kind, floor),
                )
            conn.execute(
                "INSERT OR REPLACE INTO record_counters (account, kind, counter, floor)"
                " VALUES (?, ?, ?, ?)",
                (account, kind, counter, floor),
            )
            return counter, [self._account_event(conn, account)]

        result: int = await self._write(op)
        return result
