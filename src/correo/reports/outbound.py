"""Sending our reports: DMARC aggregate reports (RFC 7489 §7.2) to each policy domain's
``rua``, TLS reports (RFC 8460 §5) to each recipient domain's ``_smtp._tls`` rua.

One run (:meth:`ReportSender.run`) takes every tallied row of every domain, builds the
domain's report, and hands it to each destination: a ``mailto:`` rua gets a DKIM-signed
message (gzip attachment) filed in the outbound queue, from the reports address of our
first local domain, so the queue's retries and DSNs apply; an ``https:`` TLS rua gets a
POST of ``application/tlsrpt+gzip``.  A DMARC destination outside the policy domain must
agree to receive its reports (§7.1); a destination's ``!size`` limit is kept; each
destination domain gets at most one report per ``[reports] destination_interval``
(rows of a domain whose destinations are all rate-limited wait for the next run).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from correo.config import Config
from correo.directory import Directory
from correo.dns.api import DnsError, Resolver
from correo.log import Logger
from correo.mailauth.dmarc import fetch_record, organizational_domain
from correo.mailauth.keys import load_signer
from correo.reports.dmarcxml import DMARC_KIND, PolicyPublished, build_report, row_from_key
from correo.reports.inbound import report_address
from correo.reports.tlsjson import build_tls_report
from correo.reports.tlsresults import TLS_KIND
from correo.store.api import Envelope, MailStore, QueuedRecipient, ReportTally, StoreError

__all__ = ["ReportSender", "RunSummary", "parse_rua", "tlsrpt_rua"]

#: How long a node may hold a destination's or the daily run's claim.
LEASE = 600.0
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True, slots=True)
class Destination:
    scheme: str  # "mailto" or "https"
    target: str  # the address, or the URL
    max_size: int = 0  # RFC 7489 §6.2 "!" size limit; 0 = none


@dataclass
class RunSummary:
    sent: int = 0  # reports handed to a destination
    domains: int = 0  # domains whose rows were reported (or dropped)
    deferred: int = 0  # domains left for a later run (rate limits)
    problems: list[str] | None = None


def parse_rua(value: str) -> list[Destination]:
    """RFC 7489 §6.4 ``rua``/RFC 8460 §3 ``rua``: comma-separated URIs, DMARC's with an
    optional ``!size[kmgt]``; unknown schemes are left out."""
    out: list[Destination] = []
    for item in value.split(",")[:10]:
        uri = item.strip()
        size = 0
        if "!" in uri:
            uri, _, limit = uri.partition("!")
            digits = limit.rstrip("kmgtKMGT")
            unit = limit[len(digits) :].lower()
            if digits.isdigit() and unit in _UNITS:
                size = int(digits) * _UNITS[unit]
        scheme, _, rest = uri.partition(":")
        scheme = scheme.lower()
        if scheme == "mailto" and "@" in rest:
            out.append(Destination("mailto", rest.split("?")[0], size))
        elif scheme == "https" and rest.startswith("//"):
            out.append(Destination("https", uri, size))
    return out


async def tlsrpt_rua(resolver: Resolver, domain: str) -> list[Destination]:
    """RFC 8460 §3: the rua of ``_smtp._tls.<domain>`` (exactly one v=TLSRPTv1 record)."""
    try:
        records = await resolver.txt(f"_smtp._tls.{domain}")
    except DnsError:
        return []
    found = [r for r in records if r[:10].lower() == b"v=tlsrptv1"]
    if len(found) != 1:
        return []
    for field in found[0].decode("utf-8", "replace").split(";"):
        name, _, value = field.strip().partition("=")
        if name.strip().lower() == "rua":
            return parse_rua(value)
    return []


async def _dmarc_destination_ok(resolver: Resolver, policy_domain: str, dest: Destination) -> bool:
    """RFC 7489 §7.1: a rua outside the policy domain's organizational domain must
    publish ``<policy-domain>._report._dmarc.<rua-domain>`` starting with v=DMARC1."""
    if dest.scheme != "mailto":
        return False  # DMARC aggregate reports go by mail only here
    rua_domain = dest.target.rpartition("@")[2].lower().rstrip(".")
    if organizational_domain(rua_domain) == organizational_domain(policy_domain):
        return True
    try:
        records = await resolver.txt(f"{policy_domain}._report._dmarc.{rua_domain}")
    except DnsError:
        return False
    return any(r[:8].lower() == b"v=dmarc1" for r in records)


class ReportSender:
    def __init__(
        self,
        config: Config,
        store: MailStore,
        directory: Directory,
        resolver: Resolver,
        log: Logger,
        *,
        clock: Callable[[], float] = time.time,
        owner: str = "",
        kick: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.directory = directory
        self.resolver = resolver
        self.log = log
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.kick = kick

    # -- who we are ----------------------------------------------------------------

    def _our_domain(self) -> str:
        domains = sorted(self.directory.domains())
        return domains[0] if domains else self.config.hostname

    def sender_addresses(self) -> set[str]:
        """Envelope senders of our reports (their own sessions are never reported)."""
        r = self.config.reports
        domain = self._our_domain()
        return {report_address(r.dmarc_address, domain), report_address(r.tls_address, domain)}

    @property
    def org_name(self) -> str:
        return self.config.reports.org_name or self.config.hostname

    @property
    def contact(self) -> str:
        return self.config.reports.contact or f"postmaster@{self._our_domain()}"

    # -- one run -------------------------------------------------------------------

    async def run(self) -> RunSummary:
        """Report every domain with tallied rows, DMARC then TLS."""
        summary = RunSummary(problems=[])
        r = self.config.reports
        kinds = [k for k, on in ((DMARC_KIND, r.send_dmarc), (TLS_KIND, r.send_tls)) if on]
        for kind in kinds:
            for domain in await self.store.report_tally_domains(kind):
                try:
                    await self._domain(kind, domain, summary)
                except (StoreError, OSError) as exc:
                    assert summary.problems is not None
                    summary.problems.append(f"{kind} {domain}: {exc}")
                    self.log.error("reports.send_failed", kind=kind, domain=domain, error=str(exc))
        return summary

    async def _destinations(self, kind: str, domain: str) -> tuple[list[Destination], object]:
        if kind == DMARC_KIND:
            try:
                record, _where = await fetch_record(self.resolver, domain)
            except DnsError:
                return [], None
            if record is None:
                return [], None
            dests = parse_rua(",".join(record.rua))
            ok = [d for d in dests if await _dmarc_destination_ok(self.resolver, domain, d)]
            for d in dests:
                if d not in ok:
                    self.log.info("reports.destination_refused", domain=domain, rua=d.target)
            return ok, record
        return await tlsrpt_rua(self.resolver, domain), None

    async def _domain(self, kind: str, domain: str, summary: RunSummary) -> None:
        dests, record = await self._destinations(kind, domain)
        now = self.clock()
        claimed: list[tuple[Destination, str]] = []
        interval = self.config.reports.destination_interval
        for dest in dests:
            key = dest.target.rpartition("@")[2] if dest.scheme == "mailto" else dest.target
            name = f"rate:{kind}:{key.lower()}"
            if await self.store.report_claim(name, self.owner, now, interval, LEASE) is not None:
                claimed.append((dest, name))
        if dests and not claimed:
            summary.deferred += 1
            self.log.info("reports.rate_limited", kind=kind, domain=domain)
            return
        tallies = await self.store.report_take(kind, domain)
        summary.domains += 1
        if not tallies or not claimed:
            if tallies:
                self.log.info("reports.no_destination", kind=kind, domain=domain)
            return
        begin = int(min(t.first for t in tallies))
        end = int(max(now, max(t.last for t in tallies)))
        report_id = f"{int(now)}.{uuid.uuid4().hex[:16]}@{self.config.hostname}"
        # building and compressing up to max_rows rows is CPU work: off the event loop
        if kind == DMARC_KIND:
            document, filename = await asyncio.to_thread(
                self._dmarc_document, domain, record, tallies, report_id, begin, end
            )
        else:
            document = await asyncio.to_thread(
                functools.partial(
                    build_tls_report,
                    org_name=self.org_name,
                    contact=self.contact,
                    report_id=report_id,
                    begin=begin,
                    end=end,
                    policy_domain=domain,
                    tallies=tallies,
                )
            )
            filename = f"{self.org_name}!{domain}!{begin}!{end}.json.gz"  # RFC 8460 §5.3
        payload = await asyncio.to_thread(gzip.compress, document, 9, mtime=0)
        failed = 0
        for dest, name in claimed:
            limit = min(x for x in (dest.max_size, self.config.reports.max_size) if x)
            if len(payload) > limit:
                self.log.warning(
                    "reports.too_large", kind=kind, domain=domain, to=dest.target, size=len(payload)
                )
                await self.store.report_release(name, self.owner)
                continue
            try:
                if dest.scheme == "mailto":
                    await self._mail(kind, domain, dest.target, payload, filename, report_id)
                else:
                    await self._post(domain, dest.target, payload)
            except (OSError, TimeoutError, ValueError) as exc:
                self.log.warning(
                    "reports.delivery_failed", kind=kind, to=dest.target, error=str(exc)
                )
                await self.store.report_release(name, self.owner)
                failed += 1
                continue
            await self.store.report_done(name, self.owner, self.clock())
            summary.sent += 1
            self.log.info(
                "reports.sent",
                kind=kind,
                domain=domain,
                to=dest.target,
                rows=len(tallies),
                size=len(payload),
                report_id=report_id,
            )
        if failed == len(claimed):  # nobody got it: the rows wait for the next run
            await self.store.report_tally(tallies, max_rows=self.config.reports.max_rows)

    def _dmarc_document(
        self,
        domain: str,
        record: object,
        tallies: list[ReportTally],
        report_id: str,
        begin: int,
        end: int,
    ) -> tuple[bytes, str]:
        from correo.mailauth.dmarc import DmarcRecord

        assert isinstance(record, DmarcRecord)
        policy = PolicyPublished(
            domain=domain,
            p=str(record.policy),
            sp=str(record.subdomain_policy or record.policy),
            pct=record.pct,
            adkim="s" if record.adkim_strict else "r",
            aspf="s" if record.aspf_strict else "r",
        )
        document = build_report(
            org_name=self.org_name,
            email=self.contact,
            report_id=report_id,
            begin=begin,
            end=end,
            policy=policy,
            rows=[row_from_key(t.key, t.count) for t in tallies],
        )
        # RFC 7489 §7.2.1.1: receiver "!" policy-domain "!" begin "!" end "." extension
        return document, f"{self.org_name}!{domain}!{begin}!{end}.xml.gz"

    # -- delivery ------------------------------------------------------------------

    async def _mail(
        self, kind: str, domain: str, to: str, payload: bytes, filename: str, report_id: str
    ) -> None:
        ours = self._our_domain()
        r = self.config.reports
        sender = report_address(r.dmarc_address if kind == DMARC_KIND else r.tls_address, ours)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = sender
        msg["To"] = to
        # RFC 7489 §7.2.1.1 and RFC 8460 §5.3: the subject names domain, submitter, id
        msg["Subject"] = (
            f"Report Domain: {domain} Submitter: {self.org_name} Report-ID: <{report_id}>"
        )
        msg["Date"] = format_datetime(datetime.fromtimestamp(self.clock(), UTC))
        msg["Message-ID"] = make_msgid(domain=ours)
        if kind == TLS_KIND:
            msg["TLS-Report-Domain"] = domain  # RFC 8460 §5.3
            msg["TLS-Report-Submitter"] = self.org_name
        text = (
            f"This is a {'DMARC aggregate' if kind == DMARC_KIND else 'SMTP TLS'} report for"
            f" {domain} from {self.org_name}.\r\n"
        )
        msg.set_content(text)
        if kind == DMARC_KIND:
            msg.add_attachment(payload, maintype="application", subtype="gzip", filename=filename)
        else:
            msg.add_attachment(
                payload, maintype="application", subtype="tlsrpt+gzip", filename=filename
            )
            msg.replace_header("Content-Type", 'multipart/report; report-type="tlsrpt"')
            msg.set_boundary(f"tlsrpt-{uuid.uuid4().hex}")
        data = msg.as_bytes()
        data = await self._sign(ours, data)
        envelope = Envelope(sender=sender, helo=self.config.hostname, body="8BITMIME")
        spool = self.store.new_spool()
        try:
            spool.write(data)
            await self.store.deliver(spool, envelope, [], [QueuedRecipient(to)])
        except BaseException:
            spool.discard()
            raise
        if self.kick is not None:
            self.kick()

    async def _sign(self, domain: str, data: bytes) -> bytes:
        """DKIM-sign with the domain's active key, as submission does (none: unsigned)."""
        signers = await asyncio.to_thread(load_signer, self.directory.dkim, [domain])
        signer = signers.get(domain.lower())
        if signer is None:
            self.log.warning("reports.unsigned", domain=domain)
            return data
        stream = signer.stream()
        stream.feed(data)
        return stream.finish() + data

    async def _post(self, domain: str, url: str, payload: bytes) -> None:
        """RFC 8460 §5.4: POST the gzip'd report; any 2xx answer is success."""
        import aiohttp

        out = self.config.outbound
        ca_file = str(self.config.path(out.ca_file)) if out.ca_file else None
        ctx = await asyncio.to_thread(ssl.create_default_context, cafile=ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        timeout = aiohttp.ClientTimeout(total=self.config.reports.https_timeout)
        headers = {"Content-Type": "application/tlsrpt+gzip"}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(
                    url, data=payload, headers=headers, ssl=ctx, allow_redirects=False
                ) as resp,
            ):
                await resp.content.read(4096)
                if not 200 <= resp.status < 300:
                    raise ValueError(f"{url} answered {resp.status}")
        except aiohttp.ClientError as exc:
            raise OSError(f"{url}: {exc}") from None
