"""Sending identities and submissions of the PostgreSQL store: the counterpart of
``sqlite_records.py``, with the same semantics.

The per-(account, kind) counter row is locked by its upsert, so two nodes changing the
same account's records take turns and every change gets its own counter value.
"""

from __future__ import annotations

from correo.store.api import Record, StoreError
from correo.store.postgres_base import Conn, PgBase
from correo.store.postgres_commit import PgAfterCommit

__all__ = ["RECORD_SCHEMA", "PgRecordOps"]

#: Migration 7 (``postgres_schema.py``).
RECORD_SCHEMA = """
CREATE TABLE records (
    account text NOT NULL, kind text NOT NULL, id text NOT NULL, data text NOT NULL,
    created bigint NOT NULL, changed bigint NOT NULL, removed boolean NOT NULL DEFAULT false,
    PRIMARY KEY (account, kind, id));
CREATE INDEX records_changed ON records (account, kind, changed);
CREATE TABLE record_counters (
    account text NOT NULL, kind text NOT NULL, counter bigint NOT NULL, floor bigint NOT NULL,
    PRIMARY KEY (account, kind));
"""

#: Tombstones kept per (account, kind), as in the embedded store.
_TOMBSTONES = 1000


class PgRecordOps(PgBase):
    async def records(self, account: str, kind: str, since: int = 0) -> tuple[int, list[Record]]:
        # One statement, one snapshot: a record changed between a read of the counter and
        # a read of the rows (the queue writing a submission's outcome) is neither lost
        # nor shown ahead of its counter.
        rows = await self._fetchall(
            "SELECT c.counter, c.floor, r.id, r.data, r.created, r.changed, r.removed"
            " FROM record_counters c LEFT JOIN records r ON r.account = c.account"
            " AND r.kind = c.kind AND r.changed > %s AND (NOT r.removed OR %s > 0)"
            " WHERE c.account = %s AND c.kind = %s ORDER BY r.changed",
            (since, since, account, kind),
        )
        counter, floor = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        if since and since < floor:
            raise StoreError("changes older than the oldest kept")
        return counter, [
            Record(str(i), str(d), int(c), int(ch), bool(r))
            for _, _, i, d, c, ch, r in rows
            if i is not None
        ]

    async def record_get(self, account: str, kind: str, ident: str) -> Record | None:
        row = await self._fetchone(
            "SELECT data, created, changed FROM records"
            " WHERE account = %s AND kind = %s AND id = %s AND NOT removed",
            (account, kind, ident),
        )
        return None if row is None else Record(ident, str(row[0]), int(row[1]), int(row[2]))

    async def record_put(
        self, account: str, kind: str, ident: str, data: str | None, *, keep: int = 0
    ) -> int:
        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            row = await self._one(
                conn,
                "INSERT INTO record_counters (account, kind, counter, floor)"
                " VALUES (%s, %s, 0, 0) ON CONFLICT (account, kind)"
                " DO UPDATE SET counter = record_counters.counter RETURNING counter, floor",
                (account, kind),
            )
            assert row is not None
            counter, floor = int(row[0]), int(row[1])
            old = await self._one(
                conn,
                "SELECT removed FROM records WHERE account = %s AND kind = %s AND id = %s",
                (account, kind, ident),
            )
            live = old is not None and not old[0]
            if data is None and not live:
                return counter, []
            counter += 1
            if data is None:
                await conn.execute(
                    "UPDATE records SET data = '', changed = %s, removed = true"
                    " WHERE account = %s AND kind = %s AND id = %s",
                    (counter, account, kind, ident),
                )
            else:
                await conn.execute(
                    "INSERT INTO records (account, kind, id, data, created, changed)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (account, kind, id) DO UPDATE"
                    " SET data = EXCLUDED.data, changed = EXCLUDED.changed, removed = false,"
                    " created = CASE WHEN records.removed THEN EXCLUDED.created"
                    " ELSE records.created END",
                    (account, kind, ident, data.replace("\x00", ""), counter, counter),
                )
            if keep > 0:  # the oldest live ones beyond ``keep`` become tombstones
                await conn.execute(
                    "UPDATE records SET data = '', removed = true, changed = %s"
                    " WHERE account = %s AND kind = %s AND NOT removed AND id NOT IN"
                    " (SELECT id FROM records WHERE account = %s AND kind = %s AND NOT removed"
                    " ORDER BY created DESC LIMIT %s)",
                    (counter, account, kind, account, kind, keep),
                )
            cut = await self._one(
                conn,
                "SELECT changed FROM records WHERE account = %s AND kind = %s AND removed"
                " ORDER BY changed DESC LIMIT 1 OFFSET %s",
                (account, kind, _TOMBSTONES),
            )
            if cut is not None:  # a change log older than this cannot be told any more
                floor = max(floor, int(cut[0]))
                await conn.execute(
                    "DELETE FROM records WHERE account = %s AND kind = %s AND removed"
                    " AND changed <= %s",
                    (account, kind, floor),
                )
            await conn.execute(
                "UPDATE record_counters SET counter = %s, floor = %s"
                " WHERE account = %s AND kind = %s",
                (counter, floor, account, kind),
            )
            return counter, [lambda: self.feed.account_committed(account)]

        result: int = await self._write(op)
        return result
