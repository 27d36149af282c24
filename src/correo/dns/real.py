"""The production resolver: dnspython's asyncio resolver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.resolver
import dns.reversename

from correo.dns.api import (
    DnsError,
    DnsNoData,
    DnsNotFound,
    DnsTempError,
    MxRecord,
    SrvRecord,
    TlsaRecord,
)

if TYPE_CHECKING:
    from correo.metrics import Metrics

__all__ = ["DnsPythonResolver"]

_CACHE_SIZE = 10_000
_MAX_TTL = 3600.0
_NEGATIVE_TTL = 60.0  # seconds; RFC 2308 lets resolvers choose up to the SOA minimum

#: A lookup's outcome: the answer or the error to raise again, and its AD bit.
_Entry = tuple["dns.resolver.Answer | DnsError", bool]


def _ad(*responses: object) -> bool:
    """Every response of the lookup carried AD: the resolver validated it (RFC 4035 §3.2.3)."""
    flags = [getattr(r, "flags", 0) for r in responses]
    return bool(flags) and all(f & dns.flags.AD for f in flags)


class DnsPythonResolver:
    """Lookups through dnspython; ``nameservers`` ("host:port") override /etc/resolv.conf.

    ``dnssec``: ask for validated answers (the AD and DO bits, RFC 6840 §5.7) and report
    the AD bit of each answer through :meth:`secure`.  The resolver answering must be a
    validating one on a trusted path (the same host, or a protected network).
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        timeout: float = 10.0,
        metrics: Metrics | None = None,
        *,
        dnssec: bool = False,
    ) -> None:
        #: Counts lookups and cache hits when set (the server's /metrics).
        self.metrics = metrics
        self.dnssec = dnssec
        if nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            addrs, ports = [], set()
            for entry in nameservers:
                host, _, port = entry.rpartition(":")
                addrs.append(host.strip("[]") or entry)
                ports.add(int(port) if port.isdigit() else 53)
            self._resolver.nameservers = addrs
            self._resolver.port = ports.pop() if len(ports) == 1 else 53
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 5.0)
        if dnssec:
            # RFC 6840 §5.7: AD in the query asks for AD in the answer; DO for resolvers
            # that only set AD for DNSSEC-aware clients (RFC 4035 §3.2.3).
            self._resolver.flags = dns.flags.RD | dns.flags.AD
            self._resolver.use_edns(0, dns.flags.DO, 1232)
        # Every inbound message asks the same few names (SPF, DMARC, DKIM keys of busy
        # senders): answers, negative ones included, are cached for their TTL, and
        # identical lookups in flight at the same moment share one query.
        self._inflight: dict[tuple[str, str], asyncio.Future[_Entry]] = {}
        # (name, type) -> (expiry, (answer or the DnsError to raise again, AD bit))
        self._cache: dict[tuple[str, str], tuple[float, _Entry]] = {}

    async def _entry(self, name: str, rtype: str) -> _Entry:
        """The (cached) outcome of a lookup; DnsTempError is raised, never cached."""
        key = (name.lower(), rtype)
        if self.metrics is not None:
            self.metrics.dns_lookups.labels(rtype).inc()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > time.monotonic():
                if self.metrics is not None:
                    self.metrics.dns_cache_hits.inc()
                return hit[1]
            del self._cache[key]
        shared = self._inflight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        future: asyncio.Future[_Entry] = asyncio.ensure_future(self._resolve(name, rtype))
        self._inflight[key] = future
        future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)

    async def _query(self, name: str, rtype: str) -> dns.resolver.Answer:
        value, _ = await self._entry(name, rtype)
        if isinstance(value, DnsError):
            raise type(value)(str(value))
        return value

    async def secure(self, name: str, rtype: str) -> bool:
        """Whether the answer for (name, rtype) carried the AD bit (False unless dnssec)."""
        if not self.dnssec:
            return False
        _, authenticated = await self._entry(name, rtype)
        return authenticated

    def _remember(self, key: tuple[str, str], value: _Entry, ttl: float) -> None:
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()  # crude but bounded; refilled by the next lookups
        self._cache[key] = (time.monotonic() + ttl, value)

    async def _resolve(self, name: str, rtype: str) -> _Entry:
        key = (name.lower(), rtype)
        try:
            answer = await self._resolver.resolve(
                name, rtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            responses = exc.responses()  # type: ignore[no-untyped-call]
            entry: _Entry = (DnsNotFound(f"{name}: NXDOMAIN"), _ad(*responses.values()))
            self._remember(key, entry, _NEGATIVE_TTL)  # RFC 2308 negative caching
            return entry
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DnsTempError(f"{name}/{rtype}: {exc}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"{name}/{rtype}: {exc}") from exc
        if answer.rrset is None:
            entry = (DnsNoData(f"{name}: no {rtype} record"), _ad(answer.response))
            self._remember(key, entry, _NEGATIVE_TTL)
            return entry
        entry = (answer, _ad(answer.response))
        self._remember(key, entry, min(float(answer.rrset.ttl), _MAX_TTL))
        return entry

    async def tlsa(self, name: str) -> list[TlsaRecord]:
        return [
            TlsaRecord(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert))
            for r in await self._query(name, "TLSA")
        ]

    async def mx(self, domain: str) -> list[MxRecord]:
        answer = await self._query(domain, "MX")
        return sorted(
            MxRecord(int(r.preference), r.exchange.to_text(omit_final_dot=True).lower())
            for r in answer
        )

    async def a(self, name: str) -> list[str]:
        return [r.address for r in await self._query(name, "A")]

    async def aaaa(self, name: str) -> list[str]:
        return [r.address for r in await self._query(name, "AAAA")]

    async def txt(self, name: str) -> list[bytes]:
        return [b"".join(r.strings) for r in await self._query(name, "TXT")]

    async def ptr(self, address: str) -> list[str]:
        name = dns.reversename.from_address(address).to_text()
        return [
            r.target.to_text(omit_final_dot=True).lower() for r in await self._query(name, "PTR")
        ]

    async def srv(self, name: str) -> list[SrvRecord]:
        return sorted(
            SrvRecord(
                int(r.priority),
                int(r.weight),
                int(r.port),
                r.target.to_text(omit_final_dot=True).lower().rstrip("."),
            )
            for r in await self._query(name, "SRV")
        )

    async def cname(self, name: str) -> str:
        answer = await self._query(name, "CNAME")
        return str(answer[0].target.to_text(omit_final_dot=True).lower())
