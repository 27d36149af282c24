"""``correo dns``, ``correo dns check``, ``correo dkim rotate`` and ``correo check message``.

Administrators need two answers when mail goes astray: what should my zone hold, and
what does a given message look like to a receiver.  These commands print the first
ready to paste into a zone file and compute the second with the same code the MX runs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from correo.cli.dns_reverse import check_sources, source_addresses
from correo.config import Config, ConfigError, load_config
from correo.dane import record_for
from correo.directory import Directory, DirectoryError
from correo.directory.dkim_files import FileKeyStore
from correo.directory.factory import directory_for_data
from correo.dns import DnsError, DnsNoData, DnsNotFound, DnsPythonResolver, Resolver
from correo.mailauth.inbound import MessageAuthenticator
from correo.mailauth.keys import KeyStore, dns_record, load_domain_keys, rotate_keys
from correo.store.api import StoreError, TlsCertificate
from correo.store.factory import open_store
from correo.web.site import mta_sts_id, mta_sts_policy

__all__ = [
    "Record",
    "check_domain",
    "check_record",
    "cmd_check_message",
    "cmd_dkim_rotate",
    "cmd_dns",
    "expected_records",
    "register",
]


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # absolute, without the final dot
    rtype: str
    value: str

    def zone_line(self) -> str:
        value = self.value
        if self.rtype == "TXT":
            value = _txt_strings(value)
        return f"{self.name}.\t3600\tIN\t{self.rtype}\t{value}"


def _txt_strings(text: str) -> str:
    """A TXT value as quoted character-strings of at most 255 octets (RFC 1035 §3.3.14)."""
    pieces = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in pieces)


def _rua(config: Config) -> tuple[str, str]:
    return config.reports.dmarc_address, config.reports.tls_address


def expected_records(
    keys: Path | KeyStore,
    domain: str,
    hostname: str,
    sts_policy: str | None = None,
    listen: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    reports: tuple[str, str] = ("dmarc-reports", "tls-reports"),
) -> list[Record]:
    """Every record a correo domain should publish (``keys``: its DKIM keys, or the data
    folder whose key files they are).  ``listen``: the ``[listen]`` table, whose client
    services get SRV records (None: all of them on their registered ports).  ``reports``:
    ``[reports] dmarc_address`` and ``tls_address``, the rua of the two report records."""
    domain = domain.lower().rstrip(".")
    dmarc_rua, tls_rua = (a if "@" in a else f"{a}@{domain}" for a in reports)
    host = hostname.lower().rstrip(".")
    records = [
        Record(domain, "MX", f"10 {host}."),
        Record(domain, "TXT", "v=spf1 mx -all"),  # RFC 7208: only our MX sends for the domain
    ]
    store = FileKeyStore(keys) if isinstance(keys, Path) else keys
    for key in load_domain_keys(store, domain):
        records.append(Record(f"{key.selector}._domainkey.{domain}", "TXT", dns_record(key.key)))
    records += [
        Record(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:{dmarc_rua}",  # RFC 7489 §6.4
        ),
        # RFC 8461 §3.1: the id changes whenever the policy does (it is the policy's hash)
        Record(
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={mta_sts_id(sts_policy or mta_sts_policy(host))}",
        ),
        Record(f"mta-sts.{domain}", "CNAME", f"{host}."),
        Record(f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua=mailto:{tls_rua}"),  # RFC 8460
    ]
    # RFC 6186 §3.1 / RFC 8314 §5.1: client autoconfiguration, the services autoconfig lists
    for service, (priority, registered) in _SRV.items():
        if listen is None:
            port: int | None = registered
        else:
            addresses = listen.get(service) or ()
            # port 0 is chosen at start: the registered port is what clients will be told
            port = (addresses[0][1] or registered) if addresses else None
        if port is None:  # RFC 6186 §4: a lone "." target: the service is not offered
            records.append(Record(f"_{service}._tcp.{domain}", "SRV", "0 0 0 ."))
        else:
            records.append(
                Record(f"_{service}._tcp.{domain}", "SRV", f"{priority} 1 {port} {host}.")
            )
    return records


#: service -> (SRV priority, registered port).  RFC 8314 §5.1: implicit TLS is preferred
#: (lower priority) over STARTTLS; RFC 6186 §3.4: IMAP over POP3.
_SRV: dict[str, tuple[int, int]] = {
    "submissions": (0, 465),
    "submission": (1, 587),
    "imaps": (0, 993),
    "imap": (1, 143),
    "pop3s": (10, 995),
    "pop3": (11, 110),
}


async def check_record(resolver: Resolver, record: Record) -> tuple[bool | None, str]:
    """Is the published record what we expect? (ok, or None if unchecked; what was found)."""
    try:
        match record.rtype:
            case "MX":
                found = [f"{m.preference} {m.host}." for m in await resolver.mx(record.name)]
                want_host = record.value.split()[1]
                return any(f.split()[1] == want_host for f in found), ", ".join(found)
            case "TXT":
                return await _check_txt(resolver, record)
            case "SRV":
                return await _check_srv(resolver, record)
            case "CNAME":
                return await _check_cname(resolver, record)
            case _:
                return None, "(the resolver has no lookup for this type)"
    except DnsError as exc:
        return False, f"missing ({type(exc).__name__})"


async def _check_txt(resolver: Resolver, record: Record) -> tuple[bool, str]:
    texts = [t.decode("utf-8", "replace") for t in await resolver.txt(record.name)]
    shown = " | ".join(texts)
    if "._domainkey." in record.name:
        return any(t.replace(" ", "") == record.value.replace(" ", "") for t in texts), shown
    prefix = record.value.split(";")[0]
    same = [t for t in texts if t.split(";")[0].strip() == prefix]
    # RFC 7208 §4.5, RFC 7489 §6.6.3, RFC 8461 §3.1: more than one such record = none
    if len(same) != 1:
        return False, shown
    if prefix == "v=STSv1":
        # the id of the policy correo serves: senders refetch only when it changes (§3.1)
        found = _STS_ID.search(same[0])
        want = _STS_ID.search(record.value)
        return found is not None and want is not None and found[1] == want[1], shown
    return True, shown


_STS_ID = re.compile(r";\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)")  # RFC 8461 §3.1: sts-id


async def _check_srv(resolver: Resolver, record: Record) -> tuple[bool, str]:
    """Port and target must match; priority and weight are the administrator's choice."""
    _, _, port, target = record.value.split()
    want_port, want_target = int(port), target.rstrip(".").lower()
    found = await resolver.srv(record.name)
    shown = ", ".join(f"{r.priority} {r.weight} {r.port} {r.target}." for r in found)
    if want_target == "":
        # RFC 6186 §4: a lone target of "." says the service is not offered at all
        return [r.target for r in found] == [""], shown
    return any(r.port == want_port and r.target == want_target for r in found), shown


async def _check_cname(resolver: Resolver, record: Record) -> tuple[bool, str]:
    """An alias of our host, or (also fine) its own addresses equal to our host's."""
    want = record.value.rstrip(".").lower()
    try:
        target = await resolver.cname(record.name)
        return target == want, f"CNAME {target}."
    except DnsNoData:
        pass
    have = set(await _addresses(resolver, record.name))
    ours = set(await _addresses(resolver, want))
    shown = "A/AAAA " + ", ".join(sorted(have)) if have else "missing (DnsNoData)"
    return bool(have) and have == ours, shown


async def _addresses(resolver: Resolver, name: str) -> list[str]:
    found: list[str] = []
    for lookup in (resolver.a, resolver.aaaa):
        try:
            found += await lookup(name)
        except (DnsNoData, DnsNotFound):
            continue
    return found


def _resolver(data_dir: Path) -> Resolver:
    try:
        config = load_config(data_dir)
        return DnsPythonResolver(config.dns.nameservers)
    except (ConfigError, OSError):  # no data folder: the system resolver
        return DnsPythonResolver()


def cmd_dns(args: argparse.Namespace) -> int:
    words: list[str] = args.words
    if len(words) == 2 and words[0] == "check":
        return _dns_check(args.data_dir, words[1])
    if len(words) != 1:
        print("usage: correo dns DOMAIN | correo dns check DOMAIN", file=sys.stderr)
        return 2
    config = load_config(args.data_dir)
    domain = words[0]
    print(f"; DNS records for {domain} (correo at {config.hostname})")
    policy = mta_sts_policy(config.hostname, config.mta_sts.mode, config.mta_sts.max_age)
    with _directory(args.data_dir) as directory:
        records = expected_records(
            directory.dkim, domain, config.hostname, policy, config.listen, _rua(config)
        )
    for record in records:
        print(record.zone_line())
    print(f"; also an A/AAAA record for {config.hostname} and its PTR (reverse DNS)")
    for line in _tlsa_lines(config):
        print(line)
    print(f"; MTA-STS policy served at https://mta-sts.{domain}/.well-known/mta-sts.txt")
    print(f"; by the https listener (its certificate must name mta-sts.{domain}):")
    for line in policy.splitlines():
        print(f";   {line}")
    print(f"; and mail clients' settings at https://autoconfig.{domain}/mail/config-v1.1.xml")
    print(f"; (optional: autoconfig.{domain}. CNAME {config.hostname}.)")
    return 0


def _tlsa_lines(config: Config) -> list[str]:
    """The DANE-EE TLSA record (``3 1 1``, RFC 7672 §3.1.1) of the certificate we serve."""
    found = _own_certificate(config)
    host = config.hostname.lower().rstrip(".")
    if found is None:
        return [f"; (no certificate readable: no TLSA record for {host})"]
    chain, where = found
    try:
        record = record_for(chain)
    except ValueError as exc:
        return [f"; (the certificate {where} is unreadable: {exc})"]
    lines = [
        "; DANE (RFC 7672), only in a DNSSEC-signed zone: the public key of " + where,
        Record(f"_25._tcp.{host}", "TLSA", record.text()).zone_line(),
    ]
    if config.acme.directory:
        lines.append("; ACME renewals keep this key (the new certificate reuses it), so the")
        lines.append("; record stays valid; publish a new key's record before using that key.")
    else:
        lines.append("; a new certificate with a new key needs its record published first.")
    return lines


def _own_certificate(config: Config) -> tuple[bytes, str] | None:
    """The chain the listeners serve: ACME's (kept in the store) or the [tls] file."""
    if config.acme.directory:

        async def read() -> list[TlsCertificate]:
            store = open_store(config)
            await store.open()
            try:
                return await store.tls_cert_list()
            finally:
                await store.close()

        try:
            stored = asyncio.run(read())
        except (StoreError, OSError):
            stored = []
        host = config.hostname.lower()
        for cert in stored:
            if cert.chain and host in cert.names:
                return cert.chain, "the ACME certificate"
    path = config.path(config.tls.certificate)
    try:
        return path.read_bytes(), str(path)
    except OSError:
        return None


async def check_domain(
    resolver: Resolver, records: list[Record]
) -> list[tuple[Record, bool | None, str]]:
    """Each expected record with its verdict and what the DNS holds, in order."""
    results = await asyncio.gather(*(check_record(resolver, r) for r in records))
    return [(r, ok, found) for r, (ok, found) in zip(records, results, strict=True)]


def _dns_check(data_dir: Path, domain: str) -> int:
    config = load_config(data_dir)
    resolver = _resolver(data_dir)
    policy = mta_sts_policy(config.hostname, config.mta_sts.mode, config.mta_sts.max_age)
    with _directory(data_dir) as directory:
        records = expected_records(
            directory.dkim, domain, config.hostname, policy, config.listen, _rua(config)
        )
    sources = asyncio.run(check_sources(resolver, source_addresses(config)))
    failed = 0
    for source in sources:
        status = "ok     " if source.ok else "check  " if source.ok is None else "WRONG  "
        failed += source.ok is False
        print(f"{status} FCrDNS {source.address}  ({source.origin})")
        print(f"        {source.text}")
    bad = 0
    for record, ok, found in asyncio.run(check_domain(resolver, records)):
        if ok is None:
            print(f"check   {record.rtype:5} {record.name}  (by hand: want {record.value})")
            continue
        status = "ok     " if ok else "MISSING" if found.startswith("missing") else "WRONG  "
        bad += not ok
        print(f"{status} {record.rtype:5} {record.name}")
        if not ok:
            print(f"        want: {record.value}")
            print(f"        have: {found}")
    print(f"-- {len(records) - bad} of {len(records)} records as expected")
    return 0 if bad == 0 and failed == 0 else 1


def _directory(data_dir: Path) -> Directory:
    """The node's directory (on a cluster: the shared one, with its DKIM keys)."""
    try:
        return directory_for_data(data_dir)
    except DirectoryError as exc:
        raise ConfigError(str(exc)) from None


def cmd_dkim_rotate(args: argparse.Namespace) -> int:
    with _directory(args.data_dir) as directory:  # every node signs with the new keys
        keys = rotate_keys(directory.dkim, args.domain)
    print(f"New DKIM keys for {args.domain}; publish these, keep the retired ones until")
    print("mail signed with them has been delivered (a few days), then delete their files:")
    for key in keys:
        state = "retired" if key.retired else "active "
        print(f"{state} {key.selector}._domainkey.{key.domain}.\tIN\tTXT\t", end="")
        print(_txt_strings(dns_record(key.key)))
    return 0


def cmd_check_message(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    if b"\r\n" not in data:
        data = data.replace(b"\n", b"\r\n")  # a message saved with Unix line ends
    resolver = _resolver(args.data_dir)
    mail_from = args.mail_from or ""
    auth = MessageAuthenticator(
        resolver,
        ip=args.ip or "0.0.0.0",
        helo=args.helo or "unknown",
        mail_from=mail_from,
        authserv_id="correo-check",
    )
    auth.feed(data)
    verdict = asyncio.run(auth.finish())
    if args.ip:
        spf = verdict.spf.mail_from
        print(f"SPF:   {spf.result} ({spf.domain}: {spf.mechanism or spf.problem})")
    else:
        print("SPF:   not checked (give --ip, --helo and --mail-from)")
    if not verdict.dkim:
        print("DKIM:  none (no signature)")
    for r in verdict.dkim:
        extra = f" - {r.reason}" if r.reason else ""
        print(f"DKIM:  {r.status} d={r.domain} s={r.selector} a={r.algorithm}{extra}")
    d = verdict.dmarc
    print(
        f"DMARC: {d.status} from={d.from_domain or '?'} policy={d.policy} "
        f"disposition={d.disposition}{' - ' + d.reason if d.reason else ''}"
    )
    a = verdict.arc
    print(
        f"ARC:   {a.status}{f' i={a.instances}' if a.instances else ''}"
        f"{' - ' + a.reason if a.reason else ''}"
    )
    print(f"Action: {verdict.action}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dns``, ``dkim`` and ``check`` to the correo command line."""
    p = sub.add_parser(
        "dns",
        help="print the DNS records to publish for DOMAIN; 'dns check DOMAIN' verifies them",
    )
    p.add_argument(
        "words",
        nargs="+",
        metavar="[check] DOMAIN",
        help="a local domain; with 'check' first, look its records up and compare",
    )
    p.set_defaults(func=cmd_dns)

    p = sub.add_parser("dkim", help="manage DKIM signing keys")
    dsub = p.add_subparsers(dest="action", metavar="ACTION")
    dsub.required = True
    a = dsub.add_parser("rotate", help="add new keys for DOMAIN; older ones stay published")
    a.add_argument("domain", help="a local domain, e.g. example.org")
    a.set_defaults(func=cmd_dkim_rotate)

    p = sub.add_parser("check", help="diagnostics")
    csub = p.add_subparsers(dest="action", metavar="WHAT")
    csub.required = True
    a = csub.add_parser("message", help="SPF, DKIM, DMARC and ARC results for a stored message")
    a.add_argument("file", help="the message as received (RFC 5322 text)")
    a.add_argument("--ip", default=None, help="the connecting client's IP address")
    a.add_argument("--helo", default=None, help="the client's HELO/EHLO name")
    a.add_argument(
        "--mail-from",
        dest="mail_from",
        metavar="ADDRESS",
        default=None,
        help="the MAIL FROM address",
    )
    a.set_defaults(func=cmd_check_message)
