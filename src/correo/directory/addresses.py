"""Mail address normalisation for the directory (pure: no I/O).

Every address the directory stores or looks up goes through one normaliser so
that "Alice+News@Exämple.COM" and "alice@xn--exmple-cua.com" meet in the same
dict key. Domains become lowercase IDNA A-labels; local parts are lowercased
(as Postfix and Dovecot do by default); a subaddress tag is split off.

IDNA backend: the third-party ``idna`` package (IDNA 2008, RFC 5891, with the
UTS #46 mapping) when importable, else the stdlib ``encodings.idna`` codec
(IDNA 2003, RFC 3490). They differ only for a few characters (e.g. "ß").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "IDNA_BACKEND",
    "MAX_ADDRESS",
    "MAX_DOMAIN",
    "MAX_LOCAL_PART",
    "AddressError",
    "AddressNormalizer",
    "ParsedAddress",
    "domain_to_unicode",
    "normalize_domain",
]

MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1: local part at most 64 octets
MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2: domain at most 255 octets
MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3: path <...> at most 256 octets, so 254 inside
_MAX_INPUT = 1024  # refuse absurd input before any regex or codec sees it

# Control characters (C0, DEL, C1) and any Unicode whitespace.
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
# RFC 1035 §2.3.1 LDH label (after A-label conversion), RFC 1035 §2.3.4 63 octets.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# RFC 5322 §3.2.3 dot-atom of atext, widened to UTF-8 by RFC 6531 §3.3.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")


class AddressError(ValueError):
    """An address or domain is malformed; the message is safe to show an administrator."""


def _load_idna() -> tuple[str, Callable[[str], str], Callable[[str], str]]:
    """Pick the IDNA implementation once, at import time."""
    try:
        import idna
    except ImportError:  # pragma: no cover - depends on the environment

        def std_encode(domain: str) -> str:
            return domain.encode("idna").decode("ascii")  # RFC 3490 ToASCII

        def std_decode(domain: str) -> str:
            return domain.encode("ascii").decode("idna")  # RFC 3490 ToUnicode

        return "stdlib", std_encode, std_decode

    def encode(domain: str) -> str:
        return idna.encode(domain, uts46=True).decode("ascii")  # RFC 5891 §4 + UTS #46

    def decode(domain: str) -> str:
        return idna.decode(domain)  # RFC 5891 §5

    return "idna", encode, decode


IDNA_BACKEND, _to_alabel, _to_ulabel = _load_idna()


@functools.lru_cache(maxsize=4096)
def normalize_domain(domain: str) -> str:
    """Return the lowercase A-label form of ``domain`` or raise AddressError.

    Cached: the server normalises the same few domains many times a second.
    """
    if not domain:
        raise AddressError("empty domain")
    if len(domain) > _MAX_INPUT:
        raise AddressError("domain is too long")
    if _BAD_CHARS.search(domain):
        raise AddressError(f"domain {domain!r} contains spaces or control characters")
    if domain.startswith("["):
        raise AddressError(f"address literal {domain!r} cannot be a mail domain here")
    if domain.isascii():
        ascii_domain = domain.lower()
    else:
        try:
            ascii_domain = _to_alabel(domain)
        except (UnicodeError, ValueError) as exc:
            raise AddressError(f"domain {domain!r} is not a valid IDNA name: {exc}") from None
    labels = ascii_domain.split(".")
    for label in labels:
        if not _LDH_LABEL.fullmatch(label):
            raise AddressError(f"domain {domain!r} has an invalid label {label!r}")
    if labels[-1].isdigit():  # RFC 3696 §2: a TLD is never all-numeric (rejects bare IPs)
        raise AddressError(f"domain {domain!r} looks like an IP address")
    if "xn--" in ascii_domain:
        try:  # RFC 5891 §5.4: an A-label must decode to a valid U-label
            _to_ulabel(ascii_domain)
        except (UnicodeError, ValueError) as exc:
            raise AddressError(f"domain {domain!r} has an invalid A-label: {exc}") from None
    if len(ascii_domain) > MAX_DOMAIN:  # RFC 5321 §4.5.3.1.2
        raise AddressError(f"domain {domain!r} is longer than {MAX_DOMAIN} octets")
    return ascii_domain


def domain_to_unicode(domain: str) -> str:
    """Return the U-label form of a normalised domain, for display only."""
    try:
        return _to_ulabel(domain)
    except (UnicodeError, ValueError):
        return domain


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """A normalised address: ``local`` keeps the tag, ``base`` drops it."""

    local: str
    domain: str
    base: str
    detail: str | None

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def base_address(self) -> str:
        return f"{self.base}@{self.domain}"


class AddressNormalizer:
    """Normalises addresses with a configurable subaddress delimiter.

    ``recipient_delimiter`` is a set of characters, any of which starts the
    tag (RFC 5233 §1 uses "+"); the empty string disables subaddressing.
    """

    __slots__ = ("_delimiters",)

    def __init__(self, recipient_delimiter: str = "+") -> None:
        if _BAD_CHARS.search(recipient_delimiter) or any(c in '@."\\' for c in recipient_delimiter):
            raise ValueError(f"unusable recipient delimiter {recipient_delimiter!r}")
        self._delimiters = recipient_delimiter

    @property
    def recipient_delimiter(self) -> str:
        return self._delimiters

    def domain(self, domain: str) -> str:
        return normalize_domain(domain)

    def parse(self, address: str, *, strict: bool = False) -> ParsedAddress:
        """Split and normalise ``local@domain``.

        ``strict`` additionally requires a dot-atom local part: used when the
        administrator creates an address, not when a peer names one.
        """
        if len(address) > _MAX_INPUT:
            raise AddressError("address is too long")
        at = address.rfind("@")
        if at < 0:
            raise AddressError(f"address {address!r} has no '@'")
        local, raw_domain = address[:at], address[at + 1 :]
        if not local:
            raise AddressError(f"address {address!r} has an empty local part")
        if _BAD_CHARS.search(local):
            raise AddressError(f"address {address!r} contains spaces or control characters")
        domain = normalize_domain(raw_domain)
        if len(local.encode("utf-8")) > MAX_LOCAL_PART:  # RFC 5321 §4.5.3.1.1
            raise AddressError(f"local part of {address!r} is longer than {MAX_LOCAL_PART} octets")
        if strict and not _DOT_ATOM.fullmatch(local):  # RFC 5322 §3.4.1 dot-atom local part
            raise AddressError(f"local part of {address!r} is not a plain dot-atom")
        local = local.lower()
        if len(local.encode("utf-8")) + 1 + len(domain) > MAX_ADDRESS:  # RFC 5321 §4.5.3.1.3
            raise AddressError(f"address {address!r} is longer than {MAX_ADDRESS} octets")
        base, detail = self._split_detail(local)
        return ParsedAddress(local, domain, base, detail)

    def canonical(self, address: str) -> str:
        """The normalised address, tag kept (how accounts and aliases are keyed)."""
        return self.parse(address).address

    def _split_detail(self, local: str) -> tuple[str, str | None]:
        # RFC 5233 §1: "user+detail"; a leading delimiter is part of the name.
        cut = -1
        for delimiter in self._delimiters:
            pos = local.find(delimiter, 1)
            if pos > 0 and (cut < 0 or pos < cut):
                cut = pos
        if cut < 0:
            return local, None
        return local[:cut], (local[cut + 1 :] or None)
