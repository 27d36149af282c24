"""The resolver protocol and its errors.

Three outcomes matter to mail policy and must not be conflated: the name does not
exist (NXDOMAIN), it exists but has no record of this type (NODATA), and the lookup
failed for now (SERVFAIL, timeout). SPF's void-lookup limit, implicit MX and null MX
all depend on the difference (RFC 7208 §4.6.4, RFC 5321 §5.1, RFC 7505).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DnsError",
    "DnsNoData",
    "DnsNotFound",
    "DnsTempError",
    "MxRecord",
    "Resolver",
    "SrvRecord",
]


class DnsError(Exception):
    """Base of every DNS failure."""


class DnsNotFound(DnsError):
    """NXDOMAIN: the name does not exist."""


class DnsNoData(DnsError):
    """The name exists but holds no record of the type asked for."""


class DnsTempError(DnsError):
    """SERVFAIL, timeout, or no server answered: try again later."""


@dataclass(frozen=True, slots=True, order=True)
class MxRecord:
    preference: int
    host: str  # absolute name without the trailing dot; "" for a null MX (RFC 7505)


@dataclass(frozen=True, slots=True, order=True)
class SrvRecord:
    """One SRV record (RFC 2782); mail clients find their servers this way (RFC 6186)."""

    priority: int
    weight: int
    port: int
    target: str  # absolute, no trailing dot; "" for "." = service not offered (RFC 2782)


class Resolver(Protocol):
    """Asynchronous lookups; each raises a :class:`DnsError` subclass on failure."""

    async def mx(self, domain: str) -> list[MxRecord]: ...

    async def a(self, name: str) -> list[str]: ...

    async def aaaa(self, name: str) -> list[str]: ...

    async def txt(self, name: str) -> list[bytes]:
        """Each TXT record's character-strings joined (RFC 7208 §3.3)."""
        ...

    async def ptr(self, address: str) -> list[str]: ...

    async def srv(self, name: str) -> list[SrvRecord]:
        """Sorted by priority, then weight (callers pick by RFC 2782's rules)."""
        ...

    async def cname(self, name: str) -> str:
        """The canonical name *name* is an alias of (one hop, not followed further).

        Raises :class:`DnsNoData` when *name* exists but is not an alias.
        """
        ...
