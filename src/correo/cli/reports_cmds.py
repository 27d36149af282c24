"""``correo reports list|show|flush``: DMARC and TLS reports (docs/reports.md).

``list`` and ``show`` read the reports other domains sent to our report addresses;
``flush`` sends ours now instead of at the next daily run (the running server's queue
delivers the mail; an https: TLS report is POSTed by this command).  All of them work
on the store directly, whether or not the server runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from correo.config import load_config
from correo.directory.factory import open_directory
from correo.dns.real import DnsPythonResolver
from correo.log import Logger
from correo.reports.dmarcxml import summary_counts
from correo.reports.outbound import ReportSender
from correo.reports.schedule import ReportScheduler
from correo.reports.tlsjson import tls_counts
from correo.store.api import ReceivedReport
from correo.store.factory import open_store

__all__ = ["register"]


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp)) if stamp else "-"


def _counts(report: ReceivedReport) -> str:
    data = json.loads(report.data or "{}")
    if report.kind == "dmarc":
        total, failed = summary_counts(data)
        return f"{total} messages, {failed} failing"
    ok, bad = tls_counts(data)
    return f"{ok} sessions ok, {bad} failed"


def cmd_reports_list(args: argparse.Namespace) -> int:
    config = load_config(args.data_dir)

    async def read() -> list[ReceivedReport]:
        store = open_store(config)
        await store.open()
        try:
            listed = await store.report_list(args.kind, args.limit)
            full = [await store.report_get(r.id) for r in listed]
            return [r for r in full if r is not None]
        finally:
            await store.close()

    reports = asyncio.run(read())
    if not reports:
        print("no reports received")
        return 0
    print(f"{'ID':>5}  {'KIND':<6}  {'RECEIVED':<16}  {'DOMAIN':<24}  {'FROM':<24}  SUMMARY")
    for r in reports:
        print(
            f"{r.id:>5}  {r.kind:<6}  {_when(r.received):<16}  {r.domain[:24]:<24}"
            f"  {r.org[:24]:<24}  {_counts(r)}"
        )
    return 0


def cmd_reports_show(args: argparse.Namespace) -> int:
    config = load_config(args.data_dir)

    async def read() -> ReceivedReport | None:
        store = open_store(config)
        await store.open()
        try:
            return await store.report_get(args.id)
        finally:
            await store.close()

    report = asyncio.run(read())
    if report is None:
        print(f"no report {args.id}", file=sys.stderr)
        return 1
    print(f"Report {report.id}: {report.kind} from {report.org} ({report.report_id})")
    print(f"Domain:   {report.domain}")
    print(f"Period:   {_when(report.begin)} to {_when(report.end)} UTC")
    print(f"Received: {_when(report.received)} UTC")
    print(f"Summary:  {_counts(report)}")
    print(json.dumps(json.loads(report.data or "{}"), indent=2))
    return 0


def cmd_reports_flush(args: argparse.Namespace) -> int:
    config = load_config(args.data_dir)
    log = Logger(sys.stderr, "warning")

    async def run() -> int:
        store = open_store(config)
        await store.open()
        directory = await asyncio.to_thread(open_directory, config)
        try:
            resolver = DnsPythonResolver(config.dns.nameservers, dnssec=config.dns.dnssec)
            sender = ReportSender(config, store, directory, resolver, log)
            summary = await ReportScheduler(sender, [], log).run_once(force=True)
        finally:
            await store.close()
            await asyncio.to_thread(directory.close)
        if summary is None:
            print("a report run is in progress on another node; try again shortly")
            return 75
        print(
            f"reports sent: {summary.sent} ({summary.domains} domains;"
            f" {summary.deferred} held back by rate limits)"
        )
        for problem in summary.problems or ():
            print(f"problem: {problem}", file=sys.stderr)
        return 1 if summary.problems else 0

    return asyncio.run(run())


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``reports list|show|flush`` to the correo command line."""
    p = sub.add_parser("reports", help="DMARC and TLS reports: received ones, and sending ours")
    rsub = p.add_subparsers(dest="action", metavar="ACTION")
    rsub.required = True
    a = rsub.add_parser("list", help="reports received: id, kind, domain, reporter, counts")
    a.add_argument(
        "--kind", choices=("dmarc", "tlsrpt"), default=None, help="only reports of this kind"
    )
    a.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (newest)")
    a.set_defaults(func=cmd_reports_list)
    a = rsub.add_parser("show", help="one received report in full")
    a.add_argument("id", type=int, metavar="ID", help="the report's id (reports list)")
    a.set_defaults(func=cmd_reports_show)
    a = rsub.add_parser("flush", help="send our DMARC and TLS reports now")
    a.set_defaults(func=cmd_reports_flush)
