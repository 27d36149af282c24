"""The production resolver: dnspython's asyncio resolver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

from correo.dns.api import DnsError, DnsNoData, DnsNotFound, DnsTempError, MxRecord, SrvRecord

if TYPE_CHECKING:
    from correo.metrics import Metrics

__all__ = ["DnsPythonResolver"]

_CACHE_SIZE = 10_000
_MAX_TTL = 3600.0
_NEGATIVE_TTL = 60.0  # seconds; RFC 2308 lets resolvers choose up to the SOA minimum


class DnsPythonResolver:
    """Lookups through dnspython; ``nameservers`` ("host:port") override /etc/resolv.conf."""

    def __init__(
        self, nameservers: Sequence[str] = (), timeout: float = 10.0, metrics: Metrics | None = None
    ) -> None:
        #: Counts lookups and cache hits when set (the server's /metrics).
        self.metrics = metrics
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
        # Every inbound message asks the same few names (SPF, DMARC, DKIM keys of busy
        # senders): answers, negative ones included, are cached for their TTL, and
        # identical lookups in flight at the same moment share one query.
        self._inflight: dict[tuple[str, str], asyncio.Future[dns.resolver.Answer]] = {}
        # (name, type) -> (expiry, answer or the DnsError to raise again)
        self._cache: dict[tuple[str, str], tuple[float, dns.resolver.Answer | DnsError]] = {}

    async def _query(self, name: str, rtype: str) -> dns.resolver.Answer:
        key = (name.lower(), rtype)
        if self.metrics is not None:
            self.metrics.dns_lookups.labels(rtype).inc()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > time.monotonic():
                if self.metrics is not None:
                    self.metrics.dns_cache_hits.inc()
                if isinstance(hit[1], DnsError):
                    raise type(hit[1])(str(hit[1]))
                return hit[1]
            del self._cache[key]
        shared = self._inflight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        future: asyncio.Future[dns.resolver.Answer] = asyncio.ensure_future(
            self._resolve(name, rtype)
        )
        self._inflight[key] = future
        future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)

    def _remember(
        self, key: tuple[str, str], value: dns.resolver.Answer | DnsError, ttl: float
    ) -> None:
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()  # crude but bounded; refilled by the next lookups
        self._cache[key] = (time.monotonic() + ttl, value)

    async def _resolve(self, name: str, rtype: str) -> dns.resolver.Answer:
        key = (name.lower(), rtype)
        try:
            answer = await self._resolver.resolve(name, rtype, search=False)
        except dns.resolver.NXDOMAIN as exc:
            error: DnsError = DnsNotFound(f"{name}: NXDOMAIN")
            self._remember(key, error, _NEGATIVE_TTL)  # RFC 2308 negative caching
            raise error from exc
        except dns.resolver.NoAnswer as exc:
            error = DnsNoData(f"{name}: no {rtype} record")
            self._remember(key, error, _NEGATIVE_TTL)
            raise error from exc
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DnsTempError(f"{name}/{rtype}: {exc}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"{name}/{rtype}: {exc}") from exc
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        self._remember(key, answer, min(float(ttl), _MAX_TTL))
        return answer

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
