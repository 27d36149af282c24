"""SPF (RFC 7208): is this IP address allowed to send for this domain?

``check_host`` is the RFC's function of the same name: it parses the whole record first
(any syntax error anywhere is a permerror, §4.6), then evaluates mechanisms left to right
with the DNS lookup budget shared across include/redirect (§4.6.4).  DNS goes through the
:class:`~correo.dns.Resolver` passed in; nothing else has effects.
"""

from __future__ import annotations

import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from enum import StrEnum

from correo.dns.api import DnsError, DnsNoData, DnsNotFound, Resolver

__all__ = [
    "SpfOutcome",
    "SpfResult",
    "SpfVerdict",
    "check_host",
    "check_spf",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_DNS_MECHANISMS = 10  # RFC 7208 §4.6.4
MAX_VOID_LOOKUPS = 2  # RFC 7208 §4.6.4
MAX_MX_NAMES = 10  # RFC 7208 §4.6.4
MAX_PTR_NAMES = 10  # RFC 7208 §4.6.4 / §5.5
MAX_RECORD = 4096  # a bound on what we parse; real records fit in a few hundred bytes


class SpfResult(StrEnum):
    """The seven results of RFC 7208 §2.6."""

    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    """One check_host() answer; ``explanation`` only for fail with a usable exp= (§6.2)."""

    result: SpfResult
    domain: str
    explanation: str | None = None
    mechanism: str = ""
    problem: str = ""


@dataclass(frozen=True, slots=True)
class SpfVerdict:
    """Both identities of RFC 7208 §2.3/§2.4: the HELO check and the MAIL FROM check."""

    helo: SpfOutcome
    mail_from: SpfOutcome

    @property
    def result(self) -> SpfResult:
        """The MAIL FROM result, which is the HELO one for the null reverse-path (§2.4)."""
        return self.mail_from.result

    @property
    def domain(self) -> str:
        return self.mail_from.domain


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


_QUALIFIERS = {
    "+": SpfResult.PASS,
    "-": SpfResult.FAIL,
    "~": SpfResult.SOFTFAIL,
    "?": SpfResult.NEUTRAL,
}

# RFC 7208 §7.1: a macro-expand, or a literal in %x21-24 / %x26-7E.
_MACRO_TOKEN = re.compile(
    r"%\{([a-zA-Z])([0-9]*)(r?)([.\-+,/_=]*)\}|%%|%_|%-|([\x21-\x24\x26-\x7e]+)|(.)",
    re.S,
)
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*\Z")  # RFC 7208 §12 name
_ALNUM_DASH = re.compile(r"[A-Za-z0-9-]*\Z")


def _is_toplabel(label: str) -> bool:
    """RFC 7208 §7.1 toplabel: ``*alphanum ALPHA *alphanum`` or ``1*alphanum "-"
    *(alphanum / "-") alphanum``, checked in one pass.  (As one regex, where the letter
    may be anywhere, a 16,000-letter label from a sender's SPF record took 0.7 s.)"""
    if not label or _ALNUM_DASH.match(label) is None:
        return False
    if "-" not in label:
        return not label.isdigit()
    return label[0] != "-" and label[-1] != "-"


_CIDR = re.compile(r"(?:/(0|[1-9][0-9]{0,2}))?(?://(0|[1-9][0-9]{0,2}))?\Z")
_IP4_CIDR = re.compile(r"/(0|[1-9][0-9]?)\Z")
_IP6_CIDR = re.compile(r"/(0|[1-9][0-9]{0,2})\Z")
_DOMAIN_MECHS = frozenset({"a", "mx", "ptr", "include", "exists"})
_MECHS = _DOMAIN_MECHS | {"all", "ip4", "ip6"}
_EXP_ONLY = frozenset("crt")


@dataclass(frozen=True, slots=True)
class _Mechanism:
    qualifier: SpfResult
    kind: str
    domain: str | None = None  # a macro-string (domain-spec), unexpanded
    cidr4: int = 32
    cidr6: int = 128
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class _Record:
    mechanisms: tuple[_Mechanism, ...]
    redirect: str | None
    exp: str | None


@dataclass
class _Context:
    """State shared by one check_host() and every nested include/redirect (§4.6.4)."""

    ip: IPAddress
    sender: str
    helo: str
    receiver: str
    lookups: int = 0
    voids: int = 0
    validated_ptr: str | None = None
    depth: int = 0
    now: float = field(default_factory=time.time)

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_MECHANISMS:
            raise _PermError("too many DNS lookups (RFC 7208 §4.6.4)")

    def count_void(self) -> None:
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise _PermError("too many void DNS lookups (RFC 7208 §4.6.4)")


# -- parsing ------------------------------------------------------------------------


def _check_macro_string(text: str, *, exp: bool = False) -> None:
    for m in _MACRO_TOKEN.finditer(text):
        if m.group(6) is not None:
            raise _PermError(f"bad macro character in {text!r}")  # RFC 7208 §7.1
        letter = m.group(1)
        if letter is not None:
            low = letter.lower()
            if low not in "slodiphv" and not (exp and low in _EXP_ONLY):
                raise _PermError(f"bad macro letter {letter!r}")  # RFC 7208 §7.2
            if m.group(2) and int(m.group(2)) == 0:
                raise _PermError("macro digit transformer 0")  # RFC 7208 §7.3


def _check_domain_spec(spec: str) -> None:
    """RFC 7208 §7.1: domain-spec = macro-string domain-end."""
    if not spec:
        raise _PermError("empty domain-spec")
    _check_macro_string(spec)
    if spec.endswith("}"):
        return  # ends with a macro-expand
    labels = spec[:-1].split(".") if spec.endswith(".") else spec.split(".")
    if len(labels) < 2 or not _is_toplabel(labels[-1]):
        raise _PermError(f"domain-spec {spec!r} does not end in a valid top label")


def _parse_mechanism(term: str) -> _Mechanism:
    qualifier = SpfResult.PASS
    if term[0] in _QUALIFIERS:
        qualifier = _QUALIFIERS[term[0]]
        term = term[1:]
    name_end = len(term)
    for sep in (":", "/"):
        pos = term.find(sep)
        if 0 <= pos < name_end:
            name_end = pos
    kind = term[:name_end].lower()
    rest = term[name_end:]
    if kind not in _MECHS:
        raise _PermError(f"unknown mechanism {term!r}")  # RFC 7208 §5
    text = term
    if kind == "all":
        if rest:
            raise _PermError("all takes no argument")
        return _Mechanism(qualifier, kind, text=text)
    if kind in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise _PermError(f"{kind} needs an address")
        arg = rest[1:]
        cidr_re = _IP4_CIDR if kind == "ip4" else _IP6_CIDR
        max_len = 32 if kind == "ip4" else 128
        cidr = max_len
        m = cidr_re.search(arg)
        if m:
            cidr = int(m.group(1))
            arg = arg[: m.start()]
        elif "/" in arg:
            raise _PermError(f"bad CIDR length in {term!r}")
        if cidr > max_len:
            raise _PermError(f"CIDR length out of range in {term!r}")  # RFC 7208 §5.6
        try:
            addr: IPAddress = (
                ipaddress.IPv4Address(arg) if kind == "ip4" else ipaddress.IPv6Address(arg)
            )
        except ValueError:
            raise _PermError(f"bad address in {term!r}") from None
        net = ipaddress.ip_network(f"{addr}/{cidr}", strict=False)
        return _Mechanism(qualifier, kind, network=net, text=text)
    domain: str | None = None
    cidr4, cidr6 = 32, 128
    if kind in ("a", "mx"):
        m = _CIDR.search(rest)
        tail = rest[m.start() :] if m else ""
        if m and tail:
            if m.group(1) is not None:
                cidr4 = int(m.group(1))
            if m.group(2) is not None:
                cidr6 = int(m.group(2))
            if cidr4 > 32 or cidr6 > 128:
                raise _PermError(f"CIDR length out of range in {term!r}")  # RFC 7208 §5.6
            rest = rest[: m.start()]
    if rest:
        if not rest.startswith(":"):
            raise _PermError(f"bad mechanism syntax {term!r}")
        domain = rest[1:]
        _check_domain_spec(domain)
    elif kind in ("include", "exists"):
        raise _PermError(f"{kind} needs a domain")  # RFC 7208 §5.2, §5.7
    return _Mechanism(qualifier, kind, domain, cidr4, cidr6, text=text)


def _parse_record(record: str) -> _Record:
    """Parse a whole record (RFC 7208 §4.6); raises _PermError on any syntax error."""
    mechanisms: list[_Mechanism] = []
    redirect: str | None = None
    exp: str | None = None
    for term in record.split(" ")[1:]:  # RFC 7208 §4.6.1: terms separated by SP only
        if not term:
            continue
        eq = term.find("=")
        colon_slash = min((p for p in (term.find(":"), term.find("/")) if p >= 0), default=-1)
        if eq > 0 and (colon_slash < 0 or eq < colon_slash) and term[0] not in _QUALIFIERS:
            name, value = term[:eq], term[eq + 1 :]
            if not _NAME_RE.match(name):
                raise _PermError(f"bad modifier name {name!r}")  # RFC 7208 §4.6.1
            low = name.lower()
            if low == "redirect":
                if redirect is not None:
                    raise _PermError("redirect= twice")  # RFC 7208 §6
                _check_domain_spec(value)
                redirect = value
            elif low == "exp":
                if exp is not None:
                    raise _PermError("exp= twice")  # RFC 7208 §6
                _check_domain_spec(value)
                exp = value
            else:
                _check_macro_string(value)  # RFC 7208 §6: unknown modifiers are ignored
            continue
        if eq == 0:
            raise _PermError("empty modifier name")
        mechanisms.append(_parse_mechanism(term))
    return _Record(tuple(mechanisms), redirect, exp)


# -- macros -------------------------------------------------------------------------


def _ip_dotted(ip: IPAddress) -> str:
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return ".".join(ip.exploded.replace(":", ""))  # RFC 7208 §7.3: nibbles, dotted


async def _expand(
    resolver: Resolver, ctx: _Context, text: str, domain: str, *, exp: bool = False
) -> str:
    """Expand a macro-string (RFC 7208 §7)."""
    out: list[str] = []
    local, _, sender_domain = ctx.sender.rpartition("@")
    for m in _MACRO_TOKEN.finditer(text):
        whole = m.group(0)
        if m.group(5) is not None:
            out.append(whole)
            continue
        if m.group(6) is not None:
            if exp and whole == " ":
                out.append(" ")  # RFC 7208 §6.2: explain-string allows SP
                continue
            raise _PermError(f"bad macro character in {text!r}")
        if whole == "%%":
            out.append("%")
            continue
        if whole == "%_":
            out.append(" ")
            continue
        if whole == "%-":
            out.append("%20")
            continue
        letter = m.group(1)
        low = letter.lower()
        value: str
        match low:
            case "s":
                value = ctx.sender
            case "l":
                value = local
            case "o":
                value = sender_domain
            case "d":
                value = domain
            case "i":
                value = _ip_dotted(ctx.ip)
            case "p":
                value = await _validated_ptr(resolver, ctx, domain)
            case "v":
                value = "in-addr" if isinstance(ctx.ip, ipaddress.IPv4Address) else "ip6"
            case "h":
                value = ctx.helo
            case "c" if exp:
                value = str(ctx.ip)
            case "r" if exp:
                value = ctx.receiver or "unknown"
            case "t" if exp:
                value = str(int(ctx.now))
            case _:
                raise _PermError(f"bad macro letter {letter!r}")  # RFC 7208 §7.2
        delimiters = m.group(4) or "."
        parts = re.split("[" + re.escape(delimiters) + "]", value)
        if m.group(3):
            parts.reverse()  # RFC 7208 §7.3 transformer r
        if m.group(2):
            count = int(m.group(2))
            if count == 0:
                raise _PermError("macro digit transformer 0")
            parts = parts[-count:]
        value = ".".join(parts)
        if letter.isupper():
            value = urllib.parse.quote(value, safe="-._~")  # RFC 7208 §7.3 uppercase letter
        out.append(value)
    return "".join(out)


async def _validated_ptr(resolver: Resolver, ctx: _Context, domain: str) -> str:
    """The %{p} macro: a validated name for the IP, preferring ``domain`` (RFC 7208 §7.3)."""
    if ctx.validated_ptr is not None:
        return ctx.validated_ptr
    names = await _validated_names(resolver, ctx, count_voids=False)
    chosen = "unknown"
    for name in names:
        if name == domain.lower():
            chosen = name
            break
    else:
        for name in names:
            if name.endswith("." + domain.lower()):
                chosen = name
                break
        else:
            if names:
                chosen = names[0]
    ctx.validated_ptr = chosen
    return chosen


async def _validated_names(resolver: Resolver, ctx: _Context, *, count_voids: bool) -> list[str]:
    """RFC 7208 §5.5: PTR names whose forward lookup includes the IP (first 10 only)."""
    try:
        names = await resolver.ptr(str(ctx.ip))
    except (DnsNotFound, DnsNoData):
        if count_voids:
            ctx.count_void()
        return []
    except DnsError:
        return []  # RFC 7208 §5.5: a DNS error here means no match, not temperror
    validated: list[str] = []
    for name in names[:MAX_PTR_NAMES]:
        try:
            addrs = await _addresses(resolver, name, ctx.ip)
        except DnsError:
            continue
        if any(ipaddress.ip_address(a) == ctx.ip for a in addrs):
            validated.append(name.rstrip(".").lower())
    return validated


# -- evaluation ---------------------------------------------------------------------


def _normalise_ip(ip: str | IPAddress) -> IPAddress:
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # RFC 7208 §5: an IPv4-mapped address is IPv4
    return addr


def _valid_domain(domain: str) -> bool:
    """RFC 7208 §4.3: a multi-label name with labels of 1..63 octets."""
    name = domain[:-1] if domain.endswith(".") else domain
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return len(labels) >= 2 and all(0 < len(label) <= 63 for label in labels)


def _truncate(domain: str) -> str:
    """RFC 7208 §7.3: drop left labels until the name fits in 253 octets."""
    while len(domain) > 253 and "." in domain:
        domain = domain.split(".", 1)[1]
    return domain


async def _addresses(resolver: Resolver, name: str, ip: IPAddress) -> list[str]:
    if isinstance(ip, ipaddress.IPv4Address):
        return await resolver.a(name)
    return await resolver.aaaa(name)


async def _fetch_record(resolver: Resolver, domain: str) -> str | None:
    """RFC 7208 §4.4/§4.5: the one v=spf1 TXT record, None if there is none."""
    try:
        records = await resolver.txt(domain)
    except (DnsNotFound, DnsNoData):
        return None
    except DnsError as exc:
        raise _TempError(str(exc)) from None
    found: list[bytes] = []
    for raw in records:
        low = raw[:7].lower()
        if low == b"v=spf1" or low == b"v=spf1 ":  # RFC 7208 §4.5
            found.append(raw)
    if not found:
        return None
    if len(found) > 1:
        raise _PermError("more than one SPF record")  # RFC 7208 §4.5
    raw = found[0][:MAX_RECORD]
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _PermError("non-ASCII SPF record") from None  # RFC 7208 §3
    if any(c < " " or c > "~" for c in text):
        raise _PermError("control character in SPF record")  # RFC 7208 §4.6.1
    return text


def _match_hosts(ip: IPAddress, addrs: list[str], cidr4: int, cidr6: int) -> bool:
    for a in addrs:
        try:
            addr = ipaddress.ip_address(a)
        except ValueError:
            continue
        if addr.version != ip.version:
            continue
        prefix = cidr4 if addr.version == 4 else cidr6
        if ip in ipaddress.ip_network(f"{addr}/{prefix}", strict=False):
            return True
    return False


async def _lookup_a(resolver: Resolver, ctx: _Context, name: str) -> list[str]:
    try:
        return await _addresses(resolver, name, ctx.ip)
    except (DnsNotFound, DnsNoData):
        ctx.count_void()  # RFC 7208 §4.6.4
        return []
    except DnsError as exc:
        raise _TempError(str(exc)) from None


async def _target(resolver: Resolver, ctx: _Context, mech: _Mechanism, domain: str) -> str:
    if mech.domain is None:
        return domain
    return _truncate(await _expand(resolver, ctx, mech.domain, domain))


async def _mechanism_matches(
    resolver: Resolver, ctx: _Context, mech: _Mechanism, domain: str
) -> bool:
    """RFC 7208 §5: does one mechanism match? Raises on temperror/permerror."""
    ip = ctx.ip
    match mech.kind:
        case "all":
            return True  # RFC 7208 §5.1
        case "ip4" | "ip6":
            assert mech.network is not None
            return ip.version == mech.network.version and ip in mech.network  # §5.6
        case "a":
            ctx.count_lookup()
            target = await _target(resolver, ctx, mech, domain)
            if not _valid_domain(target):
                return False
            addrs = await _lookup_a(resolver, ctx, target)  # RFC 7208 §5.3
            return _match_hosts(ip, addrs, mech.cidr4, mech.cidr6)
        case "mx":
            ctx.count_lookup()
            target = await _target(resolver, ctx, mech, domain)
            if not _valid_domain(target):
                return False
            try:
                mxs = await resolver.mx(target)  # RFC 7208 §5.4
            except (DnsNotFound, DnsNoData):
                ctx.count_void()
                return False
            except DnsError as exc:
                raise _TempError(str(exc)) from None
            hosts = [mx.host for mx in mxs if mx.host]
            if len(hosts) > MAX_MX_NAMES:
                raise _PermError("more than 10 MX names (RFC 7208 §4.6.4)")
            for host in hosts:
                addrs = await _lookup_a(resolver, ctx, host)
                if _match_hosts(ip, addrs, mech.cidr4, mech.cidr6):
                    return True
            return False
        case "ptr":
            ctx.count_lookup()
            target = (await _target(resolver, ctx, mech, domain)).rstrip(".").lower()
            for name in await _validated_names(resolver, ctx, count_voids=True):  # §5.5
                if name == target or name.endswith("." + target):
                    return True
            return False
        case "exists":
            ctx.count_lookup()
            target = await _target(resolver, ctx, mech, domain)
            if not _valid_domain(target):
                return False
            try:
                return bool(await resolver.a(target))  # RFC 7208 §5.7: always an A query
            except (DnsNotFound, DnsNoData):
                ctx.count_void()
                return False
            except DnsError as exc:
                raise _TempError(str(exc)) from None
        case "include":
            ctx.count_lookup()
            target = await _target(resolver, ctx, mech, domain)
            inner = await _check(resolver, ctx, target)
            match inner.result:  # RFC 7208 §5.2 table
                case SpfResult.PASS:
                    return True
                case SpfResult.FAIL | SpfResult.SOFTFAIL | SpfResult.NEUTRAL:
                    return False
                case SpfResult.TEMPERROR:
                    raise _TempError(inner.problem)
                case _:
                    raise _PermError(f"include:{target} gave {inner.result}: {inner.problem}")
    raise AssertionError(mech.kind)


async def _explain(resolver: Resolver, ctx: _Context, exp: str, domain: str) -> str | None:
    """RFC 7208 §6.2: the explanation text, or None on any problem (never an error)."""
    try:
        target = _truncate(await _expand(resolver, ctx, exp, domain))
        if not _valid_domain(target):
            return None
        records = await resolver.txt(target)
        if len(records) != 1:
            return None
        text = records[0].decode("ascii")
        if any(c < " " or c > "~" for c in text):
            return None
        return await _expand(resolver, ctx, text, domain, exp=True)
    except (DnsError, _PermError, UnicodeDecodeError):
        return None


async def _check(resolver: Resolver, ctx: _Context, domain: str) -> SpfOutcome:
    """check_host() proper, sharing ``ctx`` with the caller's evaluation."""
    domain = domain.rstrip(".")
    if not _valid_domain(domain):
        return SpfOutcome(SpfResult.NONE, domain, problem="malformed domain")  # §4.3
    ctx.depth += 1
    try:
        if ctx.depth > 20:
            raise _PermError("include/redirect loop")
        record = await _fetch_record(resolver, domain)
        if record is None:
            return SpfOutcome(SpfResult.NONE, domain, problem="no SPF record")  # §4.5
        parsed = _parse_record(record)
        for mech in parsed.mechanisms:
            if await _mechanism_matches(resolver, ctx, mech, domain):
                result = mech.qualifier
                explanation = None
                if result is SpfResult.FAIL and parsed.exp is not None:
                    explanation = await _explain(resolver, ctx, parsed.exp, domain)
                return SpfOutcome(result, domain, explanation, mechanism=mech.text)
        if parsed.redirect is not None:  # RFC 7208 §6.1
            ctx.count_lookup()
            target = _truncate(await _expand(resolver, ctx, parsed.redirect, domain))
            inner = await _check(resolver, ctx, target)
            if inner.result is SpfResult.NONE:
                return SpfOutcome(
                    SpfResult.PERMERROR, inner.domain, problem=f"redirect to {target}: no record"
                )
            return inner
        return SpfOutcome(SpfResult.NEUTRAL, domain, mechanism="default")  # RFC 7208 §4.7
    except _PermError as exc:
        return SpfOutcome(SpfResult.PERMERROR, domain, problem=str(exc))
    except _TempError as exc:
        return SpfOutcome(SpfResult.TEMPERROR, domain, problem=str(exc))
    finally:
        ctx.depth -= 1


async def check_host(
    resolver: Resolver,
    ip: str | IPAddress,
    domain: str,
    sender: str,
    helo: str = "",
    *,
    receiver: str = "",
    now: float | None = None,
) -> SpfOutcome:
    """RFC 7208 §4: evaluate ``domain``'s SPF policy for a message from ``ip``.

    ``sender`` is the MAIL FROM address (or postmaster@helo); an empty local part becomes
    "postmaster" (§4.3).
    """
    try:
        addr = _normalise_ip(ip)
    except ValueError:
        return SpfOutcome(SpfResult.PERMERROR, domain, problem=f"bad IP address {ip!r}")
    local, at, sender_domain = sender.rpartition("@")
    if not at:
        local, sender_domain = "postmaster", sender
    if not local:
        local = "postmaster"  # RFC 7208 §4.3
    ctx = _Context(addr, f"{local}@{sender_domain}", helo, receiver)
    if now is not None:
        ctx.now = now
    return await _check(resolver, ctx, domain)


async def check_spf(
    resolver: Resolver,
    ip: str,
    mail_from: str,
    helo: str,
    *,
    receiver: str = "",
) -> SpfVerdict:
    """Check the HELO identity and the MAIL FROM identity (RFC 7208 §2.3, §2.4)."""
    helo_name = helo.strip()
    if helo_name.startswith("[") or not _valid_domain(helo_name):
        helo_outcome = SpfOutcome(SpfResult.NONE, helo_name, problem="HELO is not a domain")
    else:
        helo_outcome = await check_host(
            resolver, ip, helo_name, f"postmaster@{helo_name}", helo_name, receiver=receiver
        )
    if not mail_from:
        return SpfVerdict(helo_outcome, helo_outcome)  # RFC 7208 §2.4: null reverse-path
    domain = mail_from.rpartition("@")[2]
    outcome = await check_host(resolver, ip, domain, mail_from, helo_name, receiver=receiver)
    return SpfVerdict(helo_outcome, outcome)
