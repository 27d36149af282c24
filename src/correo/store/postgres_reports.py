"""DMARC and TLS reports of the PostgreSQL store: the counterpart of ``sqlite_reports.py``.

Shared by every node: tallies from all of them go into one report, and the job table's
leases let one node only send the daily reports.
"""

from __future__ import annotations

from collections.abc import Sequence

from correo.store.api import ReceivedReport, ReportTally
from correo.store.postgres_base import Conn, PgBase
from correo.store.postgres_commit import PgAfterCommit
from correo.store.sqlite_reports import REPORT_COLUMNS, report_from_row

__all__ = ["PgReportOps"]


class PgReportOps(PgBase):
    async def report_add(self, report: ReceivedReport) -> int:
        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            row = await self._one(
                conn,
                "INSERT INTO reports_received (kind, org, report_id, domain, begin_at, end_at,"
                " received, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (kind, org, report_id) DO NOTHING RETURNING id",
                (
                    report.kind,
                    report.org,
                    report.report_id,
                    report.domain,
                    report.begin,
                    report.end,
                    report.received,
                    report.data.replace("\x00", ""),
                ),
            )
            if row is None:
                row = await self._one(
                    conn,
                    "SELECT id FROM reports_received WHERE kind = %s AND org = %s"
                    " AND report_id = %s",
                    (report.kind, report.org, report.report_id),
                )
            assert row is not None
            return int(row[0]), []

        result: int = await self._write(op)
        return result

    async def report_list(self, kind: str | None = None, limit: int = 1000) -> list[ReceivedReport]:
        where, args = ("WHERE kind = %s", (kind,)) if kind else ("", ())
        rows = await self._fetchall(
            f"SELECT {REPORT_COLUMNS} FROM reports_received {where}"
            " ORDER BY received DESC, id DESC LIMIT %s",
            (*args, limit),
        )
        return [report_from_row(r) for r in rows]

    async def report_get(self, report_id: int) -> ReceivedReport | None:
        row = await self._fetchone(
            f"SELECT {REPORT_COLUMNS}, data FROM reports_received WHERE id = %s", (report_id,)
        )
        return None if row is None else report_from_row(row, str(row[8]))

    async def report_prune(self, before: float) -> int:
        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            cur = await conn.execute("DELETE FROM reports_received WHERE received < %s", (before,))
            return int(cur.rowcount or 0), []

        result: int = await self._write(op)
        return result

    async def report_tally(self, tallies: Sequence[ReportTally], *, max_rows: int = 10_000) -> int:
        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            dropped = 0
            rows: dict[tuple[str, str], int] = {}
            for t in tallies:
                cur = await conn.execute(
                    "UPDATE report_tallies SET count = count + %s, first = least(first, %s),"
                    " last = greatest(last, %s) WHERE kind = %s AND domain = %s AND key = %s",
                    (t.count, t.first, t.last, t.kind, t.domain, t.key),
                )
                if cur.rowcount:
                    continue
                pair = (t.kind, t.domain)
                if pair not in rows:
                    row = await self._one(
                        conn,
                        "SELECT count(*) FROM report_tallies WHERE kind = %s AND domain = %s",
                        pair,
                    )
                    rows[pair] = int(row[0]) if row is not None else 0
                if rows[pair] >= max_rows:
                    dropped += 1
                    continue
                await conn.execute(
                    "INSERT INTO report_tallies (kind, domain, key, count, first, last)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (kind, domain, key) DO UPDATE"
                    " SET count = report_tallies.count + EXCLUDED.count",
                    (t.kind, t.domain, t.key, t.count, t.first, t.last),
                )
                rows[pair] += 1
            return dropped, []

        result: int = await self._write(op)
        return result

    async def report_tally_domains(self, kind: str) -> list[str]:
        rows = await self._fetchall(
            "SELECT DISTINCT domain FROM report_tallies WHERE kind = %s ORDER BY domain", (kind,)
        )
        return [str(r[0]) for r in rows]

    async def report_take(self, kind: str, domain: str) -> list[ReportTally]:
        async def op(conn: Conn) -> tuple[list[ReportTally], list[PgAfterCommit]]:
            rows = await self._all(
                conn,
                "DELETE FROM report_tallies WHERE kind = %s AND domain = %s"
                " RETURNING key, count, first, last",
                (kind, domain),
            )
            taken = [
                ReportTally(kind, domain, str(k), int(c), float(f), float(la))
                for k, c, f, la in rows
            ]
            taken.sort(key=lambda t: t.key)
            return taken, []

        result: list[ReportTally] = await self._write(op)
        return result

    async def report_claim(
        self, name: str, owner: str, now: float, interval: float, lease: float
    ) -> float | None:
        async def op(conn: Conn) -> tuple[float | None, list[PgAfterCommit]]:
            await conn.execute(
                "INSERT INTO report_jobs (name, done, owner, lease_until) VALUES (%s, 0, '', 0)"
                " ON CONFLICT (name) DO NOTHING",
                (name,),
            )
            row = await self._one(
                conn,
                "SELECT done, owner, lease_until FROM report_jobs WHERE name = %s FOR UPDATE",
                (name,),
            )
            assert row is not None
            done = float(row[0])
            if row[1] != owner and float(row[2]) > now:
                return None, []
            if done and done + interval > now:
                return None, []
            await conn.execute(
                "UPDATE report_jobs SET owner = %s, lease_until = %s WHERE name = %s",
                (owner, now + lease, name),
            )
            return done, []

        result: float | None = await self._write(op)
        return result

    async def report_done(self, name: str, owner: str, when: float) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute(
                "UPDATE report_jobs SET done = %s, lease_until = 0 WHERE name = %s AND owner = %s",
                (when, name, owner),
            )
            return None, []

        await self._write(op)

    async def report_release(self, name: str, owner: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute(
                "UPDATE report_jobs SET lease_until = 0 WHERE name = %s AND owner = %s",
                (name, owner),
            )
            return None, []

        await self._write(op)
