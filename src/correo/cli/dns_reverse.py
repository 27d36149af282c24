"""Forward-confirmed reverse DNS of the addresses outgoing mail leaves from.

Receivers look the connecting address up by PTR and the name found back by A/AAAA; mail
from an address that does not come back to itself is often refused or scored as spam
(RFC 8601 §2.7.3's iprev).  ``correo dns check`` runs :func:`check_sources`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from correo.config import Config
from correo.dns import DnsError, DnsNoData, DnsNotFound, Resolver
from correo.queue.routing import source_address

__all__ = ["SourceCheck", "check_sources", "fcrdns", "source_addresses"]

# Documentation addresses (RFC 5737, RFC 3849): asking the kernel how it would reach
# them names the address of the default route; a UDP connect sends nothing.
_PROBES = {4: "192.0.2.1", 6: "2001:db8::1"}


@dataclass(frozen=True, slots=True)
class SourceCheck:
    address: str
    origin: str  # why this address: "[outbound] source_ipv4", "the smtp listener", ...
    ok: bool | None  # None: not checked (an address receivers never see)
    text: str


def _kernel_choice(version: int) -> str | None:
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((_PROBES[version], 25))
            return str(sock.getsockname()[0])
    except OSError:  # no route of this family
        return None


def source_addresses(config: Config) -> list[tuple[str, str]]:
    """(address, why) for each family outgoing SMTP connections use, as the queue picks
    them (``correo.queue.routing.source_address``)."""
    out = config.outbound
    listeners = config.listen.get("smtp", ())
    found: list[tuple[str, str]] = []
    for version, configured, key in (
        (4, out.source_ipv4, "source_ipv4"),
        (6, out.source_ipv6, "source_ipv6"),
    ):
        if configured:
            found.append((configured, f"[outbound] {key}"))
            continue
        chosen = source_address(_PROBES[version], "", "", listeners)
        if chosen is not None:
            found.append((chosen, "the smtp listener's address"))
            continue
        kernel = _kernel_choice(version)
        if kernel is not None:
            found.append((kernel, "the kernel's choice (default route)"))
    return found


async def fcrdns(resolver: Resolver, address: str) -> tuple[bool, str]:
    """PTR of ``address``, then A/AAAA of each name found: does one lead back to it?"""
    try:
        names = await resolver.ptr(address)
    except (DnsNotFound, DnsNoData) as exc:
        return False, f"no PTR record ({type(exc).__name__})"
    except DnsError as exc:
        return False, f"PTR lookup failed: {exc}"
    want = ipaddress.ip_address(address)
    seen: list[str] = []
    for name in names[:10]:  # bounded, like receivers (RFC 8601 §2.7.3)
        lookup = resolver.a if want.version == 4 else resolver.aaaa
        try:
            addresses = await lookup(name)
        except DnsError:
            addresses = []
        if any(ipaddress.ip_address(a) == want for a in addresses):
            return True, f"{address} -> PTR {name} -> {address}"
        seen.append(f"{name} ({', '.join(addresses) or 'no address'})")
    return False, f"PTR names {'; '.join(seen)}: none resolves back to {address}"


async def check_sources(
    resolver: Resolver, sources: Sequence[tuple[str, str]]
) -> list[SourceCheck]:
    checks = []
    for address, origin in sources:
        ip = ipaddress.ip_address(address)
        if not origin.startswith("[outbound]") and not ip.is_global:
            # a private or loopback address is translated before it reaches receivers
            text = "not a public address: the one it is translated to needs the PTR record"
            checks.append(SourceCheck(address, origin, None, text))
            continue
        ok, text = await fcrdns(resolver, address)
        checks.append(SourceCheck(address, origin, ok, text))
    return checks
