"""What the HTTPS responder serves, per local domain:

* ``https://mta-sts.<domain>/.well-known/mta-sts.txt``: the domain's MTA-STS policy
  (RFC 8461 §3.3), naming this server as the MX; ``correo dns`` prints the matching
  ``_mta-sts`` TXT record, whose id is derived from the policy text so that it changes
  whenever the policy does (§3.1);
* ``https://autoconfig.<domain>/mail/config-v1.1.xml`` and
  ``https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml``: the account settings
  Thunderbird-class clients look up when a user types only an address and a password.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape

from correo.http.request import Request, response

__all__ = ["Site", "autoconfig_xml", "mta_sts_id", "mta_sts_policy"]

POLICY_PATH = "/.well-known/mta-sts.txt"
AUTOCONFIG_PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")


def mta_sts_policy(hostname: str, mode: str = "enforce", max_age: int = 604800) -> str:
    """The policy body (RFC 8461 §3.2): this server is the domain's one MX."""
    return f"version: STSv1\nmode: {mode}\nmx: {hostname}\nmax_age: {max_age}\n"


def mta_sts_id(policy: str) -> str:
    """The TXT record's ``id`` for ``policy``: 1-32 alphanumerics (§3.1), new per change."""
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


# (service in [listen], autoconfig element, type, socketType); the first bound port counts
_CLIENT_SERVICES = (
    ("imaps", "incomingServer", "imap", "SSL"),
    ("imap", "incomingServer", "imap", "STARTTLS"),
    ("pop3s", "incomingServer", "pop3", "SSL"),
    ("pop3", "incomingServer", "pop3", "STARTTLS"),
    ("submissions", "outgoingServer", "smtp", "SSL"),
    ("submission", "outgoingServer", "smtp", "STARTTLS"),
)


def autoconfig_xml(domain: str, hostname: str, ports: Mapping[str, int]) -> bytes:
    """Thunderbird's clientConfig 1.1 for ``domain``: the services that listen, TLS first."""
    host = escape(hostname)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{escape(domain)}">',
        f"    <domain>{escape(domain)}</domain>",
        f"    <displayName>{escape(domain)} mail</displayName>",
        f"    <displayShortName>{escape(domain)}</displayShortName>",
    ]
    for service, element, kind, socket_type in _CLIENT_SERVICES:
        port = ports.get(service)
        if port is None:
            continue
        lines += [
            f'    <{element} type="{kind}">',
            f"      <hostname>{host}</hostname>",
            f"      <port>{port}</port>",
            f"      <socketType>{socket_type}</socketType>",
            "      <authentication>password-cleartext</authentication>",
            "      <username>%EMAILADDRESS%</username>",
            f"    </{element}>",
        ]
    lines += ["  </emailProvider>", "</clientConfig>", ""]
    return "\n".join(lines).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Site:
    hostname: str
    domains: Callable[[], Collection[str]]  # the local domains, as the directory has them now
    ports: Mapping[str, int]  # client-facing service -> port, for autoconfig
    mta_sts_mode: str = "enforce"
    mta_sts_max_age: int = 604800

    def answer(self, request: Request) -> bytes:
        """The whole response to ``request``."""
        head_only = request.method == "HEAD"
        domains = {d.lower() for d in self.domains()}
        if request.path == POLICY_PATH:
            domain = request.host.removeprefix("mta-sts.")
            if request.host.startswith("mta-sts.") and domain in domains:
                policy = mta_sts_policy(self.hostname, self.mta_sts_mode, self.mta_sts_max_age)
                return response(200, policy.encode(), head_only=head_only, max_age=3600)
        elif request.path in AUTOCONFIG_PATHS:
            domain = request.host.removeprefix("autoconfig.")
            address = (request.query.get("emailaddress") or [""])[0]
            if domain not in domains and "@" in address:
                domain = address.rpartition("@")[2].lower()
            if domain in domains:
                body = autoconfig_xml(domain, self.hostname, self.ports)
                return response(200, body, "text/xml; charset=utf-8", head_only=head_only)
        return response(404, b"Not found\n", head_only=head_only)
