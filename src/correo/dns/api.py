"""The resolver protocol and its errors.

Three outcomes matter to mail policy and must not be conflated: the name does not
exist (NXDOMAIN), it exists but has no record of this type (NODATA), and the lookup
failed for now (SERVFAIL, timeout). SPF's void-lookup limit, implicit MX and null MX
all depend on the difference (RFC 7208 §4.6.4, RFC 5321 §5.1, RFC 7505).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "DnsError",
    "DnsNoData",
    "DnsNotFound",
    "DnsTempError",
    "DnssecResolver",
    "MxRecord",
    "Resolver",
    "SrvRecord",
    "TlsaRecord",
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


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    """One TLSA record (RFC 6698 §2.1): who it names, what part, how it is matched."""

    usage: int  # 2 = DANE-TA, 3 = DANE-EE (the two SMTP uses, RFC 7672 §3.1)
    selector: int  # 0 = the whole certificate, 1 = its SubjectPublicKeyInfo
    mtype: int  # 0 = exact, 1 = SHA-256, 2 = SHA-512
    data: bytes

    def text(self) -> str:
        """Presentation form, as in a zone file and a TLS report (RFC 8460 §4.4)."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


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


@runtime_checkable
class DnssecResolver(Resolver, Protocol):
    """A resolver that can say whether an answer was DNSSEC-validated.

    It trusts the AD bit of its (validating, trusted) recursive resolver, as Postfix
    does (RFC 4035 §3.2.3, RFC 6840 §5.8): a validating resolver on the same host or a
    trusted network path.  ``secure`` answers for the same (cached) answer the other
    lookups returned, denials of existence included.
    """

    async def secure(self, name: str, rtype: str) -> bool:
        """Whether the answer for (name, rtype), records or their proven absence, was
        validated; False when DNSSEC is off.  Raises DnsTempError when the lookup fails."""
        ...

    async def tlsa(self, name: str) -> list[TlsaRecord]: ...
