"""Which MX hosts of a domain have DANE TLSA records (RFC 7672 §2.2).

DANE applies only along a chain of validated answers: the MX RRset (or its validated
absence, for the implicit MX) must be secure (§2.2.1), then the host's address records
(§2.2.2), then its TLSA RRset at ``_PORT._tcp.HOST`` (§2.2.3).  An insecure link anywhere
means no DANE for that host: TLS stays opportunistic (or MTA-STS applies).  A TLSA
lookup that fails other than by a validated denial (SERVFAIL: perhaps a bogus answer)
means the host must not be used at all (§2.2).

Not done: following a CNAME of the MX host to look TLSA up at the expanded name first
(§2.2.3); TLSA records are looked up at the MX host name itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from correo.dane.match import usable
from correo.directory.addresses import AddressError, normalize_domain
from correo.dns.api import DnsError, DnsNoData, DnsNotFound, DnssecResolver, TlsaRecord

__all__ = ["DaneHost", "dane_hosts"]

_MAX_HOSTS = 10  # as many MX hosts as routing tries


@dataclass(frozen=True, slots=True)
class DaneHost:
    """DANE for one MX host with a validated TLSA RRset.

    ``records``: the usable ones; empty when every record is unusable, which still makes
    TLS mandatory, without authentication (RFC 7672 §2.2).  ``published``: all of them
    (the TLS report's policy strings).  ``error``: the TLSA lookup failed, the host must
    not be used.
    """

    name: str
    records: tuple[TlsaRecord, ...] = ()
    published: tuple[TlsaRecord, ...] = ()
    error: str = ""


async def dane_hosts(resolver: DnssecResolver, domain: str, port: int = 25) -> dict[str, DaneHost]:
    """The MX hosts of ``domain`` that DANE applies to, by host name ({} when none do)."""
    try:
        domain = normalize_domain(domain)  # the A-label name routing looks up (RFC 5891 §5)
    except AddressError:
        return {}
    try:
        records = await resolver.mx(domain)
        hosts = list(dict.fromkeys(r.host for r in sorted(records) if r.host not in ("", ".")))
    except DnsNoData:
        hosts = [domain]  # RFC 7672 §2.2.1: the implicit MX, if its absence is validated
    except DnsError:
        return {}  # routing reports the failure
    try:
        if not await resolver.secure(domain, "MX"):
            return {}  # RFC 7672 §2.2.1: an insecure MX RRset, DANE does not apply
    except DnsError:
        return {}
    found = await asyncio.gather(*(_host(resolver, h, port) for h in hosts[:_MAX_HOSTS]))
    return {h.name: h for h in found if h is not None}


async def _host(resolver: DnssecResolver, host: str, port: int) -> DaneHost | None:
    families: list[bool] = []
    for rtype in ("AAAA", "A"):
        try:
            addresses = await (resolver.aaaa if rtype == "AAAA" else resolver.a)(host)
            if addresses:
                families.append(await resolver.secure(host, rtype))
        except DnsError:
            continue
    if not families or not all(families):
        return None  # RFC 7672 §2.2.2: insecure addresses, no TLSA lookup
    name = f"_{port}._tcp.{host}"  # RFC 7672 §2.2.3, RFC 6698 §3
    try:
        published = await resolver.tlsa(name)
        secure = await resolver.secure(name, "TLSA")
    except (DnsNotFound, DnsNoData):
        return None  # no TLSA records (validated or not): no DANE for this host
    except DnsError as exc:
        return DaneHost(host, error=f"TLSA lookup for {name} failed: {exc}")
    if not secure:
        return None  # RFC 7672 §2.2: TLSA records without validation are ignored
    return DaneHost(host, tuple(usable(published)), tuple(published))
