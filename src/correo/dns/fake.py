"""An in-memory resolver for tests: a zone as a dict."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from correo.dns.api import DnsNoData, DnsNotFound, DnsTempError, MxRecord, SrvRecord

__all__ = ["FakeResolver"]

Zone = Mapping[str, Mapping[str, Sequence[object]]]


class FakeResolver:
    """``FakeResolver({"example.com": {"MX": [(10, "mx.example.com")], "TXT": ["v=spf1 -all"]}})``.

    SRV values are ``(priority, weight, port, target)`` tuples, a CNAME value the target
    name; as in the DNS, other types at an alias are not looked up through it here
    except by :meth:`cname` itself.

    Names are case-insensitive; a type listed as ``"TIMEOUT"`` raises DnsTempError.
    ``queries`` records every lookup, so tests can count them (SPF's lookup limits).
    """

    def __init__(self, zone: Zone | None = None) -> None:
        self.zone: dict[str, dict[str, list[object]]] = {}
        self.queries: list[tuple[str, str]] = []
        for name, records in (zone or {}).items():
            for rtype, values in records.items():
                self.add(name, rtype, *values)

    def add(self, name: str, rtype: str, *values: object) -> None:
        entry = self.zone.setdefault(_key(name), {})
        entry.setdefault(rtype.upper(), []).extend(values)

    def _lookup(self, name: str, rtype: str) -> list[object]:
        key = _key(name)
        self.queries.append((key, rtype))
        entry = self.zone.get(key)
        if entry is None:
            raise DnsNotFound(f"{name}: NXDOMAIN")
        if "TIMEOUT" in entry or rtype + ":TIMEOUT" in entry:
            raise DnsTempError(f"{name}/{rtype}: timeout")
        values = entry.get(rtype)
        if not values:
            raise DnsNoData(f"{name}: no {rtype} record")
        return list(values)

    async def mx(self, domain: str) -> list[MxRecord]:
        records = []
        for value in self._lookup(domain, "MX"):
            assert isinstance(value, tuple) and len(value) == 2, value
            records.append(MxRecord(int(value[0]), str(value[1]).rstrip(".").lower()))
        return sorted(records)

    async def a(self, name: str) -> list[str]:
        return [str(ipaddress.IPv4Address(str(v))) for v in self._lookup(name, "A")]

    async def aaaa(self, name: str) -> list[str]:
        return [str(ipaddress.IPv6Address(str(v))) for v in self._lookup(name, "AAAA")]

    async def txt(self, name: str) -> list[bytes]:
        return [v if isinstance(v, bytes) else str(v).encode() for v in self._lookup(name, "TXT")]

    async def ptr(self, address: str) -> list[str]:
        reverse = ipaddress.ip_address(address).reverse_pointer
        return [str(v).rstrip(".").lower() for v in self._lookup(reverse, "PTR")]

    async def srv(self, name: str) -> list[SrvRecord]:
        records = []
        for value in self._lookup(name, "SRV"):
            assert isinstance(value, tuple) and len(value) == 4, value
            priority, weight, port, target = value
            records.append(SrvRecord(int(priority), int(weight), int(port), _key(str(target))))
        return sorted(records)

    async def cname(self, name: str) -> str:
        return _key(str(self._lookup(name, "CNAME")[0]))


def _key(name: str) -> str:
    return name.rstrip(".").lower()
