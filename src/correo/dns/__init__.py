"""correo.dns: the one door to DNS.

Policy code (SPF, DKIM, DMARC, MX routing) takes a :class:`Resolver` argument, so tests
use :class:`FakeResolver` and production uses :class:`DnsPythonResolver` (dnspython's
async resolver, optionally pointed at ``[dns] nameservers``).
"""

from correo.dns.api import (
    DnsError,
    DnsNoData,
    DnsNotFound,
    DnssecResolver,
    DnsTempError,
    MxRecord,
    Resolver,
    SrvRecord,
    TlsaRecord,
)
from correo.dns.fake import FakeResolver
from correo.dns.real import DnsPythonResolver

__all__ = [
    "DnsError",
    "DnsNoData",
    "DnsNotFound",
    "DnsPythonResolver",
    "DnsTempError",
    "DnssecResolver",
    "FakeResolver",
    "MxRecord",
    "Resolver",
    "SrvRecord",
    "TlsaRecord",
]
