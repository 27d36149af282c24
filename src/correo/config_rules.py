"""What each configuration value may be: one rule per key, checked when the file loads.

A value that parses as TOML can still make a mail server misbehave without a word:
``lockout_seconds = nan`` never locks, ``connections = 0`` refuses every client, a
host name holding CR LF writes its own line into the SMTP greeting.  Every key of
every section therefore has a rule here — named in :data:`RULES`, or the default for
its type (:func:`default_rule`) — and :func:`correo.config.load_config` stops at the
first value that breaks one, with a single line naming the section, key and reason.

Checks that depend on the machine rather than the file (a certificate exists, a
socket path fits) run when the server starts, in :func:`serve_problems`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from correo.directory.addresses import AddressError, normalize_domain

if TYPE_CHECKING:
    from correo.config import Config

__all__ = [
    "RULES",
    "check_value",
    "default_rule",
    "hostname_problem",
    "normalize_hostname",
    "normalize_nameserver",
    "normalize_networks",
    "parse_size",
    "proxy_networks",
    "serve_problems",
]

#: A rule returns why a value is unusable, or None when it is fine.
Rule = Callable[[object], str | None]

#: Longest duration accepted anywhere (about 31 years): larger values overflow timers.
MAX_SECONDS = 1e9
#: ``sun_path`` is 108 bytes on Linux, one of them the terminating NUL (unix(7)).
MAX_SOCKET_PATH = 107
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- rule builders ------------------------------------------------------------------------


def count(low: int, high: int | None = None, *, zero: str = "") -> Rule:
    """An integer from ``low`` (to ``high``); ``zero`` names what 0 means, if allowed."""

    def rule(value: object) -> str | None:
        assert isinstance(value, int)
        if zero and value == 0:
            return None
        if value < low or (high is not None and value > high):
            span = f"{low} to {high}" if high is not None else f"at least {low}"
            extra = f" (or 0: {zero})" if zero else ""
            return f"must be {span}{extra}, not {value}"
        return None

    return rule


def seconds(*, zero: str = "") -> Rule:
    """A finite duration above zero; ``zero`` names what 0 means, if allowed."""

    def rule(value: object) -> str | None:
        assert isinstance(value, float)
        if not math.isfinite(value):
            return f"must be a finite number of seconds, not {value}"
        if value == 0 and zero:
            return None
        if value <= 0:
            extra = f" (or 0: {zero})" if zero else ""
            return f"must be more than 0 seconds{extra}"
        if value > MAX_SECONDS:
            return f"must be at most {MAX_SECONDS:.0f} seconds"
        return None

    return rule


def finite(value: object) -> str | None:
    """A finite number, not negative (a score or a weight)."""
    assert isinstance(value, float)
    if not math.isfinite(value):
        return f"must be a finite number, not {value}"
    return "must not be negative" if value < 0 else None


def choice(*options: str) -> Rule:
    def rule(value: object) -> str | None:
        if value in options:
            return None
        return f"must be {', '.join(options[:-1])} or {options[-1]}, not {value!r}"

    return rule


def each(rule: Rule) -> Rule:
    """Apply ``rule`` to every entry of a list."""

    def check(value: object) -> str | None:
        assert isinstance(value, tuple)
        for entry in value:
            problem = rule(entry)
            if problem is not None:
                return f"{entry!r}: {problem}"
        return None

    return check


def optional(rule: Rule) -> Rule:
    """The empty string (unset) or a value ``rule`` accepts."""
    return lambda value: None if value == "" else rule(value)


# -- value kinds --------------------------------------------------------------------------


def text(value: object) -> str | None:
    """Any string without control characters (CR LF would start a new protocol line)."""
    assert isinstance(value, str)
    return "must not contain control characters" if _CONTROL.search(value) else None


_SIZE = re.compile(r"([0-9]{1,15})\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str) -> int:
    """Octets of a size written as ``500M``, ``2G`` or ``1048576``
    (binary units: K = 1024); ValueError with the reason."""
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size such as 500M or 2G")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


def size(value: object) -> str | None:
    """A size such as ``500M`` or ``2G`` (:func:`parse_size`)."""
    assert isinstance(value, str)
    try:
        parse_size(value)
    except ValueError as exc:
        return str(exc)
    return None


def path(value: object) -> str | None:
    assert isinstance(value, str)
    if not value:
        return "must not be empty"
    return text(value)


def hostname_problem(value: object) -> str | None:
    """Why ``value`` is no host name: letters, digits, hyphens and dots (RFC 1123 §2.1),
    or an internationalised name that has an A-label form (RFC 5890)."""
    assert isinstance(value, str)
    if not value:
        return "must not be empty"
    if value.endswith("."):
        return "must not end with a dot"
    try:
        normalize_domain(value)
    except AddressError as exc:
        return f"is not a valid host name ({exc})"
    return None


def normalize_hostname(value: str) -> str:
    """The A-label form of a host name that :func:`hostname_problem` accepts."""
    return value if value.isascii() else normalize_domain(value)


def _ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def listen_host(value: str) -> str | None:
    """The host of a ``[listen]`` address: an IP address or a host name."""
    if _ip(value):
        return None
    if hostname_problem(value) is None:
        return None
    return "must be an IP address or a host name"


def proxy_networks(value: object) -> str | None:
    """``[server] proxy_protocol``: the load balancers' addresses or networks."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return 'must be a list of addresses or networks, e.g. ["10.0.0.0/8", "127.0.0.1"]'
    for text in value:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return f"{text[:60]!r} is not an IP address or network"
        try:
            ipaddress.ip_network(text)
        except ValueError:
            net = ipaddress.ip_network(text, strict=False)
            return f"{text!r} has bits set past its prefix length (did you mean {net}?)"
    return None


def normalize_networks(value: list[str]) -> tuple[str, ...]:
    """The canonical spelling of each network (``10.0.0.1`` becomes ``10.0.0.1/32``)."""
    return tuple(str(ipaddress.ip_network(v)) for v in value)


def normalize_nameserver(value: str) -> str:
    """``ip``, ``ip:port``, ``[v6]:port`` or a bare IPv6 address as ``ip:port``/``[v6]:port``.

    Raises ValueError with the reason.
    """
    host, port = value, "53"
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("expected [IPv6]:port")
        port = rest[1:] if rest else "53"
    elif not _ip(value) and ":" in value:
        host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("the port must be 1 to 65535")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("must be an IP address, optionally with :port") from None
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{shown}:{int(port)}"


def nameserver(value: object) -> str | None:
    assert isinstance(value, str)
    try:
        normalize_nameserver(value)
    except ValueError as exc:
        return str(exc)
    return None


def nameservers(value: object) -> str | None:
    """Every entry a name server address; one port for all (the resolver takes one)."""
    problem = each(nameserver)(value)
    if problem is not None:
        return problem
    assert isinstance(value, tuple)
    ports = {normalize_nameserver(v).rpartition(":")[2] for v in value}
    return "must all use the same port" if len(ports) > 1 else None


def recipient_delimiter(value: object) -> str | None:
    """Characters that start a +detail (RFC 5233): none may also delimit an address."""
    assert isinstance(value, str)
    for c in value:
        if c.isspace() or ord(c) < 32 or ord(c) == 127 or c in '@"\\<>()[],;:.':
            return f"must not contain {c!r} (it has a meaning in addresses)"
    if len(set(value)) != len(value):
        return "lists a character twice"
    return None


def next_hop(value: object) -> str | None:
    from correo.queue.routing import parse_next_hop  # the queue's own parser

    assert isinstance(value, str)
    try:
        parse_next_hop(value)
    except ValueError as exc:
        return str(exc)
    return text(value)


def transport(value: object) -> str | None:
    """``domain next-hop`` or ``.domain next-hop`` (docs/mta.md)."""
    assert isinstance(value, str)
    domain, _, hop = value.strip().partition(" ")
    if not hop.strip():
        return "expected 'domain next-hop', e.g. 'example.net lmtp:127.0.0.1:24'"
    problem = hostname_problem(domain[1:] if domain.startswith(".") else domain)
    return f"domain {problem}" if problem else next_hop(hop.strip())


def http_url(value: object) -> str | None:
    assert isinstance(value, str)
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if url.scheme != "http" or not url.hostname:
        return "must be an http:// URL with a host"
    return text(value)


def https_url(value: object) -> str | None:
    assert isinstance(value, str)
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if url.scheme != "https" or not url.hostname:
        return "must be an https:// URL with a host"  # RFC 8555 §6.1: ACME is HTTPS only
    return text(value)


def web_url(value: object) -> str | None:
    """An http:// or https:// URL with a host (where a webhook POSTs)."""
    assert isinstance(value, str)
    if value.startswith("https://"):
        return https_url(value)
    problem = http_url(value)
    return "must be an http:// or https:// URL with a host" if problem else None


def ip_of(version: int) -> Rule:
    """An IPv4 (4) or IPv6 (6) address in its plain form."""

    def rule(value: object) -> str | None:
        assert isinstance(value, str)
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return f"must be an IPv{version} address"
        return None if address.version == version else f"must be an IPv{version} address"

    return rule


def email(value: object) -> str | None:
    """A contact address for the ACME account (RFC 8555 §7.3: a mailto: URL is made of it)."""
    assert isinstance(value, str)
    local, at, domain = value.rpartition("@")
    if not at or not local or text(local) or any(c in local for c in ' <>,;:\\"?'):
        return "must be an address, user@domain"
    problem = hostname_problem(domain)
    return f"domain {problem}" if problem else None


def mailbox_name(value: object) -> str | None:
    assert isinstance(value, str)
    if not value.strip():
        return "must not be empty"
    return text(value)


def account(value: object) -> str | None:
    assert isinstance(value, str)
    local, at, domain = value.rpartition("@")
    if not at or not local or text(local):
        return "must be an account address, user@domain"
    problem = hostname_problem(domain)
    return f"domain {problem}" if problem else None


# -- the table ----------------------------------------------------------------------------


def report_address(value: object) -> str | None:
    """A local part (``dmarc-reports``: the same at every local domain) or an address."""
    if not isinstance(value, str) or not value:
        return "must be a local part or an address"
    if "@" in value:
        return email(value)
    if " " in value or '"' in value:
        return "must be a local part without spaces or quotes"
    return text(value)


_TIMEOUT = seconds()
_PORT = count(1, 65535)

#: (section, key) -> rule.  Keys missing here get :func:`default_rule`.
RULES: dict[tuple[str, str], Rule] = {
    ("limits", "message_size"): count(1),
    ("limits", "recipients"): count(1),
    ("limits", "command_line"): count(512),  # RFC 5321 §4.5.3.1.4
    ("limits", "data_line"): count(1000, zero="no limit"),  # RFC 5321 §4.5.3.1.6
    ("limits", "connections"): count(1),
    ("limits", "connections_per_ip"): count(1, zero="no limit"),
    ("limits", "command_timeout"): _TIMEOUT,
    ("limits", "data_timeout"): _TIMEOUT,
    ("limits", "bad_commands"): count(1),
    ("limits", "metadata_size"): count(1),
    ("limits", "metadata_entries"): count(1),
    ("limits", "body_cache"): count(0, zero="no cache"),
    ("limits", "listen_backlog"): count(1, 65535),
    ("limits", "index_workers"): count(1, 16, zero="extract in the server's process"),
    ("store", "body_cache_mb"): count(1, 1 << 24, zero="no body cache on disk"),
    ("store", "body_cache_dir"): optional(path),
    ("limits", "pop3_line"): count(255),  # RFC 2449 §4
    ("limits", "auth_line"): count(512),
    ("auth", "free_failures"): count(0),
    ("auth", "base_delay"): seconds(zero="no delay"),
    ("auth", "max_delay"): seconds(zero="no delay"),
    ("auth", "lockout_failures"): count(1),
    ("auth", "lockout_seconds"): _TIMEOUT,
    ("auth", "remember_logins"): seconds(zero="always verify"),
    ("auth", "scram_sha1_iterations"): count(4096, 10_000_000),  # RFC 5802 §5.1
    ("auth", "scram_sha256_iterations"): count(4096, 10_000_000),  # RFC 7677 §4
    ("tls", "certificate"): path,
    ("tls", "key"): path,
    ("smtp", "recipient_delimiter"): recipient_delimiter,
    ("smtp", "max_received_headers"): count(1),
    ("dns", "nameservers"): nameservers,
    ("mta_sts", "mode"): choice("enforce", "testing", "none"),  # RFC 8461 §5
    ("mta_sts", "max_age"): count(0, 31_557_600),  # RFC 8461 §3.2
    ("log", "level"): choice("debug", "info", "warning", "error"),
    ("log", "file"): optional(path),
    ("outbound", "port"): _PORT,
    ("outbound", "helo_name"): optional(hostname_problem),
    ("outbound", "tls"): choice("opportunistic", "none"),
    ("outbound", "max_connections"): count(1),
    ("outbound", "max_per_destination"): count(1),
    ("outbound", "max_messages_per_connection"): count(1),
    ("outbound", "retry_initial"): _TIMEOUT,
    ("outbound", "retry_max"): _TIMEOUT,
    ("outbound", "give_up"): _TIMEOUT,
    ("outbound", "delay_warning"): seconds(zero="no delay notice"),
    ("outbound", "poll_interval"): _TIMEOUT,
    ("outbound", "connect_timeout"): _TIMEOUT,
    ("outbound", "greeting_timeout"): _TIMEOUT,
    ("outbound", "command_timeout"): _TIMEOUT,
    ("outbound", "data_timeout"): _TIMEOUT,
    ("outbound", "data_end_timeout"): _TIMEOUT,
    ("outbound", "relayhost"): optional(next_hop),
    ("outbound", "relayhost_tls"): choice("required", "opportunistic", "none"),
    ("outbound", "relayhost_password_file"): optional(path),
    ("outbound", "transport"): each(transport),
    ("outbound", "mta_sts_port"): _PORT,
    ("outbound", "ca_file"): optional(path),
    ("outbound", "source_ipv4"): optional(ip_of(4)),
    ("outbound", "source_ipv6"): optional(ip_of(6)),
    ("reports", "dmarc_address"): report_address,
    ("reports", "tls_address"): report_address,
    ("reports", "interval"): _TIMEOUT,
    ("reports", "max_size"): count(1024),
    ("reports", "max_rows"): count(1),
    ("reports", "max_input"): count(1024),
    ("reports", "max_ratio"): count(2),
    ("reports", "contact"): optional(email),
    ("reports", "https_timeout"): _TIMEOUT,
    ("reports", "keep_days"): count(1),
    ("acme", "directory"): optional(https_url),
    ("acme", "email"): optional(email),
    ("acme", "challenge"): choice("tls-alpn-01", "http-01"),
    ("acme", "ca_file"): optional(path),
    ("acme", "names"): each(hostname_problem),
    ("delivery", "max_script_size"): count(1),
    ("delivery", "max_scripts"): count(1),
    ("delivery", "postmaster"): optional(account),
    ("delivery", "quota"): optional(size),
    ("delivery", "quota_messages"): count(0),
    ("lmtp", "socket"): optional(path),
    ("junk", "threshold"): finite,
    ("junk", "folder"): mailbox_name,
    ("junk", "dnsbl"): each(hostname_problem),
    ("junk", "dnsbl_score"): finite,
    ("junk", "dnsbl_timeout"): _TIMEOUT,
    ("junk", "auth_fail_score"): finite,
    ("junk", "bayes_weight"): finite,
    ("junk", "bayes_min_messages"): count(1),
    ("junk", "rspamd_url"): optional(http_url),
    ("junk", "rspamd_timeout"): _TIMEOUT,
    ("webhooks", "url"): web_url,
    ("webhooks", "events"): each(choice("delivered", "bounced", "deferred", "received")),
    ("webhooks", "addresses"): each(account),
    ("webhooks", "text_limit"): count(1024),
    ("webhooks", "link_expiry"): _TIMEOUT,
    ("webhooks", "files_url"): optional(https_url),
    ("webhooks", "timeout"): _TIMEOUT,
    ("webhooks", "retry_initial"): _TIMEOUT,
    ("webhooks", "retry_max"): _TIMEOUT,
    ("webhooks", "give_up"): _TIMEOUT,
}


def default_rule(value: object) -> str | None:
    """For keys without an entry: numbers finite and not negative, text without CTLs."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if isinstance(value, (int, float)) and value < 0:
        return "must not be negative"
    if isinstance(value, str):
        return text(value)
    if isinstance(value, tuple):
        return each(text)(value)
    return None


def check_value(section: str, key: str, value: object) -> str | None:
    """Why ``value`` is unusable for ``[section] key``, or None."""
    return RULES.get((section, key), default_rule)(value)


# -- checks at start-up -------------------------------------------------------------------


def serve_problems(config: Config) -> Iterator[str]:
    """What keeps ``correo serve`` from starting with ``config``, one line per problem."""
    cert, key = config.path(config.tls.certificate), config.path(config.tls.key)
    for name, file in (("certificate", cert), ("key", key)):
        if not file.is_file():
            yield f"[tls] {name}: {file} does not exist (correo init creates a self-signed one)"
    if config.lmtp.socket:
        sock = config.path(config.lmtp.socket)
        if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
            yield (
                f"[lmtp] socket: {sock} is longer than {MAX_SOCKET_PATH} bytes, "
                "the limit of a unix socket path"
            )
        elif not sock.parent.is_dir():
            yield f"[lmtp] socket: the folder {sock.parent} does not exist"
    if config.log.file and not config.path(config.log.file).parent.is_dir():
        yield f"[log] file: the folder {config.path(config.log.file).parent} does not exist"
    acme = config.acme
    if acme.directory:  # the CA must reach the listener that answers the challenge
        needs = "http" if acme.challenge == "http-01" else "https"
        if not config.listen.get(needs):
            yield f"[acme] challenge {acme.challenge} needs a [listen] {needs} address"
    out = config.outbound
    if out.relayhost and out.relayhost_password_file:
        secret = config.path(out.relayhost_password_file)
        if not secret.is_file():
            yield f"[outbound] relayhost_password_file: {secret} does not exist"
