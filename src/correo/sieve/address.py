"""Addresses for the address/envelope tests (RFC 5228 §2.7.4, RFC 5233) and
the RFC 3834 / RFC 5230 §4.5-4.6 checks that decide whether vacation may reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from correo.message.encoded import decode_header
from correo.message.headers import addresses_in
from correo.message.mime import parse_address_list

__all__ = [
    "ADDRESS_PARTS",
    "Envelope",
    "HeaderSource",
    "address_part",
    "decode_header_value",
    "parse_addresses",
    "parse_sender",
    "vacation_allowed",
]

ADDRESS_PARTS = frozenset({"all", "localpart", "domain", "user", "detail"})
SEPARATOR = "+"  # RFC 5233 §4: the separator is implementation-defined


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of one delivery; ``sender`` is "" for the null path."""

    sender: str
    recipient: str
    original_recipient: str | None = None
    auth: str | None = None


class HeaderSource(Protocol):
    """The one thing vacation_allowed needs from a message."""

    def header(self, name: str) -> list[str]: ...


def decode_header_value(value: str) -> str:
    """Decode RFC 2047 encoded-words (RFC 5228 §2.7.2) with correo's one header
    decoder: linear, never raises, and no slow pseudo-charsets such as punycode."""
    if "=?" not in value:
        return value
    return decode_header(value)


def parse_addresses(value: str) -> list[str]:
    """The addr-specs in one header value (groups flattened); never raises.

    The one address reader of correo.message: iterative and linear, so a From with
    thousands of nested comments is read, not dropped (the stdlib reader recursed,
    gave up, and let such a sender slip past every address test).
    """
    return [a for a in addresses_in(value) if a]


def parse_sender(value: str) -> tuple[str, str] | None:
    """(display name, address) when ``value`` is exactly one mailbox, else None.

    For vacation ``:from`` (RFC 5230 §4.2): one addr-spec with a domain, no line
    breaks, and no "@" in the display name (which would show another address).
    """
    if "\r" in value or "\n" in value:
        return None
    found = parse_address_list(value)
    if len(found) != 1 or found[0].host in (None, "MISSING_DOMAIN"):
        return None  # one mailbox with a domain, not a group
    if found[0].mailbox in (None, "MISSING_MAILBOX"):
        return None
    name = found[0].name or ""
    addr = f"{found[0].mailbox}@{found[0].host}"
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or "@" in name or " " in addr:
        return None
    return name, addr


def address_part(address: str, part: str) -> str | None:
    """One part of ``address``; None when the part does not exist.

    RFC 5233 §4: :detail fails (None) when the local part has no separator.
    """
    if part == "all":
        return address
    at = address.rfind("@")
    local, domain = (address, "") if at < 0 else (address[:at], address[at + 1 :])
    if part == "localpart":
        return local
    if part == "domain":
        return domain
    sep = local.find(SEPARATOR)
    if part == "user":
        return local if sep < 0 else local[:sep]
    if part == "detail":
        return None if sep < 0 else local[sep + 1 :]
    return None


_LIST_HEADERS = (
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
)
_RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def _norm(address: str) -> str:
    return address.strip().strip("<>").lower()


def _without_detail(address: str) -> str:
    at = address.rfind("@")
    local = address if at < 0 else address[:at]
    sep = local.find(SEPARATOR)
    if sep < 0:
        return address
    return local[:sep] + address[len(local) :]


def vacation_allowed(message: HeaderSource, envelope: Envelope, addresses: Iterable[str]) -> bool:
    """True when an automatic reply is permitted for this message.

    Pure helper for the delivery code, which additionally checks the
    duplicate-response store (RFC 5230 §4.2).
    """
    sender = _norm(envelope.sender)
    if not sender:  # RFC 3834 §2: never reply to the null reverse-path
        return False
    local = sender.rpartition("@")[0] or sender
    # RFC 5230 §4.6 / RFC 3834 §2: do not answer daemons and list machinery.
    if local in ("mailer-daemon", "listserv", "majordomo", "postmaster"):
        return False
    if local.startswith("owner-") or local.endswith(("-request", "-owner", "-bounces")):
        return False
    for value in message.header("auto-submitted"):  # RFC 3834 §5
        if value.split(";", 1)[0].strip().lower() != "no":
            return False
    for name in _LIST_HEADERS:  # RFC 3834 §2: lists are not personal mail
        if message.header(name):
            return False
    for value in message.header("precedence"):
        if value.strip().lower() in ("bulk", "junk", "list"):
            return False
    # RFC 5230 §4.5: reply only if one of the user's addresses is a recipient.
    mine = {_norm(a) for a in addresses if a.strip()}
    for addr in (envelope.recipient, envelope.original_recipient or ""):
        if addr.strip():
            mine.add(_norm(addr))
            mine.add(_without_detail(_norm(addr)))
    for name in _RECIPIENT_HEADERS:
        for value in message.header(name):
            for addr in parse_addresses(decode_header_value(value)):
                norm = _norm(addr)
                if norm in mine or _without_detail(norm) in mine:
                    return True
    return False
