"""Finding and reading a message's header section while it streams past.

The SMTP shells need a few header facts before the message is stored — From: for
anti-spoofing on submission, Message-ID and Date for RFC 6409 §8 fix-ups, the number of
Received: fields for loop detection — without holding the body.  The collector keeps
only the header section, bounded, and hands back everything after it.

There is one way to read fields and addresses: :func:`parse_fields` splits with
:func:`~correo.message.mime.split_header_fields` and :func:`addresses_in` parses with
:func:`~correo.message.mime.parse_address_list`, the functions behind IMAP ENVELOPE.
The submission From: check, DMARC and the stored ENVELOPE therefore see the same
``From`` — including the obsolete ``From :`` spelling — and cannot be played against
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .mime import Address, parse_address_list, split_header_fields, unfold

__all__ = [
    "HeaderCollector",
    "Originators",
    "addresses_in",
    "drop_fields",
    "originators",
    "parse_fields",
]


class HeaderCollector:
    """Collect the header section (up to and including the blank line) of a stream."""

    __slots__ = ("_buf", "complete", "header", "limit", "overflow")

    def __init__(self, limit: int = 256 * 1024) -> None:
        self.limit = limit
        self._buf = bytearray()
        self.header = b""
        self.complete = False
        self.overflow = False  # no end of header section within ``limit`` bytes

    def feed(self, data: bytes) -> bytes | None:
        """Add data; returns None while collecting, then the bytes after the header section."""
        if self.complete:
            return data
        start = max(0, len(self._buf) - 3)
        self._buf += data
        if self._buf.startswith(b"\r\n"):  # RFC 5322 §2.1: no header fields at all
            return self._split(0)
        end = self._buf.find(b"\r\n\r\n", start)
        if end >= 0:
            return self._split(end + 2)
        if len(self._buf) > self.limit:
            self.overflow = True
            return self._split(len(self._buf))
        return None

    def finish(self) -> bytes:
        """End of message inside the header section: all of it is header."""
        if self.complete:
            return b""
        self._split(len(self._buf))
        return b""

    def _split(self, end: int) -> bytes:
        """``header`` gets the fields (each with its CRLF); the blank line starts the rest."""
        self.header = bytes(self._buf[:end])
        rest = bytes(self._buf[end:])
        self._buf = bytearray()
        self.complete = True
        return rest


def parse_fields(header: bytes) -> list[tuple[str, str]]:
    """Unfold a header section into (lowercased name, value) pairs; tolerant of junk lines.

    ``From :`` (blanks before the colon, RFC 5322 §4.5.1 obs-optional) is a From field,
    as IMAP ENVELOPE reads it; lines with no colon fold into the field above them.
    """
    fields: list[tuple[str, str]] = []
    for name, raw in split_header_fields(header):
        if not name or any(ord(c) < 33 or ord(c) > 126 for c in name):
            continue  # RFC 5322 §2.2: not a field; record nothing, carry on
        value = raw[raw.index(b":") + 1 :].decode("utf-8", "surrogateescape")
        fields.append((name, unfold(value)))
    return fields


def drop_fields(header: bytes, prefixes: tuple[bytes, ...]) -> bytes:
    """``header`` without the fields whose ``name:`` is in ``prefixes`` (lowercase).

    Continuation lines (RFC 5322 §2.2.3) go with the field they fold.
    """
    width = max(map(len, prefixes), default=0)
    out: list[bytes] = []
    dropping = False
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        dropping = line[:width].lower().startswith(prefixes)
        if not dropping:
            out.append(line)
    return b"\r\n".join(out)


def _address_text(a: Address) -> str:
    """``local@domain`` of a mailbox; a missing part is left out (``bob``, ``@x.test``)."""
    local = "" if a.mailbox == "MISSING_MAILBOX" else a.mailbox or ""
    if a.host == "MISSING_DOMAIN":
        return local
    return f"{local}@{a.host}"


def addresses_in(value: str) -> list[str]:
    """The addr-specs in an address-list field value (display names and groups dropped)."""
    return [_address_text(a) for a in parse_address_list(value) if a.host is not None]


@dataclass(frozen=True, slots=True)
class Originators:
    """The From and Sender fields of a message as every reader of it here sees them."""

    from_fields: int  # RFC 5322 §3.6: exactly one From, at most one Sender
    sender_fields: int
    addresses: tuple[str, ...]  # every mailbox of every From and Sender field
    problems: tuple[str, ...]  # ambiguities another reader could resolve differently


def originators(fields: list[tuple[str, str]]) -> Originators:
    """Collect the originator addresses of ``fields`` (from :func:`parse_fields`)."""
    counts = {"from": 0, "sender": 0}
    addresses: list[str] = []
    problems: list[str] = []
    for name, value in fields:
        if name in counts:
            counts[name] += 1
            for a in parse_address_list(value, problems):
                if a.host is not None:  # group markers carry no address
                    addresses.append(_address_text(a))
    return Originators(counts["from"], counts["sender"], tuple(addresses), tuple(problems))
