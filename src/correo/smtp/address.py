"""Mailbox addresses and reverse/forward paths (RFC 5321 §4.1.2, RFC 6531 §3.3).

Parsing is one compiled regular expression over bytes (no per-byte Python
loop), followed by the checks a grammar cannot express: lengths, 8-bit
admission, UTF-8 validity and address-literal contents. The domain is kept as
received; case folding and IDNA belong to the caller.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from correo.smtp.errors import RemoteProtocolError
from correo.smtp.replies import BAD_RECIPIENT_SYNTAX, BAD_SENDER_SYNTAX

__all__ = ["MAX_DOMAIN", "MAX_LOCAL_PART", "Address", "Path", "parse_path"]

MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2

# RFC 5321 §4.1.2 atext (RFC 5322 §3.2.3); 8-bit bytes are admitted by the
# pattern (RFC 6531 §3.3 UTF8-non-ascii) and refused later unless SMTPUTF8.
_ATEXT = rb"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\xff"
_ATOM = rb"[" + _ATEXT + rb"]+"
_DOT_STRING = _ATOM + rb"(?:\." + _ATOM + rb")*"
# RFC 5321 §4.1.2 Quoted-string: qtextSMTP = %d32-33 / %d35-91 / %d93-126,
# quoted-pairSMTP = %d92 %d32-126.
_QUOTED = rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\x20-\x7e])*"'
# sub-domain = Let-dig [Ldh-str]; written so that no two branches overlap,
# which keeps matching linear on hostile input.
_LABEL = rb"[A-Za-z0-9\x80-\xff]+(?:-+[A-Za-z0-9\x80-\xff]+)*"
_DOMAIN = _LABEL + rb"(?:\." + _LABEL + rb")*"
# RFC 5321 §4.1.3: "[" IPv4 / "IPv6:" IPv6 / tag ":" 1*dcontent "]"
_LITERAL = rb"\[[\x21-\x5a\x5e-\x7e]+\]"
_ADL = rb"@" + _DOMAIN + rb"(?:,@" + _DOMAIN + rb")*:"  # RFC 5321 §4.1.2 A-d-l
_PATH_RE = re.compile(
    rb"<(?P<adl>"
    + _ADL
    + rb")?(?P<local>"
    + _DOT_STRING
    + rb"|"
    + _QUOTED
    + rb")@(?P<domain>"
    + _DOMAIN
    + rb"|"
    + _LITERAL
    + rb")>"
)
_ATEXT_STR = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff"
_DOT_ATOM_TEXT = re.compile(rf"[{_ATEXT_STR}]+(?:\.[{_ATEXT_STR}]+)*")
_GENERAL_LITERAL = re.compile(r"\[[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?:[\x21-\x5a\x5e-\x7e]+\]")
_QUOTED_PAIR = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: ``local`` is unquoted; ``domain`` is as received (may be ``[literal]``)."""

    local: str
    domain: str

    def __str__(self) -> str:
        local = self.local
        if not _DOT_ATOM_TEXT.fullmatch(local):  # RFC 5321 §4.1.2: quote unless Dot-string
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed reverse- or forward-path.

    ``address is None`` is the null reverse-path ``<>``; ``<postmaster>`` in
    RCPT gives ``Address("postmaster", "")``. ``raw`` is the path as sent.
    """

    address: Address | None
    raw: str
    had_source_route: bool = False


def _fail(kind: Literal["mail", "rcpt"]) -> RemoteProtocolError:
    return RemoteProtocolError(BAD_SENDER_SYNTAX if kind == "mail" else BAD_RECIPIENT_SYNTAX)


def _literal_ok(lit: str) -> bool:
    inner = lit[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            ipaddress.IPv6Address(inner[5:])  # RFC 5321 §4.1.3 IPv6-address-literal
        except ValueError:
            return False
        return True
    if inner[:1].isdigit():
        try:
            ipaddress.IPv4Address(inner)  # RFC 5321 §4.1.3 IPv4-address-literal
        except ValueError:
            return False
        return True
    return _GENERAL_LITERAL.fullmatch(lit) is not None  # RFC 5321 §4.1.3 General


def parse_path(
    data: bytes, pos: int = 0, *, kind: Literal["mail", "rcpt"], smtputf8: bool = False
) -> tuple[Path, int]:
    """Parse ``<path>`` starting at ``data[pos]``; return it and the index after ``>``.

    Raises ``RemoteProtocolError`` carrying 501 5.1.7 (MAIL) or 501 5.1.3 (RCPT).
    """
    if data.startswith(b"<>", pos):
        if kind == "mail":  # RFC 5321 §4.1.1.2: null reverse-path
            return Path(None, "<>"), pos + 2
        raise _fail(kind)
    if kind == "rcpt" and data[pos : pos + 12].lower() == b"<postmaster>":
        # RFC 5321 §4.1.1.3: "<Postmaster>" without domain MUST be accepted
        return Path(Address("postmaster", ""), data[pos : pos + 12].decode()), pos + 12
    m = _PATH_RE.match(data, pos)
    if m is None:
        raise _fail(kind)
    raw_bytes = m.group(0)
    if not smtputf8 and not raw_bytes.isascii():  # RFC 6531 §3.3: 8-bit only with SMTPUTF8
        raise _fail(kind)
    local_b, domain_b = m.group("local"), m.group("domain")
    if len(local_b) > MAX_LOCAL_PART or len(domain_b) > MAX_DOMAIN:  # RFC 5321 §4.5.3.1
        raise _fail(kind)
    try:
        raw = raw_bytes.decode("utf-8")
        local = local_b.decode("utf-8")
        domain = domain_b.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(kind) from None
    if local.startswith('"'):
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    if not local:
        raise _fail(kind)
    if domain.startswith("[") and not _literal_ok(domain):
        raise _fail(kind)
    # RFC 5321 §4.1.2 / §C: source routes MUST be accepted, SHOULD be ignored.
    return Path(Address(local, domain), raw, m.group("adl") is not None), m.end()
