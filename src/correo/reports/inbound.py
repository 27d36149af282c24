"""The MX's side of reports: which recipients are report addresses, taking reports in,
and counting every incoming message's DMARC result for the reports we send.

The SMTP session asks :meth:`ReportIntake.kind_of` at RCPT (a report address is
accepted whether or not an account has its name), hands the message to
:meth:`ReportIntake.take_in` before its 250 (parsed in a worker thread, stored durably),
and calls :meth:`ReportIntake.record_dmarc` with each verdict — except for mail to a
report address, so reports never cause reports about themselves.
"""

from __future__ import annotations

import asyncio

from correo.config import Config
from correo.directory import Directory
from correo.log import Logger
from correo.mailauth.inbound import AuthVerdict
from correo.reports.dmarcxml import DMARC_KIND, DmarcRow, dmarc_key
from correo.reports.intake import IntakeLimits, extract_reports
from correo.reports.tally import TallyBuffer
from correo.reports.tlsresults import TLS_KIND
from correo.store.api import MailStore

__all__ = ["ReportIntake", "report_address"]


def report_address(setting: str, domain: str) -> str:
    """``[reports] dmarc_address``/``tls_address`` at ``domain`` (an address stays as is)."""
    return setting if "@" in setting else f"{setting}@{domain}"


class ReportIntake:
    def __init__(
        self,
        config: Config,
        store: MailStore,
        directory: Directory,
        log: Logger,
        tallies: TallyBuffer | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.directory = directory
        self.log = log
        r = config.reports
        self.tallies = tallies or TallyBuffer(store, log, max_rows=r.max_rows)
        self.limits = IntakeLimits(r.max_input, r.max_ratio)
        #: The largest message read for its reports: a report of max_input bytes in
        #: base64, with room for the rest of the message.
        self.max_message = r.max_input * 4 // 3 + 1024 * 1024

    def kind_of(self, local_part: str, domain: str) -> str | None:
        """``dmarc`` or ``tlsrpt`` when local_part@domain is a report address here."""
        if not self.directory.is_local_domain(domain):
            return None
        address = f"{local_part}@{domain}".lower()
        r = self.config.reports
        if address == report_address(r.dmarc_address, domain).lower():
            return DMARC_KIND
        if address == report_address(r.tls_address, domain).lower():
            return TLS_KIND
        return None

    async def take_in(self, message: bytes, kinds: set[str], session: str = "") -> int:
        """Parse and keep the reports in ``message`` (off the loop); how many were kept.
        A report that cannot be used is logged and dropped: the message is still taken."""
        kept = 0
        for kind in sorted(kinds):
            reports, problems = await asyncio.to_thread(extract_reports, message, kind, self.limits)
            for problem in problems:
                self.log.warning("reports.refused", session=session, kind=kind, reason=problem)
            for report in reports:
                report_id = await self.store.report_add(report)
                kept += 1
                self.log.info(
                    "reports.received",
                    session=session,
                    kind=kind,
                    id=report_id,
                    org=report.org,
                    domain=report.domain,
                    report_id=report.report_id,
                )
        return kept

    def record_dmarc(self, verdict: AuthVerdict, source_ip: str, mail_from: str, to: str) -> None:
        """Count one message's DMARC result toward its policy domain's aggregate report
        (RFC 7489 §7.2), when that domain asks for reports (``rua``)."""
        dmarc = verdict.dmarc
        if not self.config.reports.send_dmarc or dmarc.record is None or not dmarc.record.rua:
            return
        domain = dmarc.record_domain or dmarc.from_domain
        row = DmarcRow(
            source_ip=source_ip,
            count=1,
            disposition=str(dmarc.disposition),
            dkim="pass" if dmarc.dkim_aligned else "fail",
            spf="pass" if dmarc.spf_aligned else "fail",
            header_from=dmarc.from_domain,
            envelope_to=to.rpartition("@")[2].lower(),
            envelope_from=mail_from.rpartition("@")[2].lower(),
            reason="sampled_out" if dmarc.sampled_out else "",
            dkim_results=tuple(
                (d.domain, d.selector, str(d.status)) for d in verdict.dkim[:5] if d.domain
            ),
            spf_result=(verdict.spf.domain, "mfrom", str(verdict.spf.result)),
        )
        self.tallies.add(DMARC_KIND, domain, dmarc_key(row))
