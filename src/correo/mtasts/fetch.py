"""Fetching a domain's MTA-STS policy over HTTPS (RFC 8461 §3.3), bounded in size and time.

The policy host's name is resolved through correo's own resolver (the one the queue
uses for MX records), and its certificate must be valid for ``mta-sts.<domain>``.
Redirects are not followed (§3.3) and only a ``200`` with ``text/plain`` counts.
HTTP itself is aiohttp's client (:mod:`correo.web.client`).
"""

from __future__ import annotations

import ssl

import aiohttp

from correo.dns.api import Resolver
from correo.web.client import StoreResolver, read_capped

__all__ = ["FetchError", "fetch_policy", "tls_context"]

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_BODY = 64 * 1024  # RFC 8461 §3.3: senders may limit a policy's size (64 KB suggested)
_MAX_HEAD = 16 * 1024


class FetchError(Exception):
    """The policy could not be fetched: the domain is treated as having none (or the
    cached policy is kept, RFC 8461 §5.1)."""


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The system's trust store (plus ``ca_file``), TLS 1.2 or later, names checked."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.hostname_checks_common_name = False  # RFC 8461 §3.3, RFC 6125: a DNS-ID in the SAN
    return ctx


async def fetch_policy(
    domain: str,
    resolver: Resolver,
    *,
    port: int = 443,
    context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> bytes:
    """The body of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; FetchError if not.

    ``domain`` is in A-labels. ``timeout`` bounds the whole fetch, every address tried
    included, so a policy host that drops packets costs one timeout, not one per address.
    """
    host = f"mta-sts.{domain}"
    if not host.isascii():
        raise FetchError(f"{host!r} is not an A-label name")
    ctx = context if context is not None else tls_context()
    if not ctx.check_hostname or ctx.verify_mode != ssl.CERT_REQUIRED:
        raise FetchError("the policy host's certificate must be verified")  # RFC 8461 §3.3
    connector = aiohttp.TCPConnector(
        ssl=ctx, resolver=StoreResolver(resolver), use_dns_cache=False, force_close=True
    )
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=timeout),
                max_line_size=_MAX_HEAD,
                max_field_size=_MAX_HEAD,
            ) as session,
            session.get(
                f"https://{host}:{port}{POLICY_PATH}",
                allow_redirects=False,  # RFC 8461 §3.3: a 3xx is not followed
                headers={"Accept": "text/plain", "User-Agent": "correo"},
            ) as response,
        ):
            if response.status != 200:
                raise FetchError(f"{host}: HTTP status {response.status}")
            if response.content_type != "text/plain":  # RFC 8461 §3.2
                raise FetchError(f"{host}: policy served as {response.content_type or 'nothing'}")
            return await read_capped(response, MAX_BODY)
    except TimeoutError:
        raise FetchError(f"{host}: no answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise FetchError(f"{host}: {exc or type(exc).__name__}") from None
