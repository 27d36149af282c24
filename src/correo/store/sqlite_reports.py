"""DMARC and TLS reports of :class:`SqliteStore` (docs/reports.md).

A mixin like ``sqlite_tls.py``: reports received, results tallied for the reports we
send, and the small job table that keeps the daily run durable and single.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from correo.store.api import ReceivedReport, ReportTally

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["REPORTS_SCHEMA", "ReportOps", "report_from_row"]

REPORTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports_received (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, org TEXT NOT NULL, report_id TEXT NOT NULL,
    domain TEXT NOT NULL, begin_at REAL NOT NULL, end_at REAL NOT NULL,
    received REAL NOT NULL, data TEXT NOT NULL, UNIQUE (kind, org, report_id));
CREATE INDEX IF NOT EXISTS reports_received_at ON reports_received (received);
CREATE TABLE IF NOT EXISTS report_tallies (
    kind TEXT NOT NULL, domain TEXT NOT NULL, key TEXT NOT NULL, count INTEGER NOT NULL,
    first REAL NOT NULL, last REAL NOT NULL,
    PRIMARY KEY (kind, domain, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_jobs (
    name TEXT PRIMARY KEY, done REAL NOT NULL, owner TEXT NOT NULL,
    lease_until REAL NOT NULL) WITHOUT ROWID;
"""

REPORT_COLUMNS = "id, kind, org, report_id, domain, begin_at, end_at, received"


def report_from_row(row: Sequence[Any], data: str = "") -> ReceivedReport:
    """A row in ``REPORT_COLUMNS`` order as the API's record."""
    rid, kind, org, report_id, domain, begin, end, received = row[:8]
    return ReceivedReport(
        int(rid),
        str(kind),
        str(org),
        str(report_id),
        str(domain),
        float(begin),
        float(end),
        float(received),
        data,
    )


class ReportOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...

    async def report_add(self, report: ReceivedReport) -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            row = conn.execute(
                "SELECT id FROM reports_received WHERE kind=? AND org=? AND report_id=?",
                (report.kind, report.org, report.report_id),
            ).fetchone()
            if row is not None:
                return int(row[0]), []
            cur = conn.execute(
                "INSERT INTO reports_received (kind, org, report_id, domain, begin_at, end_at,"
                " received, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.kind,
                    report.org,
                    report.report_id,
                    report.domain,
                    report.begin,
                    report.end,
                    report.received,
                    report.data,
                ),
            )
            return int(cur.lastrowid or 0), []

        result: int = await self._write(op)
        return result

    async def report_list(self, kind: str | None = None, limit: int = 1000) -> list[ReceivedReport]:
        def read() -> list[ReceivedReport]:
            where, args = ("WHERE kind=?", (kind,)) if kind else ("", ())
            rows = self._reader().execute(
                f"SELECT {REPORT_COLUMNS} FROM reports_received {where}"
                " ORDER BY received DESC, id DESC LIMIT ?",
                (*args, limit),
            )
            return [report_from_row(r) for r in rows]

        result: list[ReceivedReport] = await self._read(read)
        return result

    async def report_get(self, report_id: int) -> ReceivedReport | None:
        def read() -> ReceivedReport | None:
            row = (
                self._reader()
                .execute(
                    f"SELECT {REPORT_COLUMNS}, data FROM reports_received WHERE id=?",
                    (report_id,),
                )
                .fetchone()
            )
            return None if row is None else report_from_row(row, str(row[8]))

        result: ReceivedReport | None = await self._read(read)
        return result

    async def report_prune(self, before: float) -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            cur = conn.execute("DELETE FROM reports_received WHERE received < ?", (before,))
            return int(cur.rowcount or 0), []

        result: int = await self._write(op)
        return result

    async def report_tally(self, tallies: Sequence[ReportTally], *, max_rows: int = 10_000) -> int:
        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            dropped = 0
            rows: dict[tuple[str, str], int] = {}
            for t in tallies:
                cur = conn.execute(
                    "UPDATE report_tallies SET count=count+?, first=min(first, ?),"
                    " last=max(last, ?) WHERE kind=? AND domain=? AND key=?",
                    (t.count, t.first, t.last, t.kind, t.domain, t.key),
                )
                if cur.rowcount:
                    continue
                pair = (t.kind, t.domain)
                if pair not in rows:
                    (rows[pair],) = conn.execute(
                        "SELECT count(*) FROM report_tallies WHERE kind=? AND domain=?", pair
                    ).fetchone()
                if rows[pair] >= max_rows:
                    dropped += 1
                    continue
                conn.execute(
                    "INSERT INTO report_tallies (kind, domain, key, count, first, last)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (t.kind, t.domain, t.key, t.count, t.first, t.last),
                )
                rows[pair] += 1
            return dropped, []

        result: int = await self._write(op)
        return result

    async def report_tally_domains(self, kind: str) -> list[str]:
        def read() -> list[str]:
            rows = self._reader().execute(
                "SELECT DISTINCT domain FROM report_tallies WHERE kind=? ORDER BY domain",
                (kind,),
            )
            return [str(r[0]) for r in rows]

        result: list[str] = await self._read(read)
        return result

    async def report_take(self, kind: str, domain: str) -> list[ReportTally]:
        def op(conn: sqlite3.Connection) -> tuple[list[ReportTally], list[AfterCommit]]:
            rows = conn.execute(
                "SELECT key, count, first, last FROM report_tallies WHERE kind=? AND domain=?"
                " ORDER BY key",
                (kind, domain),
            ).fetchall()
            conn.execute("DELETE FROM report_tallies WHERE kind=? AND domain=?", (kind, domain))
            taken = [
                ReportTally(kind, domain, str(k), int(c), float(f), float(la))
                for k, c, f, la in rows
            ]
            return taken, []

        result: list[ReportTally] = await self._write(op)
        return result

    async def report_claim(
        self, name: str, owner: str, now: float, interval: float, lease: float
    ) -> float | None:
        def op(conn: sqlite3.Connection) -> tuple[float | None, list[AfterCommit]]:
            row = conn.execute(
                "SELECT done, owner, lease_until FROM report_jobs WHERE name=?", (name,)
            ).fetchone()
            done = 0.0 if row is None else float(row[0])
            if row is not None and row[1] != owner and float(row[2]) > now:
                return None, []  # held by another owner whose lease runs
            if done and done + interval > now:
                return None, []
            conn.execute(
                "INSERT INTO report_jobs (name, done, owner, lease_until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner=excluded.owner,"
                " lease_until=excluded.lease_until",
                (name, done, owner, now + lease),
            )
            return done, []

        result: float | None = await self._write(op)
        return result

    async def report_done(self, name: str, owner: str, when: float) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            conn.execute(
                "UPDATE report_jobs SET done=?, lease_until=0 WHERE name=? AND owner=?",
                (when, name, owner),
            )
            return None, []

        await self._write(op)

    async def report_release(self, name: str, owner: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            conn.execute(
                "UPDATE report_jobs SET lease_until=0 WHERE name=? AND owner=?", (name, owner)
            )
            return None, []

        await self._write(op)
