"""Inbound message authentication for the MX role: SPF, DKIM, DMARC and ARC together.

The SMTP session feeds :class:`MessageAuthenticator` the message bytes as they arrive (the
same chunks it spools); DKIM and ARC body hashes are computed on the way, so nothing but
the header section is held.  At end of data ``await finish()`` runs the DNS work —
SPF, DKIM keys and ARC keys concurrently, then DMARC — and returns an :class:`AuthVerdict`
with the action to take and the Authentication-Results field to prepend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from correo.dns.api import Resolver
from correo.mailauth.arc import ArcResult, ArcStatus, ArcVerifier
from correo.mailauth.dkim import DkimResult, DkimStatus, DkimVerifier, check_signature
from correo.mailauth.dmarc import DmarcOutcome, DmarcPolicy, DmarcStatus, check_dmarc
from correo.mailauth.results import ResultItem, format_results
from correo.mailauth.spf import SpfResult, SpfVerdict, check_spf
from correo.message.headers import HeaderCollector, addresses_in, parse_fields

__all__ = ["Action", "AuthVerdict", "MessageAuthenticator", "from_domain_of"]


class Action(StrEnum):
    """What the MX should do with the message (RFC 7489 §6.6.4 / §6.7)."""

    ACCEPT = "accept"
    JUNK = "junk"  # p=quarantine: deliver to the recipient's Junk mailbox
    REJECT = "reject"  # p=reject: 550 5.7.1 at end of data


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    spf: SpfVerdict
    dkim: tuple[DkimResult, ...]
    dmarc: DmarcOutcome
    arc: ArcResult
    header: bytes  # "Authentication-Results: ...\r\n" to put on top of the message
    from_domain: str

    @property
    def action(self) -> Action:
        if self.dmarc.status is DmarcStatus.FAIL:
            if self.dmarc.disposition is DmarcPolicy.REJECT:
                return Action.REJECT
            if self.dmarc.disposition is DmarcPolicy.QUARANTINE:
                return Action.JUNK
        return Action.ACCEPT

    @property
    def reject_text(self) -> str:
        """Text for the 550 5.7.1 reply (RFC 7489 §6.7 / §10.3)."""
        return f"Message rejected by the DMARC policy of {self.dmarc.from_domain}"


def from_domain_of(
    header: bytes, fields: Sequence[tuple[str, str]] | None = None
) -> tuple[str, str]:
    """(domain, problem): the single RFC5322.From domain DMARC needs (RFC 7489 §6.6.1).

    ``fields``: ``parse_fields(header)`` when the caller has it already.
    """
    if fields is None:
        fields = parse_fields(header)
    values = [v for name, v in fields if name == "from"]
    if len(values) != 1:
        return "", f"{len(values)} From fields"
    addresses = addresses_in(values[0])
    domains = {a.rpartition("@")[2].lower().rstrip(".") for a in addresses if "@" in a}
    if len(domains) != 1:
        return "", "From has no single domain"
    return domains.pop(), ""


class MessageAuthenticator:
    """One message on the MX: ``feed()`` its bytes, then ``await finish()``."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        ip: str,
        helo: str,
        mail_from: str,
        authserv_id: str,
        header_limit: int = 256 * 1024,
        spf: SpfVerdict | None = None,
        dmarc_sample: float | None = None,
        now: float | None = None,
    ) -> None:
        self.resolver = resolver
        self.ip = ip
        self.helo = helo
        self.mail_from = mail_from
        self.authserv_id = authserv_id
        self.spf = spf
        self.dmarc_sample = dmarc_sample
        self.now = now
        self._collector = HeaderCollector(header_limit)
        self._dkim: DkimVerifier | None = None
        self._arc: ArcVerifier | None = None

    def _start_body(self) -> None:
        header = self._collector.header
        self._dkim = DkimVerifier(header)
        self._arc = ArcVerifier(self._dkim.fields)
        if self._arc.ams is not None:
            self._dkim.add_hasher(self._arc.ams)

    def feed(self, data: bytes) -> None:
        """Message bytes (CRLF line ends, dot-unstuffed) in chunks of any size."""
        if self._dkim is None:
            rest = self._collector.feed(data)
            if rest is None:
                return
            self._start_body()
            data = rest[2:] if rest.startswith(b"\r\n") else rest  # the blank line
        assert self._dkim is not None
        self._dkim.update(data)

    @property
    def header(self) -> bytes:
        """The header section as received (complete once the body has started)."""
        return self._collector.header

    async def finish(self, fields: Sequence[tuple[str, str]] | None = None) -> AuthVerdict:
        """End of data: every check, then DMARC on their results.

        ``fields``: ``parse_fields`` of this same header section, if the caller parsed
        it already (the SMTP session does, for its own checks): it is not parsed twice.
        """
        if self._dkim is None:
            self._collector.finish()
            self._start_body()
        assert self._dkim is not None and self._arc is not None
        now = time.time() if self.now is None else self.now
        digests = self._dkim.body_digests()
        dkim_verifier, arc_verifier = self._dkim, self._arc

        async def spf_task() -> SpfVerdict:
            if self.spf is not None:
                return self.spf
            return await check_spf(
                self.resolver, self.ip, self.mail_from, self.helo, receiver=self.authserv_id
            )

        async def dkim_task() -> list[DkimResult]:
            jobs = []
            for sig in dkim_verifier.signatures:
                if isinstance(sig, DkimResult):
                    jobs.append(_done(sig))
                else:
                    jobs.append(
                        check_signature(self.resolver, sig, dkim_verifier.fields, digests, now)
                    )
            return list(await asyncio.gather(*jobs))

        spf, dkim, arc = await asyncio.gather(
            spf_task(), dkim_task(), arc_verifier.verify(self.resolver, digests, now)
        )
        from_domain, problem = from_domain_of(self._collector.header, fields)
        if from_domain:
            spf_domains = [spf.domain] if spf.result is SpfResult.PASS else []
            dkim_domains = [r.domain for r in dkim if r.status is DkimStatus.PASS]
            dmarc = await check_dmarc(
                self.resolver,
                from_domain,
                spf_pass_domains=spf_domains,
                dkim_pass_domains=dkim_domains,
                sample=self.dmarc_sample,
            )
        else:
            dmarc = DmarcOutcome(DmarcStatus.PERMERROR, reason=problem)
        header = format_results(self.authserv_id, self._items(spf, dkim, dmarc, arc, from_domain))
        return AuthVerdict(spf, tuple(dkim), dmarc, arc, header, from_domain)

    def _items(
        self,
        spf: SpfVerdict,
        dkim: list[DkimResult],
        dmarc: DmarcOutcome,
        arc: ArcResult,
        from_domain: str,
    ) -> list[ResultItem]:
        """RFC 8601 §2.7 clauses, one per method (one per signature for DKIM)."""
        items: list[ResultItem] = []
        prop = ("smtp.mailfrom", self.mail_from) if self.mail_from else ("smtp.helo", self.helo)
        items.append(
            ResultItem(
                "spf",
                str(spf.result),
                (prop,),
                comment=_spf_comment(spf, self.ip),
            )
        )
        if not dkim:
            items.append(ResultItem("dkim", "none"))
        for r in dkim:
            props = [("header.d", r.domain), ("header.s", r.selector)]
            if r.identity:
                props.append(("header.i", r.identity))
            props += [("header.a", r.algorithm), ("header.b", r.header_b)]
            comment = r.reason + (" (testing)" if r.testing else "")
            items.append(
                ResultItem("dkim", str(r.status), tuple(p for p in props if p[1]), comment)
            )
        dmarc_comment = ""
        if dmarc.record is not None:
            dmarc_comment = f"p={dmarc.policy} dis={dmarc.disposition}"
            if dmarc.sampled_out:
                dmarc_comment += f" pct={dmarc.record.pct}"
        elif dmarc.reason:
            dmarc_comment = dmarc.reason
        items.append(
            ResultItem(
                "dmarc",
                str(dmarc.status),
                (("header.from", from_domain),) if from_domain else (),
                dmarc_comment,
            )
        )
        arc_comment = f"i={arc.instances}" if arc.instances else ""
        if arc.status is ArcStatus.FAIL and arc.reason:
            arc_comment = f"{arc_comment} {arc.reason}".strip()
        items.append(ResultItem("arc", str(arc.status), (), arc_comment))
        return items


def _spf_comment(spf: SpfVerdict, ip: str) -> str:
    outcome = spf.mail_from
    if not outcome.domain:
        return ""
    detail = outcome.mechanism or outcome.problem
    return f"{outcome.domain}: {ip} {detail}".strip()


async def _done(result: DkimResult) -> DkimResult:
    return result
