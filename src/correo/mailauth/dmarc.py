"""DMARC (RFC 7489): does the From: domain's owner vouch for this message?

DMARC passes when SPF or DKIM passed for a domain *aligned* with the From: domain; the
published policy then says what to do with the rest.  Organizational domains come from
the Public Suffix List bundled with the ``publicsuffixlist`` package (no download at run
time).  The pct= sample is drawn by the caller's ``sample`` value so tests are exact.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from correo.dns.api import DnsError, DnsNoData, DnsNotFound, Resolver
from correo.mailauth.canon import TagError, parse_tags

__all__ = [
    "DmarcOutcome",
    "DmarcPolicy",
    "DmarcRecord",
    "DmarcStatus",
    "aligned",
    "check_dmarc",
    "fetch_record",
    "organizational_domain",
    "parse_record",
]


class DmarcStatus(StrEnum):
    """RFC 7489 §11.2 / RFC 8601 dmarc results."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class DmarcPolicy(StrEnum):
    """RFC 7489 §6.3 p=, and the disposition we apply."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    policy: DmarcPolicy
    subdomain_policy: DmarcPolicy | None = None
    adkim_strict: bool = False
    aspf_strict: bool = False
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DmarcOutcome:
    """The evaluation: ``disposition`` is what the receiver should do (RFC 7489 §6.6.4)."""

    status: DmarcStatus
    from_domain: str = ""
    policy: DmarcPolicy = DmarcPolicy.NONE  # the published policy that applies (p= or sp=)
    disposition: DmarcPolicy = DmarcPolicy.NONE
    record: DmarcRecord | None = None
    spf_aligned: bool = False
    dkim_aligned: bool = False
    sampled_out: bool = False  # pct= excluded this message: policy softened (§6.6.4)
    reason: str = ""
    record_domain: str = ""
    reporting: tuple[str, ...] = field(default=())


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list bundled with the package: read once, no network


@lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the registrable domain per the Public Suffix List."""
    domain = domain.lower().rstrip(".")
    psl = _psl()
    org = psl.privatesuffix(domain)
    return str(org) if org else domain


def aligned(a: str, b: str, strict: bool) -> bool:
    """RFC 7489 §3.1: strict = same name; relaxed = same organizational domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if a == b:
        return True
    return not strict and organizational_domain(a) == organizational_domain(b)


def _policy(value: str | None) -> DmarcPolicy | None:
    if value is None:
        return None
    try:
        return DmarcPolicy(value.strip().lower())
    except ValueError:
        return None


def _uris(value: str) -> tuple[str, ...]:
    return tuple(u.strip() for u in value.split(",") if u.strip())


def parse_record(text: bytes) -> DmarcRecord | None:
    """RFC 7489 §6.3/§6.4; None when the record is not usable."""
    try:
        tags = parse_tags(text.decode("ascii"))
    except (TagError, UnicodeDecodeError):
        return None
    if next(iter(tags), None) != "v" or tags["v"] != "DMARC1":
        return None  # RFC 7489 §6.4: v= first, exactly DMARC1
    policy = _policy(tags.get("p"))
    rua = _uris(tags.get("rua", ""))
    if policy is None:
        if not rua:
            return None
        policy = DmarcPolicy.NONE  # RFC 7489 §6.6.3: bad p= with rua means p=none
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() and len(pct_text) <= 3 else 100
    return DmarcRecord(
        policy=policy,
        subdomain_policy=_policy(tags.get("sp")),
        adkim_strict=tags.get("adkim", "r").lower() == "s",
        aspf_strict=tags.get("aspf", "r").lower() == "s",
        pct=min(pct, 100),
        rua=rua,
        ruf=_uris(tags.get("ruf", "")),
    )


async def _lookup(resolver: Resolver, domain: str) -> DmarcRecord | None:
    """TXT at _dmarc.domain; DnsTempError propagates."""
    try:
        records = await resolver.txt(f"_dmarc.{domain}")
    except (DnsNotFound, DnsNoData):
        return None
    found = [r for r in records if r[:8].lower() == b"v=dmarc1"]
    if len(found) != 1:
        return None  # RFC 7489 §6.6.3: none, or more than one, means no policy
    return parse_record(found[0])


async def fetch_record(resolver: Resolver, from_domain: str) -> tuple[DmarcRecord | None, str]:
    """RFC 7489 §6.6.3: the From domain's record, else its organizational domain's."""
    record = await _lookup(resolver, from_domain)
    if record is not None:
        return record, from_domain
    org = organizational_domain(from_domain)
    if org != from_domain:
        record = await _lookup(resolver, org)
        if record is not None:
            return record, org
    return None, ""


async def check_dmarc(
    resolver: Resolver,
    from_domain: str,
    *,
    spf_pass_domains: Iterable[str] = (),
    dkim_pass_domains: Iterable[str] = (),
    sample: float | None = None,
) -> DmarcOutcome:
    """Evaluate DMARC for the RFC 5322.From domain.

    ``spf_pass_domains``: the domain SPF passed for (MAIL FROM, or HELO for the null
    sender, RFC 7489 §3.1.2); ``dkim_pass_domains``: the d= of each passing signature.
    ``sample`` in [0, 1) decides the pct= draw (random when None).
    """
    from_domain = from_domain.lower().rstrip(".")
    if not from_domain or "." not in from_domain:
        return DmarcOutcome(DmarcStatus.PERMERROR, from_domain, reason="no usable From domain")
    try:
        record, record_domain = await fetch_record(resolver, from_domain)
    except DnsError as exc:
        return DmarcOutcome(DmarcStatus.TEMPERROR, from_domain, reason=str(exc))
    if record is None:
        return DmarcOutcome(DmarcStatus.NONE, from_domain, reason="no DMARC record")
    policy = record.policy
    if record_domain != from_domain and record.subdomain_policy is not None:
        policy = record.subdomain_policy  # RFC 7489 §6.3 sp=
    dkim_ok = any(aligned(d, from_domain, record.adkim_strict) for d in dkim_pass_domains)
    spf_ok = any(aligned(d, from_domain, record.aspf_strict) for d in spf_pass_domains)
    base = DmarcOutcome(
        DmarcStatus.PASS,
        from_domain,
        policy=policy,
        record=record,
        spf_aligned=spf_ok,
        dkim_aligned=dkim_ok,
        record_domain=record_domain,
        reporting=record.rua,
    )
    if dkim_ok or spf_ok:
        return base  # RFC 7489 §4.2: either aligned pass is enough
    draw = random.random() if sample is None else sample
    disposition = policy
    sampled_out = False
    if record.pct < 100 and draw * 100 >= record.pct:  # RFC 7489 §6.6.4
        sampled_out = True
        disposition = {
            DmarcPolicy.REJECT: DmarcPolicy.QUARANTINE,
            DmarcPolicy.QUARANTINE: DmarcPolicy.NONE,
            DmarcPolicy.NONE: DmarcPolicy.NONE,
        }[policy]
    return DmarcOutcome(
        DmarcStatus.FAIL,
        from_domain,
        policy=policy,
        disposition=disposition,
        record=record,
        sampled_out=sampled_out,
        reason="no aligned SPF or DKIM pass",
        record_domain=record_domain,
        reporting=record.rua,
    )
