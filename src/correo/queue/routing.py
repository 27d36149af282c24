"""Where mail for a domain goes: transport map, smart host, or DNS MX.

Pure policy over a :class:`correo.dns.Resolver` (the only effect is DNS), so tests use
the in-memory resolver.  The result is an ordered list of addresses to try:

* MX records by preference, random order among equal preferences (RFC 5321 §5.1);
* no MX record (NODATA) → the domain itself, "implicit MX" (RFC 5321 §5.1);
* a null MX ``MX 0 .`` → permanent failure 5.1.10 (RFC 7505 §3);
* CNAMEs are followed by the resolver; IPv6 addresses before IPv4 for each host;
* IDNA domains are looked up by their A-labels (RFC 5890).
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from correo.dane.lookup import DaneHost
from correo.directory.addresses import AddressError, normalize_domain
from correo.dns.api import DnsError, DnsNoData, DnsNotFound, DnsTempError, Resolver, TlsaRecord
from correo.mtasts.policy import Policy

__all__ = [
    "NextHop",
    "Route",
    "RouteError",
    "RoutingTable",
    "Target",
    "apply_dane",
    "apply_sts",
    "handoff_domains",
    "parse_next_hop",
    "resolve_route",
    "source_address",
]

TlsMode = Literal["none", "opportunistic", "required"]
_MAX_MX = 10  # hosts tried per attempt; more only costs time against a broken domain
_MAX_TARGETS = 20
_NOT_IN_POLICY = "no MX host ({}) is allowed by the domain's MTA-STS policy"


@dataclass(frozen=True, slots=True)
class NextHop:
    """A transport-map entry or the smart host: how to reach a destination."""

    protocol: Literal["smtp", "lmtp"] = "smtp"
    host: str = ""  # "" = the recipient domain itself (MX lookup)
    port: int = 25
    mx: bool = True  # False when written "[host]": connect to host's A/AAAA directly
    tls: TlsMode = "opportunistic"
    verify: bool = False
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One address to connect to, with what to do once connected."""

    hostname: str  # the MX host name: TLS server name, logs, DSN Remote-MTA
    address: str
    port: int
    protocol: Literal["smtp", "lmtp"] = "smtp"
    tls: TlsMode = "opportunistic"
    verify: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str = ""  # trusted besides the system's CAs when verify is on
    #: DANE (RFC 7672) applies: TLS is mandatory and the certificate must satisfy
    #: ``tlsa``; with ``tlsa`` empty (no usable record) TLS is still mandatory (§2.2).
    dane: bool = False
    tlsa: tuple[TlsaRecord, ...] = ()
    names: tuple[str, ...] = ()  # DANE-TA reference identifiers (RFC 7672 §3.2.2)


@dataclass(frozen=True, slots=True)
class RouteError:
    permanent: bool
    status: str
    text: str

    def diagnostic(self) -> str:
        return f"{'550' if self.permanent else '451'} {self.status} {self.text}"


@dataclass(frozen=True, slots=True)
class Route:
    targets: tuple[Target, ...] = ()
    error: RouteError | None = None


def parse_next_hop(text: str, *, default_port: int = 25) -> NextHop:
    """``smtp:[host]:port``, ``smtp:host``, ``lmtp:host:port``, ``[host]:port`` or ``host``.

    Brackets turn the MX lookup off, as in Postfix's transport(5).  Raises ValueError.
    """
    protocol: Literal["smtp", "lmtp"] = "smtp"
    rest = text.strip()
    head, sep, tail = rest.partition(":")
    if sep and head.lower() in ("smtp", "lmtp"):
        protocol = "lmtp" if head.lower() == "lmtp" else "smtp"
        rest = tail
    mx = True
    port = default_port if protocol == "smtp" else 24
    if rest.startswith("["):
        host, close, after = rest[1:].partition("]")
        if not close:
            raise ValueError(f"unclosed bracket in next hop {text!r}")
        mx = False
        if after:
            if not after.startswith(":") or not after[1:].isdigit():
                raise ValueError(f"bad port in next hop {text!r}")
            port = int(after[1:])
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            host = rest
        elif port_text.isdigit():
            port = int(port_text)
        else:
            raise ValueError(f"bad port in next hop {text!r}")
    if protocol == "lmtp":
        mx = False
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad next hop {text!r}")
    return NextHop(protocol, host.lower(), port, mx)


@functools.lru_cache(maxsize=8)
def handoff_domains(transport: tuple[str, ...]) -> frozenset[str]:
    """Domains whose transport entry is an ``lmtp:`` next hop (``[outbound] transport``).

    For a local domain this means: the mailbox lives at an external MDA, so accepted
    mail is queued for the LMTP hop rather than filed in correo's store.
    Only exact domains count (not ``.parent`` patterns); malformed entries are skipped
    here — the queue runner reports them when it starts.
    """
    found: set[str] = set()
    for entry in transport:
        domain, _, spec = entry.strip().partition(" ")
        try:
            hop = parse_next_hop(spec)
        except ValueError:
            continue
        if hop.protocol == "lmtp" and domain and not domain.startswith("."):
            found.add(domain.lower())
    return frozenset(found)


class RoutingTable:
    """Transport map and smart host, as configured; local domains never get here."""

    def __init__(
        self,
        transport: Mapping[str, NextHop] | None = None,
        relayhost: NextHop | None = None,
        *,
        port: int = 25,
        tls: TlsMode = "opportunistic",
    ) -> None:
        self.transport = {k.lower(): v for k, v in (transport or {}).items()}
        self.relayhost = relayhost
        self.default = NextHop(port=port, tls=tls)

    def next_hop(self, domain: str) -> NextHop:
        """Exact domain, then parent domains written ``.example.org``, then the smart host."""
        d = domain.lower()
        hop = self.transport.get(d)
        if hop is None:
            labels = d.split(".")
            for i in range(1, len(labels)):
                hop = self.transport.get("." + ".".join(labels[i:]))
                if hop is not None:
                    break
        if hop is None:
            hop = self.relayhost or self.default
        return hop

    def destination(self, domain: str) -> str:
        """The key for concurrency limits and connection reuse."""
        hop = self.next_hop(domain)
        if hop.host:
            return f"{hop.protocol}:{hop.host}:{hop.port}"
        return f"{hop.protocol}:{domain.lower()}"


async def _addresses(resolver: Resolver, host: str) -> tuple[list[str], bool, bool]:
    """(IPv6 then IPv4 addresses, some lookup failed temporarily, the name does not exist)."""
    found: list[str] = []
    temp = False
    missing = 0
    for lookup in (resolver.aaaa, resolver.a):
        try:
            found += await lookup(host)
        except DnsTempError:
            temp = True
        except DnsNotFound:
            missing += 1
        except DnsNoData:
            pass
        except DnsError:
            temp = True
    return found, temp, missing == 2


async def resolve_route(
    hop: NextHop,
    domain: str,
    resolver: Resolver,
    rng: random.Random | None = None,
    *,
    allow: Callable[[str], bool] | None = None,
) -> Route:
    """The ordered targets for ``domain`` through ``hop``, or why there are none.

    ``allow``: which MX host names may be used (an enforced MTA-STS policy), applied
    before the per-attempt caps so that hosts it rejects never crowd out one it allows.
    """
    rng = rng or random.Random()
    name = hop.host or domain
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if _is_ip(name):  # an IP address as next hop (transport map, smart host)
        return Route((_target(hop, name, name),))
    try:
        name = normalize_domain(name)  # IDNA A-labels for DNS (RFC 5891 §5)
    except AddressError as exc:
        return Route(error=RouteError(True, "5.1.2", f"bad destination domain: {exc}"))
    hosts: list[str]
    if hop.mx:
        try:
            records = await resolver.mx(name)
        except DnsNotFound:
            return Route(error=RouteError(True, "5.1.2", f"domain {name} does not exist"))
        except DnsNoData:
            records = []
        except DnsError as exc:
            return Route(error=RouteError(False, "4.4.3", f"DNS lookup failed: {exc}"))
        if any(r.host in ("", ".") for r in records):
            # RFC 7505 §3: a null MX says the domain accepts no mail.
            return Route(error=RouteError(True, "5.1.10", f"domain {name} accepts no mail"))
        if records:
            by_pref: dict[int, list[str]] = {}
            for r in records:
                by_pref.setdefault(r.preference, []).append(r.host)
            hosts = []
            for pref in sorted(by_pref):
                group = by_pref[pref]
                rng.shuffle(group)  # RFC 5321 §5.1: randomise among equal preferences
                hosts += group
        else:
            hosts = [name]  # RFC 5321 §5.1: implicit MX
    else:
        hosts = [name]
    if allow is not None:
        allowed = [h for h in hosts if allow(h)]
        if not allowed:
            names = ", ".join(_dedupe(hosts)[:_MAX_MX])
            return Route(error=RouteError(False, "4.7.5", _NOT_IN_POLICY.format(names)))
        hosts = allowed
    targets: list[Target] = []
    temp = False
    for host in _dedupe(hosts)[:_MAX_MX]:
        if _is_ip(host):
            targets.append(_target(hop, host, host))
            continue
        addrs, t, _missing = await _addresses(resolver, host)
        temp = temp or t
        targets += [_target(hop, host, a) for a in addrs]
        if len(targets) >= _MAX_TARGETS:
            break
    if not targets:
        if temp:
            return Route(error=RouteError(False, "4.4.3", f"no address for {name} (DNS failure)"))
        return Route(error=RouteError(True, "5.4.4", f"no address found for {name}"))
    return Route(tuple(targets[:_MAX_TARGETS]))


def apply_dane(route: Route, hosts: Mapping[str, DaneHost], domain: str) -> Route:
    """An MX route with the DANE TLSA records of its hosts (RFC 7672 §2.2).

    A host with validated TLSA records is reached over STARTTLS only, its certificate
    checked against them (no plaintext fallback, §2.2); a host whose TLSA lookup failed
    is not used; none left means a temporary failure (4.7.5).
    """
    if not hosts or route.error is not None:
        return route
    kept: list[Target] = []
    errors: list[str] = []
    for t in route.targets:
        host = hosts.get(t.hostname)
        if host is None:
            kept.append(t)
        elif host.error:
            errors.append(host.error)
        else:
            names = tuple(dict.fromkeys((t.hostname, normalize_domain(domain))))
            kept.append(
                replace(t, tls="required", verify=False, dane=True, tlsa=host.records, names=names)
            )
    if not kept:
        return Route(error=RouteError(False, "4.7.5", errors[0] if errors else "no usable MX host"))
    return Route(tuple(kept))


def apply_sts(route: Route, policy: Policy, ca_file: str = "") -> Route:
    """An MX route under an ``enforce`` MTA-STS policy (RFC 8461 §4, §5).

    Only MX hosts the policy names remain, each to be reached over STARTTLS with a
    certificate valid for the MX host name; none left means a temporary failure, so
    the message waits for the next attempt (and a fresh look at the policy).  Hosts
    with DANE TLSA records keep DANE instead (RFC 8461 §2).
    """
    if policy.mode != "enforce" or route.error is not None:
        return route
    kept = tuple(
        t if t.dane else replace(t, tls="required", verify=True, ca_file=ca_file)
        for t in route.targets
        if t.dane or policy.allows(t.hostname)
    )
    if not kept:
        names = ", ".join(dict.fromkeys(t.hostname for t in route.targets))
        return Route(error=RouteError(False, "4.7.5", _NOT_IN_POLICY.format(names)))
    return Route(kept)


def source_address(
    target: str, ipv4: str, ipv6: str, listeners: Sequence[tuple[str, int]]
) -> str | None:
    """The local address to connect to ``target`` from, or None for the kernel's choice.

    ``[outbound] source_ipv4``/``source_ipv6`` when set, so SPF and the PTR name match
    the address mail leaves from; else the ``smtp`` listener's address when it listens
    on one specific address of that family (not 0.0.0.0 or ::).  A loopback listener is
    not used for a destination off this machine: the connection could not leave it.
    """
    try:
        dest = ipaddress.ip_address(target)
    except ValueError:
        return None
    configured = ipv4 if dest.version == 4 else ipv6
    if configured:
        return configured
    mine = []
    for host, _ in listeners:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None  # a host name: whatever it resolves to is not ours to guess
        if address.version == dest.version:
            mine.append(address)
    if len(mine) != 1 or mine[0].is_unspecified:
        return None
    if mine[0].is_loopback and not dest.is_loopback:
        return None
    return str(mine[0])


def _target(hop: NextHop, hostname: str, address: str) -> Target:
    t = Target(hostname, address, hop.port, hop.protocol, hop.tls, hop.verify)
    if hop.username is not None:
        t = replace(t, username=hop.username, password=hop.password)
    return t


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _dedupe(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))
