"""Configuration: ``DATA/correo.toml`` loaded into typed, validated settings.

Every key is documented in docs/config.md.  Unknown keys are errors: a typo such as
``mesage_size`` silently ignored would leave a mail server with a limit its
administrator believes is set.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from correo.config_rules import (
    check_value,
    hostname_problem,
    listen_host,
    normalize_hostname,
    normalize_nameserver,
    normalize_networks,
    proxy_networks,
)

__all__ = [
    "PROXY_SERVICES",
    "SERVICES",
    "AcmeSettings",
    "AuthSettings",
    "Config",
    "ConfigError",
    "DeliverySettings",
    "DnsSettings",
    "JunkSettings",
    "Limits",
    "LmtpSettings",
    "LogSettings",
    "OutboundSettings",
    "SmtpSettings",
    "StoreSettings",
    "TlsSettings",
    "WebhookSettings",
    "default_listen",
    "load_config",
    "parse_hostport",
    "render_default_config",
]

#: Services a ``[listen]`` list can name, in start-up order.
SERVICES = (
    "smtp",
    "submission",
    "submissions",
    "pop3",
    "pop3s",
    "imap",
    "imaps",
    "lmtp",
    "sieve",
    "http",  # ACME http-01 answers; everything else is redirected to https
    "https",
    "metrics",
)
_LATER_SERVICES: tuple[str, ...] = ()

_DEFAULT_PORTS = {
    "smtp": 2525,
    "submission": 2587,
    "submissions": 2465,
    "pop3": 2110,
    "pop3s": 2995,
    "imap": 2143,
    "imaps": 2993,
    "lmtp": 2424,  # off in new configs (_OFF_BY_DEFAULT): the [lmtp] socket is the default
    "sieve": 4190,  # RFC 5804 §1.8 registered port
    "http": 2080,  # ACME http-01 and a redirect to https (80 in production)
    "https": 2443,  # MTA-STS policy and client autoconfiguration (443 in production)
    "metrics": 9187,  # Prometheus /metrics, /healthz, /readyz, /status (docs/operations.md)
}
# LMTP has no authentication: whoever reaches it delivers mail, so TCP is opt-in.
_OFF_BY_DEFAULT = frozenset({"lmtp"})
#: Listeners that read a PROXY header from ``[server] proxy_protocol`` peers unless
#: ``proxy_protocol_services`` says otherwise: the ones clients reach through a load
#: balancer; a local MTA's LMTP and the monitoring scrape come directly.
PROXY_SERVICES = tuple(s for s in SERVICES if s not in ("lmtp", "metrics"))
_SERVER_KEYS = frozenset({"hostname", "proxy_protocol", "proxy_protocol_services"})


class ConfigError(Exception):
    """A configuration problem, worded for the administrator."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits; each bounds what one peer can make the server spend."""

    message_size: int = 50 * 1024 * 1024
    recipients: int = 100
    command_line: int = 2048
    data_line: int = 0
    connections: int = 1000
    connections_per_ip: int = 50
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    bad_commands: int = 20
    pop3_line: int = 512
    auth_line: int = 12288
    ipv6_prefix: int = 64  # IPv6 clients are counted per network of this length (32..128)
    mailboxes_per_account: int = 10_000  # IMAP CREATE/RENAME past it: NO [LIMIT]; 0 = none
    metadata_size: int = 64 * 1024  # octets of one IMAP METADATA value (RFC 5464 MAXSIZE)
    metadata_entries: int = 1000  # METADATA entries per account: NO [METADATA TOOMANY]
    body_cache: int = 64 * 1024 * 1024  # bytes of small bodies kept for FETCH; 0 = none
    listen_backlog: int = 1024  # connections the kernel queues per listener before accept
    index_workers: int = 1  # processes extracting SEARCH index texts; 0 = on the event loop


@dataclass(frozen=True, slots=True)
class AuthSettings:
    free_failures: int = 3
    base_delay: float = 1.0
    max_delay: float = 15.0
    lockout_failures: int = 10
    lockout_seconds: float = 300.0
    allow_plaintext: bool = False
    remember_logins: float = 300.0
    min_password_length: int = 10  # characters; `correo user add` and `passwd` refuse fewer
    scram_sha1_iterations: int = 4096  # PBKDF2 rounds of new SCRAM-SHA-1 verifiers
    scram_sha256_iterations: int = 8192  # and of SCRAM-SHA-256 ones (RFC 7677 §4: >= 4096)
    tls_exporter_binding: bool = False  # SCRAM-*-PLUS on TLS 1.3, bound by tls-exporter


@dataclass(frozen=True, slots=True)
class TlsSettings:
    certificate: str = "tls/cert.pem"
    key: str = "tls/key.pem"


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    recipient_delimiter: str = "+"
    max_received_headers: int = 50


@dataclass(frozen=True, slots=True)
class DnsSettings:
    nameservers: tuple[str, ...] = ()
    #: Trust the AD bit of the resolver (a validating one on a trusted path): DANE for
    #: outbound mail (RFC 7672).  docs/mta.md "DANE".
    dnssec: bool = False


@dataclass(frozen=True, slots=True)
class MtaStsSettings:
    """The MTA-STS policy this server publishes for its domains on ``https``."""

    mode: str = "enforce"  # "enforce", "testing" or "none" (RFC 8461 §5)
    max_age: int = 604800  # seconds senders keep the policy (one week)


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """DMARC aggregate (RFC 7489 §7) and SMTP TLS (RFC 8460) reports (docs/reports.md)."""

    dmarc_address: str = "dmarc-reports"  # local part (or address) taking DMARC reports
    tls_address: str = "tls-reports"  # local part (or address) taking TLS reports
    send_dmarc: bool = True  # report DMARC results to the rua of domains that ask
    send_tls: bool = True  # report outbound TLS results to the domains' _smtp._tls rua
    interval: float = 86400.0  # seconds between report runs (one day)
    destination_interval: float = 3600.0  # at most one report per rua domain this often
    max_size: int = 10 * 1024 * 1024  # largest report attachment sent (rua "!" may lower it)
    max_rows: int = 10_000  # aggregated result rows kept per domain and kind
    max_input: int = 16 * 1024 * 1024  # decompressed bytes of a received report
    max_ratio: int = 200  # decompressed size over compressed size of a received report
    org_name: str = ""  # our name in reports; "" = the hostname
    contact: str = ""  # contact address in reports; "" = postmaster@ the first domain
    https_timeout: float = 30.0  # seconds to POST a TLS report to an https: rua
    keep_days: int = 400  # received reports older than this are removed (daily run)


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    file: str = ""


# -- outbound MTA -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """The queue runner and SMTP client (docs/config.md "[outbound]", docs/mta.md)."""

    enabled: bool = True
    port: int = 25  # port of MX hosts (tests may change it)
    helo_name: str = ""  # "" = [server] hostname
    tls: str = "opportunistic"  # MX delivery: "opportunistic" or "none"
    max_connections: int = 50
    max_per_destination: int = 10
    max_messages_per_connection: int = 100
    retry_initial: float = 300.0
    retry_max: float = 3600.0
    give_up: float = 432000.0
    delay_warning: float = 14400.0  # 0 = no delay DSN
    poll_interval: float = 2.0
    connect_timeout: float = 30.0
    greeting_timeout: float = 300.0  # RFC 5321 §4.5.3.2.1
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2.2-3
    data_timeout: float = 180.0  # RFC 5321 §4.5.3.2.4-5 (120 s for DATA, 180 s per block)
    data_end_timeout: float = 600.0  # RFC 5321 §4.5.3.2.6
    relayhost: str = ""  # smart host: "[host]:port" or "host:port"
    relayhost_tls: str = "required"  # "required", "opportunistic" or "none"
    relayhost_tls_verify: bool = True
    relayhost_username: str = ""
    relayhost_password_file: str = ""
    transport: tuple[str, ...] = ()  # "domain next-hop", e.g. "example.net lmtp:127.0.0.1:24"
    bounce_size_limit: int = 50000  # larger messages are returned as headers only
    mta_sts: bool = True  # RFC 8461: honour recipient domains' MTA-STS policies
    mta_sts_port: int = 443  # HTTPS port of mta-sts.<domain> (tests may change it)
    ca_file: str = ""  # extra CAs for verified outbound TLS (MTA-STS, smart host)
    source_ipv4: str = ""  # bind outgoing SMTP to it ("" = the smtp listener's, or any)
    source_ipv6: str = ""


def _outbound(raw: object, path: Path) -> OutboundSettings:
    out: OutboundSettings = _section(OutboundSettings, raw, "outbound")  # config_rules.RULES
    if out.ca_file:
        ca = Path(out.ca_file)
        ca = ca if ca.is_absolute() else path.parent / ca
        if not ca.is_file():
            raise ConfigError(f"{path}: [outbound] ca_file {ca} is not a readable file")
    return out


# -- end outbound MTA --------------------------------------------------------------------


#: Let's Encrypt's production directory, written by ``correo init --acme EMAIL``.
LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True, slots=True)
class AcmeSettings:
    """Certificates by ACME, RFC 8555 (docs/tls.md); an empty ``directory`` turns it off."""

    directory: str = ""  # the ACME server's directory URL
    email: str = ""  # account contact: expiry notices from the CA
    challenge: str = "tls-alpn-01"  # RFC 8737 on https, or "http-01" on the http listener
    ca_file: str = ""  # extra CA trusted for the ACME server (private servers, tests)
    names: tuple[str, ...] = ()  # () = hostname, mta-sts.D and autoconfig.D of each domain


def _acme(raw: object, path: Path) -> AcmeSettings:
    acme: AcmeSettings = _section(AcmeSettings, raw, "acme")  # config_rules.RULES
    if acme.ca_file and not (path.parent / acme.ca_file).is_file():  # absolute stays absolute
        raise ConfigError(f"{path}: [acme] ca_file {path.parent / acme.ca_file} is not a file")
    if acme.directory and not acme.email:
        raise ConfigError(f"{path}: [acme] email is needed when directory is set")
    return acme


# -- MDA: local delivery, LMTP, junk filter -------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Local delivery and Sieve (docs/config.md "[delivery]", docs/mda.md)."""

    subaddress_folders: bool = True  # user+folder@domain files into "folder" if it exists
    fileinto_create: bool = False  # fileinto creates missing mailboxes even without :create
    sieve_body_limit: int = 1024 * 1024  # bytes of a message the Sieve body test reads
    max_redirect_hops: int = 5  # X-Correo-Redirected markers before redirect is refused
    max_script_size: int = 64 * 1024  # bytes per Sieve script (ManageSieve HAVESPACE)
    max_scripts: int = 20  # scripts per account
    postmaster: str = ""  # account for postmaster@ every local domain when none exists
    quota: str = ""  # storage limit of accounts without their own ("500M", "2G"; "": none)
    quota_messages: int = 0  # message limit of accounts without their own (0: none)


@dataclass(frozen=True, slots=True)
class LmtpSettings:
    socket: str = "lmtp.sock"  # unix socket in the data folder; "" = none


@dataclass(frozen=True, slots=True)
class JunkSettings:
    """The junk filter (docs/mda.md "Junk filter")."""

    enabled: bool = True
    threshold: float = 5.0  # X-Spam-Score at or above this: X-Spam: yes, Junk folder
    folder: str = "Junk"
    dnsbl: tuple[str, ...] = ()  # e.g. ["zen.spamhaus.org"]
    dnsbl_score: float = 3.0  # added per listing zone
    dnsbl_timeout: float = 5.0  # seconds per blocklist lookup; no answer = not listed
    auth_fail_score: float = 3.0  # added for dmarc=fail / spf=fail in our Authentication-Results
    bayes_weight: float = 10.0  # score = weight x spam probability (0..1)
    bayes_min_messages: int = 10  # spam and ham each before the classifier votes
    max_size: int = 512 * 1024  # larger messages are not scanned (and get no X-Spam header)
    rspamd_url: str = ""  # e.g. "http://127.0.0.1:11333"; its score replaces ours
    rspamd_timeout: float = 5.0


# -- end MDA --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where mail is kept (docs/config.md "[store]", docs/cluster.md)."""

    url: str = ""  # postgresql://USER[:PASSWORD]@HOST[:PORT]/DB; "" = SQLite in DATA/store
    body_cache_mb: int = 1024  # PostgreSQL: the node's small bodies on disk; 0 = none
    body_cache_dir: str = ""  # "" = DATA/cache/bodies (relative paths: to DATA)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """One ``[[webhooks]]`` entry: events POSTed as JSON to ``url`` (docs/webhooks.md)."""

    url: str = ""  # http:// or https:// (required)
    events: tuple[str, ...] = ()  # delivered, bounced, deferred, received (at least one)
    addresses: tuple[str, ...] = ()  # local addresses or aliases that trigger received; () = all
    secret: str = ""  # HMAC-SHA256 key of the Webhook-Signature header; "" = unsigned
    inline_limit: int = 64 * 1024  # attachments up to this size inline (base64), else links
    text_limit: int = 1024 * 1024  # characters of the text and HTML bodies sent
    link_expiry: float = 7 * 86400.0  # seconds an attachment link stays valid
    files_url: str = ""  # https base of attachment links; "" = https://HOSTNAME:PORT
    timeout: float = 30.0  # seconds per attempt: connect, send, answer
    retry_initial: float = 30.0  # first retry after this; doubling up to retry_max
    retry_max: float = 3600.0
    give_up: float = 86400.0  # a call still failing this long after its event is dropped


def _webhooks(raw: object, path: Path) -> tuple[WebhookSettings, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: webhooks must be a list of [[webhooks]] tables")
    out: list[WebhookSettings] = []
    for n, entry in enumerate(raw, 1):
        try:
            hook: WebhookSettings = _section(WebhookSettings, entry, "webhooks")  # RULES
        except ConfigError as exc:
            raise ConfigError(f"{exc} (webhook {n})") from None
        if not hook.url or not hook.events:
            raise ConfigError(f"{path}: [[webhooks]] entry {n} needs a url and its events")
        if hook.addresses and "received" not in hook.events:
            raise ConfigError(f"{path}: [[webhooks]] entry {n}: addresses needs received")
        out.append(hook)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    hostname: str
    listen: Mapping[str, tuple[tuple[str, int], ...]]
    tls: TlsSettings = field(default_factory=TlsSettings)
    limits: Limits = field(default_factory=Limits)
    auth: AuthSettings = field(default_factory=AuthSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    lmtp: LmtpSettings = field(default_factory=LmtpSettings)
    junk: JunkSettings = field(default_factory=JunkSettings)
    mta_sts: MtaStsSettings = field(default_factory=MtaStsSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    acme: AcmeSettings = field(default_factory=AcmeSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    webhooks: tuple[WebhookSettings, ...] = ()  # [[webhooks]]
    #: [server] proxy_protocol: networks whose connections open with a PROXY header
    proxy_protocol: tuple[str, ...] = ()
    proxy_protocol_services: tuple[str, ...] = PROXY_SERVICES  # the listeners that read it

    def path(self, relative: str) -> Path:
        """Resolve a path from the config relative to the data directory."""
        p = Path(relative)
        return p if p.is_absolute() else self.data_dir / p


def parse_hostport(text: str) -> tuple[str, int]:
    """Parse ``host:port`` or ``[v6]:port``."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(
            f"bad listen address {text!r}: expected host:port, "
            "e.g. 127.0.0.1:2525 (port 0 = any free port)"
        )
    problem = listen_host(host)
    if problem is not None:
        raise ConfigError(f"bad listen address {text!r}: the host {problem}")
    return host, int(port)


def _section(cls: type[Any], raw: object, name: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in [{name}] (see docs/config.md)")
        default = getattr(cls(), key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, tuple):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        else:
            ok = isinstance(value, str)
        if not ok:
            want = _TYPE_NAMES.get(type(default), "a string")
            raise ConfigError(f"config error: [{name}] {key}: must be {want}, not {value!r}")
        problem = check_value(name, key, value)  # config_rules.RULES
        if problem is not None:
            raise ConfigError(f"config error: [{name}] {key}: {problem}")
        values[key] = _NORMALIZE.get((name, key), _same)(value)
    return cls(**values)


_TYPE_NAMES = {
    bool: "true or false",
    float: "a number",
    int: "a whole number",
    tuple: "a list of strings",
}


def _same(value: Any) -> Any:
    return value


#: Spellings stored in one canonical form once their rule accepted them.
_NORMALIZE: dict[tuple[str, str], Any] = {
    # the resolver reads "ip:port" / "[v6]:port"; a bare IPv6 address has colons of its own
    ("dns", "nameservers"): lambda v: tuple(normalize_nameserver(x) for x in v),
}


def load_config(data_dir: Path) -> Config:
    """Read and validate ``DATA/correo.toml``."""
    path = data_dir / "correo.toml"
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found: create it with 'correo init --data {data_dir} --domain DOMAIN'"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    allowed = {"server", "listen", "tls", "limits", "auth", "smtp", "dns", "log", "outbound"}
    allowed |= {"delivery", "lmtp", "junk", "mta_sts"}  # the MDA; published MTA-STS
    allowed |= {"store"}  # PostgreSQL (docs/cluster.md)
    allowed |= {"acme"}  # certificates by ACME (docs/tls.md)
    allowed |= {"reports"}  # DMARC and TLS reports (docs/reports.md)
    allowed |= {"webhooks"}  # [[webhooks]]: events as HTTP calls (docs/webhooks.md)
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{path}: unknown table [{key}] (see docs/config.md)")
    server = raw.get("server", {})
    if not isinstance(server, dict) or set(server) - _SERVER_KEYS:
        raise ConfigError(
            f"{path}: [server] takes only 'hostname', 'proxy_protocol' and "
            "'proxy_protocol_services'"
        )
    hostname = server.get("hostname", "localhost")
    if not isinstance(hostname, str) or not hostname:
        raise ConfigError(f"{path}: [server] hostname must be a non-empty string")
    problem = hostname_problem(hostname)  # it is written into greetings and Received:
    if problem is not None:
        raise ConfigError(f"config error: [server] hostname: {problem}")
    hostname = normalize_hostname(hostname)
    listen_raw = raw.get("listen", {})
    if not isinstance(listen_raw, dict):
        raise ConfigError(f"{path}: [listen] must be a table")
    listen: dict[str, tuple[tuple[str, int], ...]] = {}
    for service, addresses in listen_raw.items():
        if service not in SERVICES and service not in _LATER_SERVICES:
            raise ConfigError(f"{path}: unknown service {service!r} in [listen]")
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ConfigError(f'{path}: [listen] {service} must be a list of "host:port"')
        try:
            listen[service] = tuple(parse_hostport(a) for a in addresses)
        except ConfigError as exc:
            raise ConfigError(f"config error: [listen] {service}: {exc}") from None
    log = _section(LogSettings, raw.get("log"), "log")
    return Config(
        data_dir=data_dir,
        hostname=hostname,
        listen=listen,
        tls=_section(TlsSettings, raw.get("tls"), "tls"),
        limits=_limits(raw.get("limits"), path),
        auth=_section(AuthSettings, raw.get("auth"), "auth"),
        smtp=_section(SmtpSettings, raw.get("smtp"), "smtp"),
        dns=_section(DnsSettings, raw.get("dns"), "dns"),
        log=log,
        outbound=_outbound(raw.get("outbound"), path),
        delivery=_section(DeliverySettings, raw.get("delivery"), "delivery"),
        lmtp=_section(LmtpSettings, raw.get("lmtp"), "lmtp"),
        junk=_section(JunkSettings, raw.get("junk"), "junk"),
        mta_sts=_mta_sts(raw.get("mta_sts"), path),
        store=_store(raw.get("store"), path),
        acme=_acme(raw.get("acme"), path),
        reports=_section(ReportSettings, raw.get("reports"), "reports"),
        webhooks=_webhooks(raw.get("webhooks"), path),
        **_proxy_protocol(server),
    )


def _proxy_protocol(server: dict[str, Any]) -> dict[str, Any]:
    """``[server] proxy_protocol`` and ``proxy_protocol_services`` (docs/cluster.md)."""
    out: dict[str, Any] = {}
    if "proxy_protocol" in server:
        problem = proxy_networks(server["proxy_protocol"])
        if problem is not None:
            raise ConfigError(f"config error: [server] proxy_protocol: {problem}")
        out["proxy_protocol"] = normalize_networks(server["proxy_protocol"])
    if "proxy_protocol_services" in server:
        names = server["proxy_protocol_services"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(
                "config error: [server] proxy_protocol_services: must be a list of services"
            )
        unknown = [n for n in names if n not in SERVICES]
        if unknown:
            raise ConfigError(
                f"config error: [server] proxy_protocol_services: unknown service "
                f"{unknown[0][:40]!r} (one of {', '.join(SERVICES)})"
            )
        out["proxy_protocol_services"] = tuple(dict.fromkeys(names))
    return out


def _store(raw: object, path: Path) -> StoreSettings:
    store: StoreSettings = _section(StoreSettings, raw, "store")
    if store.url and not store.url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{path}: [store] url must be postgresql://USER@HOST[:PORT]/DB or empty")
    return store


def _limits(raw: object, path: Path) -> Limits:
    limits: Limits = _section(Limits, raw, "limits")
    if not 32 <= limits.ipv6_prefix <= 128:
        raise ConfigError(f"{path}: [limits] ipv6_prefix must be 32 to 128")
    return limits


def _mta_sts(raw: object, path: Path) -> MtaStsSettings:
    sts: MtaStsSettings = _section(MtaStsSettings, raw, "mta_sts")  # config_rules.RULES
    return sts


def _render_mda() -> list[str]:
    """The MDA sections of the default config (docs/config.md, docs/mda.md)."""
    d, j = DeliverySettings(), JunkSettings()
    return [
        "[delivery]",
        "subaddress_folders = true   # user+folder@domain files into folder if it exists",
        "fileinto_create = false     # Sieve fileinto creates missing folders without :create",
        f"sieve_body_limit = {d.sieve_body_limit}  # bytes the Sieve body test reads",
        f"max_redirect_hops = {d.max_redirect_hops}",
        f"max_script_size = {d.max_script_size}",
        f"max_scripts = {d.max_scripts}",
        'postmaster = ""             # gets postmaster@ a domain without one; "" = first user',
        'quota = ""                  # storage per account ("500M", "2G"); "" = no limit',
        "quota_messages = 0          # messages per account; 0 = no limit",
        "",
        "[lmtp]",
        'socket = "lmtp.sock"        # unix socket for a local MTA; "" = none',
        "",
        "[junk]",
        f"threshold = {j.threshold}              # X-Spam-Score from here on: Junk folder",
        'folder = "Junk"',
        'dnsbl = []                  # e.g. ["zen.spamhaus.org"]',
        f"dnsbl_score = {j.dnsbl_score}",
        f"dnsbl_timeout = {j.dnsbl_timeout}       # seconds per blocklist lookup",
        f"auth_fail_score = {j.auth_fail_score}",
        f"max_size = {j.max_size}          # larger messages are not scanned",
        f"bayes_min_messages = {j.bayes_min_messages}  # each of spam and ham, first",
        'rspamd_url = ""             # e.g. "http://127.0.0.1:11333"',
        "",
    ]


def _render_acme(email: str) -> list[str]:
    """[acme]: off unless ``email`` is given (nothing reaches out unasked)."""
    directory = LETSENCRYPT_DIRECTORY if email else ""
    return [
        "# Certificates by ACME (docs/tls.md); an empty directory keeps [tls] as it is.",
        "[acme]",
        f"directory = {_toml_text(directory)}",
        f"email = {_toml_text(email)}",
        'challenge = "tls-alpn-01"   # answered on https (port 443); or "http-01" on http (80)',
        'ca_file = ""',
        "names = []                  # empty = hostname, mta-sts.DOMAIN, autoconfig.DOMAIN",
        "",
    ]


def _toml_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_listen(host: str = "127.0.0.1") -> dict[str, list[str]]:
    return {s: [f"{host}:{p}"] for s, p in _DEFAULT_PORTS.items() if s not in _OFF_BY_DEFAULT}


def render_default_config(
    hostname: str, listen: Mapping[str, list[str]] | None = None, *, acme_email: str = ""
) -> str:
    """The commented ``correo.toml`` written by ``correo init`` (``acme_email``: ACME on)."""
    listen = listen or default_listen()
    lines = [
        "# correo configuration; every key is explained in docs/config.md.",
        "# Paths are relative to this file's directory.",
        "",
        "[server]",
        f'hostname = "{hostname}"',
        "# Load balancers (addresses or networks) whose connections open with a PROXY",
        "# header naming the client (docs/cluster.md); empty = none.",
        "proxy_protocol = []",
        "proxy_protocol_services = [" + ", ".join(f'"{s}"' for s in PROXY_SERVICES) + "]",
        "",
        '# Each service listens on a list of "host:port"; an empty list turns it off.',
        "# Production ports: smtp 25, submission 587, submissions 465, pop3 110, pop3s 995.",
        "# lmtp (e.g. 127.0.0.1:2424) delivers without authentication: trusted hosts only;",
        "# a local MTA can use the [lmtp] socket instead.",
        "# metrics (/metrics, /healthz, /readyz, /status) has no authentication: keep it on",
        "# loopback or a private network.",
        "[listen]",
    ]
    for service in SERVICES:
        addrs = ", ".join(f'"{a}"' for a in listen.get(service, []))
        lines.append(f"{service} = [{addrs}]")
    d = Limits()
    a = AuthSettings()
    lines += [
        "",
        "[tls]",
        f'certificate = "{TlsSettings().certificate}"',
        f'key = "{TlsSettings().key}"',
        "",
        "[limits]",
        f"message_size = {d.message_size}        # bytes; SIZE advertised in EHLO",
        f"recipients = {d.recipients}                 # RCPT per message",
        f"command_line = {d.command_line}              # bytes per SMTP command line",
        f"data_line = {d.data_line}                    # bytes per message line; 0 = no limit",
        f"connections = {d.connections}              # simultaneous connections, all services",
        f"connections_per_ip = {d.connections_per_ip}",
        f"ipv6_prefix = {d.ipv6_prefix}                # IPv6 clients counted per /64",
        f"command_timeout = {d.command_timeout}        # seconds waiting for a command",
        f"data_timeout = {d.data_timeout}           # seconds waiting for message data",
        f"bad_commands = {d.bad_commands}                # errors in a row before disconnect",
        f"mailboxes_per_account = {d.mailboxes_per_account}  # also bounds subscriptions",
        f"metadata_size = {d.metadata_size}          # octets of one IMAP METADATA value",
        f"metadata_entries = {d.metadata_entries}         # IMAP METADATA entries per account",
        f"body_cache = {d.body_cache}          # bytes of recent bodies kept for FETCH; 0 = none",
        f"listen_backlog = {d.listen_backlog}          # connections queued before accept",
        f"index_workers = {d.index_workers}              # processes indexing new mail for SEARCH",
        "",
        "[auth]",
        f"free_failures = {a.free_failures}       # failed logins before delays start",
        f"max_delay = {a.max_delay}",
        f"lockout_failures = {a.lockout_failures}   # failures before a temporary lockout",
        f"lockout_seconds = {a.lockout_seconds}",
        "allow_plaintext = false  # true lets passwords cross unencrypted connections",
        f"remember_logins = {a.remember_logins}  # seconds a verified login skips argon2",
        f"min_password_length = {a.min_password_length}  # user add and passwd refuse shorter ones",
        f"scram_sha1_iterations = {a.scram_sha1_iterations}  # PBKDF2 rounds of SCRAM verifiers",
        f"scram_sha256_iterations = {a.scram_sha256_iterations}",
        "tls_exporter_binding = false  # true offers SCRAM-*-PLUS on TLS 1.3 (RFC 9266)",
        "",
        "[smtp]",
        'recipient_delimiter = "+"   # user+tag@domain delivers to user@domain',
        "",
        "[dns]",
        'nameservers = []            # e.g. ["127.0.0.1:5353"]; empty = system resolver',
        "dnssec = false              # true: trust the resolver's AD bit, enforce DANE (RFC 7672)",
        "",
        "# The MTA-STS policy served on https for mta-sts.<domain> (see correo dns DOMAIN).",
        "[mta_sts]",
        f'mode = "{MtaStsSettings().mode}"           # enforce, testing or none',
        f"max_age = {MtaStsSettings().max_age}           # seconds senders keep it",
        "",
        "[log]",
        'level = "info"              # debug logs every command',
        'file = ""                   # empty = standard error',
        "",
        *_render_mda(),
        *_render_acme(acme_email),
    ]
    return "\n".join(lines)
