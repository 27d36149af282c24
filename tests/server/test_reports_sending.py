"""Sending reports: the RFC 7489 §7.1 consent of an outside destination, "!" size limits,
per-destination rate limits, DKIM-signed messages in the queue, and the daily run kept
in the store (a restart does not repeat it, another owner cannot take it while held).

In process, over a real data folder (``correo init``: a domain with DKIM keys), its
SQLite store or a PostgreSQL one, with an in-memory resolver for the DMARC records.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from correo.config import load_config
from correo.directory.factory import open_directory
from correo.dns.fake import FakeResolver
from correo.log import Logger
from correo.reports.dmarcxml import DMARC_KIND, DmarcRow, dmarc_key, parse_report
from correo.reports.outbound import ReportSender
from correo.reports.schedule import ReportScheduler
from correo.reports.tally import TallyBuffer
from correo.store.api import MailStore
from correo.store.factory import open_store
from tests.conftest import correo

DOMAIN = "example.test"
ROW = DmarcRow("192.0.2.1", 1, "none", "pass", "pass", "a.test")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


Body = Callable[[ReportSender, MailStore, TallyBuffer, Clock, io.StringIO], Awaitable[None]]


@pytest.fixture(params=("sqlite", "postgresql"))
def store_url(request: pytest.FixtureRequest) -> str:
    """ "" for the data folder's SQLite store, else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("pg_cluster").new_database(schema=True))


def _run(
    tmp_path: Path, zone: dict[str, dict[str, list[object]]], body: Body, url: str = ""
) -> None:
    data = tmp_path / "data"
    r = correo(data, "init", "--domain", DOMAIN, "--hostname", f"mx.{DOMAIN}")
    assert r.returncode == 0, r.stderr
    config = load_config(data)

    async def go() -> None:
        directory = await asyncio.to_thread(open_directory, config)
        store: MailStore = open_store(config)
        if url:
            from correo.store.postgres import PostgresStore

            store = PostgresStore(url, tmp_path / "node", recover=True)
        await store.open()
        out = io.StringIO()
        log = Logger(out, "debug")
        clock = Clock()
        try:
            sender = ReportSender(
                config, store, directory, FakeResolver(zone), log, clock=clock, owner="n1"
            )
            await body(sender, store, TallyBuffer(store, log, clock=clock), clock, out)
        finally:
            await store.close()
            directory.close()

    asyncio.run(go())


def _dmarc(rua: str) -> dict[str, dict[str, list[object]]]:
    return {"_dmarc.a.test": {"TXT": [f"v=DMARC1; p=none; rua={rua}"]}}


async def _count(tallies: TallyBuffer, n: int = 1) -> None:
    for _ in range(n):
        tallies.add(DMARC_KIND, "a.test", dmarc_key(ROW))
    await tallies.flush()


async def _queued(store: MailStore) -> list[tuple[str, bytes]]:
    out = []
    for entry in await store.queue_list():
        body = b"".join([c async for c in store.queue_read(entry.id)])
        out.append((entry.recipients[0][0], body))
    return out


def test_outside_destination_needs_its_consent_record(tmp_path: Path, store_url: str) -> None:
    zone = _dmarc("mailto:agg@reports.example")

    async def body(
        sender: ReportSender, store: MailStore, tallies: TallyBuffer, clock: Clock, log: io.StringIO
    ) -> None:
        await _count(tallies, 3)
        summary = await sender.run()
        assert summary.sent == 0 and await store.queue_list() == []
        assert "event=reports.destination_refused" in log.getvalue()
        # reports.example agrees to take a.test's reports (RFC 7489 §7.1)
        sender.resolver.add("a.test._report._dmarc.reports.example", "TXT", "v=DMARC1")  # type: ignore[attr-defined]
        await _count(tallies, 2)
        summary = await sender.run()
        assert summary.sent == 1
        [(to, raw)] = await _queued(store)
        assert to == "agg@reports.example"
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["DKIM-Signature"] is not None and f"d={DOMAIN}" in str(msg["DKIM-Signature"])
        assert msg["From"] == f"dmarc-reports@{DOMAIN}"
        assert str(msg["Subject"]).startswith("Report Domain: a.test Submitter: mx.example.test")
        [part] = list(msg.iter_attachments())
        assert part.get_content_type() == "application/gzip"
        assert str(part.get_filename()).endswith(".xml.gz")
        report = parse_report(gzip.decompress(part.get_content()))
        assert report["policy"]["domain"] == "a.test"
        assert sum(r["count"] for r in report["records"]) == 2  # the refused run's rows went

    _run(tmp_path, zone, body, store_url)


def test_a_report_over_the_size_limit_is_not_sent(tmp_path: Path, store_url: str) -> None:
    async def body(
        sender: ReportSender, store: MailStore, tallies: TallyBuffer, clock: Clock, log: io.StringIO
    ) -> None:
        await _count(tallies)
        summary = await sender.run()
        assert summary.sent == 0 and await store.queue_list() == []
        assert "event=reports.too_large" in log.getvalue()
        # it would only grow: its rows are not kept for another try
        assert await store.report_tally_domains(DMARC_KIND) == []

    _run(tmp_path, _dmarc("mailto:r@a.test!100"), body, store_url)


def test_one_report_per_destination_per_interval(tmp_path: Path, store_url: str) -> None:
    async def body(
        sender: ReportSender, store: MailStore, tallies: TallyBuffer, clock: Clock, log: io.StringIO
    ) -> None:
        await _count(tallies)
        assert (await sender.run()).sent == 1
        await _count(tallies)
        clock.now += 60
        summary = await sender.run()
        assert (summary.sent, summary.deferred) == (0, 1)
        assert await store.report_tally_domains(DMARC_KIND) == ["a.test"]  # kept for later
        clock.now += sender.config.reports.destination_interval
        assert (await sender.run()).sent == 1
        assert len(await store.queue_list()) == 2

    _run(tmp_path, _dmarc("mailto:r@a.test"), body, store_url)


def test_daily_run_is_durable_and_leased(tmp_path: Path, store_url: str) -> None:
    async def body(
        sender: ReportSender, store: MailStore, tallies: TallyBuffer, clock: Clock, log: io.StringIO
    ) -> None:
        logger = Logger(log, "debug")
        first = ReportScheduler(sender, [tallies], logger, clock=clock)
        await _count(tallies)
        assert (await first.run_once()) is not None  # never ran: due
        assert len(await store.queue_list()) == 1
        clock.now += 3600
        assert await first.run_once() is None  # not a day yet
        # "a restart": another scheduler and owner over the same store
        other = ReportSender(
            sender.config, store, sender.directory, sender.resolver, logger, clock=clock
        )
        second = ReportScheduler(other, [], logger, clock=clock)
        assert await second.run_once() is None
        clock.now += 86400
        # a node holding the run (mid-run, or crashed less than a lease ago) keeps it
        assert await store.report_claim("reports:daily", "n1", clock.now, 0.0, 600.0) is not None
        assert await second.run_once(force=True) is None
        clock.now += 601  # the lease ran out
        assert await second.run_once() is not None

    _run(tmp_path, _dmarc("mailto:r@a.test"), body, store_url)


def test_daily_runs_follow_utc_days(tmp_path: Path, store_url: str) -> None:
    async def body(
        sender: ReportSender, store: MailStore, tallies: TallyBuffer, clock: Clock, log: io.StringIO
    ) -> None:
        scheduler = ReportScheduler(sender, [tallies], Logger(log, "debug"), clock=clock)
        clock.now = 1_800_000_000.0 - 1_800_000_000.0 % 86400 + 8 * 3600  # 08:00 UTC
        assert await scheduler.run_once() is not None
        clock.now += 16 * 3600 - 1  # 23:59:59: the same day
        assert await scheduler.run_once() is None
        clock.now += 2  # 00:00:01: a new day, 16 hours after the last run
        assert await scheduler.run_once() is not None

    _run(tmp_path, _dmarc("mailto:r@a.test"), body, store_url)
