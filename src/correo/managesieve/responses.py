"""ManageSieve responses (RFC 5804 §1.3, §4): OK / NO / BYE with an optional code and
human-readable string, and the data blocks that precede them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Response", "capability_block", "quote", "script_block", "script_list"]


def quote(value: str | bytes) -> bytes:
    """A quoted string when it fits the grammar, else a literal (RFC 5804 §4)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= 1024 and b"\r" not in data and b"\n" not in data and b"\x00" not in data:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


@dataclass(frozen=True, slots=True)
class Response:
    """``OK``, ``NO`` or ``BYE``; ``code`` e.g. "NONEXISTENT" or 'TAG "x"' (§1.3)."""

    kind: str
    code: str | None = None
    text: str | None = None

    def to_bytes(self) -> bytes:
        out = self.kind.encode()
        if self.code:
            out += b" (" + self.code.encode("utf-8") + b")"
        if self.text is not None:
            out += b" " + quote(self.text)
        return out + b"\r\n"


def capability_block(items: Sequence[tuple[str, str | None]]) -> bytes:
    """The capability lines (RFC 5804 §1.7), without the final OK."""
    lines = [
        quote(name) + (b" " + quote(value) if value is not None else b"") for name, value in items
    ]
    return b"".join(line + b"\r\n" for line in lines)


def script_list(scripts: Iterable[tuple[str, bool]]) -> bytes:
    """LISTSCRIPTS data (RFC 5804 §2.7)."""
    return b"".join(quote(n) + (b" ACTIVE" if a else b"") + b"\r\n" for n, a in scripts)


def script_block(text: str) -> bytes:
    """GETSCRIPT data: always a literal, the script may span lines (§2.9)."""
    data = text.encode("utf-8")
    return b"{%d}\r\n" % len(data) + data + b"\r\n"
