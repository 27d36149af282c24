"""An in-memory resolver for tests: a zone as a dict."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from correo.dns.api import DnsNoData, DnsNotFound, DnsTempError, MxRecord, SrvRecord, TlsaRecord

__all__ = ["FakeResolver"]

Zone = Mapping[str, Mapping[str, Sequence[object]]]


class FakeResolver:
    """``FakeResolver({"example.com": {"MX": [(10, "mx.example.com")], "TXT": ["v=spf1 -all"]}})``.

    SRV values are ``(priority, weight, port, target)`` tuples, a CNAME value the target
    name; as in the DNS, other types at an alias are not looked up through it here
    except by :meth:`cname` itself.

    Names are case-insensitive; a type listed as ``"TIMEOUT"`` raises DnsTempError.
    ``queries`` records every lookup, so tests can count them (SPF's lookup limits).
    TLSA values are ``(usage, selector, mtype, data)`` with data as bytes or hex; the
    answers for the names in ``signed`` (a denial of existence included) count as
    DNSSEC-validated (:meth:`secure`).
    """

    def __init__(self, zone: Zone | None = None, signed: Sequence[str] = ()) -> None:
        self.zone: dict[str, dict[str, list[object]]] = {}
        self.queries: list[tuple[str, str]] = []
        self.signed = {_key(n) for n in signed}
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

    async def secure(self, name: str, rtype: str) -> bool:
        try:
            self._lookup(name, rtype)
        except (DnsNotFound, DnsNoData):
            pass
        return _key(name) in self.signed

    async def tlsa(self, name: str) -> list[TlsaRecord]:
        records = []
        for value in self._lookup(name, "TLSA"):
            assert isinstance(value, tuple) and len(value) == 4, value
            usage, selector, mtype, data = value
            raw = data if isinstance(data, bytes) else bytes.fromhex(str(data))
            records.append(TlsaRecord(int(usage), int(selector), int(mtype), raw))
        return records


def _key(name: str) -> str:
    return name.rstrip(".").lower()
