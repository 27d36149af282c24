"""Finding and reading a message's header section while it streams past.

The SMTP shells need a few header facts before the message is stored — From: for
anti-spoofing on submission, Message-ID and Date for RFC 6409 §8 fix-ups, the number of
Received: fields for loop detection — without holding the body.  The collector keeps
only the header section, bounded, and hands back everything after it.
"""

from __future__ import annotations

from email.utils import getaddresses

__all__ = ["HeaderCollector", "addresses_in", "drop_fields", "parse_fields"]


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
    """Unfold a header section into (lowercased name, value) pairs; tolerant of junk lines."""
    text = header.decode("utf-8", "surrogateescape")
    fields: list[tuple[str, str]] = []
    for line in text.split("\r\n"):
        if not line:
            continue
        if line[0] in " \t":
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + line)
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(ord(c) < 33 for c in name):
            continue  # RFC 5322 §2.2: not a field; record nothing, carry on
        fields.append((name.lower(), value.strip()))
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


def addresses_in(value: str) -> list[str]:
    """The addr-specs in an address-list field value (display names dropped)."""
    return [addr for _name, addr in getaddresses([value]) if addr]
