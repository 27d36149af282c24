"""The production resolver: dnspython's asyncio resolver."""

from __future__ import annotations

from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

from correo.dns.api import DnsNoData, DnsNotFound, DnsTempError, MxRecord

__all__ = ["DnsPythonResolver"]


class DnsPythonResolver:
    """Lookups through dnspython; ``nameservers`` ("host:port") override /etc/resolv.conf."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 10.0) -> None:
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

    async def _query(self, name: str, rtype: str) -> dns.resolver.Answer:
        try:
            return await self._resolver.resolve(name, rtype, search=False)
        except dns.resolver.NXDOMAIN as exc:
            raise DnsNotFound(f"{name}: NXDOMAIN") from exc
        except dns.resolver.NoAnswer as exc:
            raise DnsNoData(f"{name}: no {rtype} record") from exc
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DnsTempError(f"{name}/{rtype}: {exc}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"{name}/{rtype}: {exc}") from exc

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
