"""The report part of the MailStore contract (received reports, tallies, job leases),
run against SQLite and PostgreSQL like tests/store/test_contract.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from correo.store.api import MailStore, ReceivedReport, ReportTally
from tests.store.test_contract import Factory, factory, opened

__all__ = ["factory"]


def test_received_reports_are_kept_listed_and_deduplicated(
    factory: Factory, tmp_path: Path
) -> None:
    async def go() -> None:
        store: MailStore = await opened(factory, tmp_path)
        try:
            one = ReceivedReport(
                0, "dmarc", "Org", "r1", "example.org", 10.0, 20.0, 30.0, '{"a": 1}'
            )
            first = await store.report_add(one)
            again = await store.report_add(one)
            assert first == again
            other = await store.report_add(
                ReceivedReport(0, "tlsrpt", "Org", "r1", "example.net", 1.0, 2.0, 40.0, "{}")
            )
            assert other != first
            listed = await store.report_list()
            assert [r.id for r in listed] == [other, first]  # newest first
            assert listed[0].data == ""  # listing leaves the data out
            assert [r.id for r in await store.report_list("dmarc")] == [first]
            got = await store.report_get(first)
            assert got is not None and got.data == '{"a": 1}' and got.domain == "example.org"
            assert (got.begin, got.end, got.org, got.report_id) == (10.0, 20.0, "Org", "r1")
            assert await store.report_get(first + other + 100) is None
        finally:
            await store.close()

    asyncio.run(go())


def test_tallies_add_up_are_bounded_and_taken_once(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store: MailStore = await opened(factory, tmp_path)
        try:
            t = ReportTally("dmarc", "example.org", '{"ip": "1"}', 2, 100.0, 100.0)
            assert await store.report_tally([t], max_rows=2) == 0
            later = ReportTally("dmarc", "example.org", '{"ip": "1"}', 3, 50.0, 200.0)
            second = ReportTally("dmarc", "example.org", '{"ip": "2"}', 1, 60.0, 60.0)
            third = ReportTally("dmarc", "example.org", '{"ip": "3"}', 1, 60.0, 60.0)
            other = ReportTally("tlsrpt", "example.org", "{}", 1, 1.0, 1.0)
            # a third distinct row for the (kind, domain) is over the bound: dropped
            assert await store.report_tally([later, second, third, other], max_rows=2) == 1
            assert await store.report_tally_domains("dmarc") == ["example.org"]
            taken = await store.report_take("dmarc", "example.org")
            assert [(x.key, x.count, x.first, x.last) for x in taken] == [
                ('{"ip": "1"}', 5, 50.0, 200.0),
                ('{"ip": "2"}', 1, 60.0, 60.0),
            ]
            assert await store.report_take("dmarc", "example.org") == []
            assert await store.report_tally_domains("dmarc") == []
            assert len(await store.report_take("tlsrpt", "example.org")) == 1
        finally:
            await store.close()

    asyncio.run(go())


def test_job_claims_are_leased_and_spaced(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store: MailStore = await opened(factory, tmp_path)
        try:
            assert await store.report_claim("daily", "a", 1000.0, 86400.0, 60.0) == 0.0
            # held by a: b cannot take it while the lease runs, a can again
            assert await store.report_claim("daily", "b", 1010.0, 86400.0, 60.0) is None
            await store.report_done("daily", "a", 1020.0)
            # finished: not due again before the interval
            assert await store.report_claim("daily", "b", 2000.0, 86400.0, 60.0) is None
            assert await store.report_claim("daily", "b", 1020.0 + 86400.0, 86400.0, 60.0) == 1020.0
            await store.report_release("daily", "b")
            # released unfinished: anyone may take it, its last finish kept
            assert await store.report_claim("daily", "a", 1020.0 + 86401.0, 86400.0, 60.0) == 1020.0
            # a lease that ran out is taken over
            assert await store.report_claim("daily", "b", 1020.0 + 86500.0, 86400.0, 60.0) == 1020.0
            # durable: a reopened store still knows
            await store.report_done("daily", "b", 90000.0)
        finally:
            await store.close()
        store = await opened(factory, tmp_path)
        try:
            assert await store.report_claim("daily", "c", 90001.0, 86400.0, 60.0) is None
            assert await store.report_claim("daily", "c", 90001.0, 0.0, 60.0) == 90000.0
        finally:
            await store.close()

    asyncio.run(go())


def test_old_received_reports_are_pruned(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store: MailStore = await opened(factory, tmp_path)
        try:
            for n, received in enumerate((100.0, 200.0, 300.0)):
                await store.report_add(
                    ReceivedReport(0, "dmarc", "Org", f"r{n}", "a.test", 1.0, 2.0, received, "{}")
                )
            assert await store.report_prune(250.0) == 2
            assert [r.report_id for r in await store.report_list()] == ["r2"]
            assert await store.report_prune(250.0) == 0
        finally:
            await store.close()

    asyncio.run(go())
