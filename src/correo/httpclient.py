"""The HTTP client side, on aiohttp: bounded reads and correo's own DNS.

A service of the core band: the MTA-STS policy fetch (:mod:`correo.queue.mtasts`) and
the rspamd check (:mod:`correo.delivery.junk`) use it.

Whatever an HTTP server sends is read up to a stated size and no further (a response
that announces or streams more is refused), within the caller's deadline.  Names are
resolved through a :class:`correo.dns.Resolver` when one is given, so the MTA-STS
fetch asks the same DNS the queue uses for MX records.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from correo.dns.api import DnsError, Resolver

__all__ = ["MAX_ADDRESSES", "ResponseTooLarge", "StoreResolver", "read_capped"]

MAX_ADDRESSES = 4  # addresses tried per name: a name with a hundred costs four attempts


class ResponseTooLarge(aiohttp.ClientError):
    """The response body is larger than the caller accepts."""


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body of ``response``, or ResponseTooLarge past ``limit`` octets (decoded)."""
    if response.content_length is not None and response.content_length > limit:
        raise ResponseTooLarge(f"the response is larger than {limit} bytes")
    data = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        data += chunk
        if len(data) > limit:
            raise ResponseTooLarge(f"the response is larger than {limit} bytes")
    return bytes(data)


class StoreResolver(AbstractResolver):
    """aiohttp's resolver interface over correo's resolver: AAAA first, then A."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found: list[ResolveResult] = []
        for lookup, fam in (
            (self.resolver.aaaa, socket.AF_INET6),
            (self.resolver.a, socket.AF_INET),
        ):
            if family not in (socket.AF_UNSPEC, fam):
                continue
            try:
                addresses = await lookup(host)
            except DnsError:
                continue
            for address in addresses:
                found.append(_result(host, address, port, fam))
        if not found:
            raise OSError(f"no address for {host}")
        return found[:MAX_ADDRESSES]

    async def close(self) -> None:
        return None


def _result(host: str, address: str, port: int, family: socket.AddressFamily) -> Any:
    result: ResolveResult = {
        "hostname": host,
        "host": address,
        "port": port,
        "family": family,
        "proto": 0,
        "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
    }
    return result
