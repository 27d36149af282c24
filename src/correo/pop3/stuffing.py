"""Streaming transforms for POP3 multi-line message responses (RETR, TOP).

Both work chunk by chunk with O(1) state, so a 100 MB message streams through
in bounded memory, and use only bytes methods (replace, split, find) so the
per-byte work happens in C.  The input is expected to be the stored message
with CRLF line ends; a bare LF still counts as a line end for stuffing, so a
client that splits on LF can never see a premature terminator.
"""

from __future__ import annotations

__all__ = ["DotStuffer", "TopFilter"]


#: Periods looked at one by one before a chunk goes through ``bytes.replace`` whole.
_SCAN = 16


def _stuffed(chunk: bytes) -> bytes:
    """``chunk`` with every ``\\n.`` made ``\\n..``; the chunk itself when there is none.

    ``replace`` searches for the two octets at under 1 GB/s, while a period alone is
    found by ``memchr``: a chunk without periods (base64 parts, plain short text) or
    whose first few start no line is checked by a few ``find`` calls instead; other
    chunks pay those calls on top of ``replace``.
    """
    find = chunk.find
    at = find(b".", 1)
    for _ in range(_SCAN):
        if at < 0:
            return chunk
        if chunk[at - 1] == 0x0A:  # a line starts with "."
            break
        at = find(b".", at + 1)
    return chunk.replace(b"\n.", b"\n..")


class DotStuffer:
    """Byte-stuff a message body and add the terminating ``.`` line (RFC 1939 §3)."""

    __slots__ = ("_at_line_start", "_ends_crlf", "_finished", "_last")

    def __init__(self) -> None:
        self._at_line_start = True
        self._ends_crlf = True  # an empty message needs no extra CRLF before "."
        self._last = b""
        self._finished = False

    def feed(self, chunk: bytes) -> bytes:
        """Return ``chunk`` with every line starting with ``.`` given one more ``.``."""
        if self._finished:
            raise ValueError("DotStuffer.feed() after finish()")
        if not chunk:
            return b""
        out = _stuffed(chunk)  # RFC 1939 §3: byte-stuff the termination octet
        if self._at_line_start and chunk[:1] == b".":
            out = b"." + out  # the line began in an earlier chunk boundary
        self._at_line_start = chunk[-1:] == b"\n"
        tail = self._last + chunk[-2:]
        self._ends_crlf = tail[-2:] == b"\r\n"
        self._last = chunk[-1:]
        return out

    def finish(self) -> bytes:
        """Close the multi-line response: CRLF if the data lacked one, then ``.`` CRLF."""
        if self._finished:
            raise ValueError("DotStuffer.finish() called twice")
        self._finished = True
        # RFC 1939 §3: the response ends with CRLF "." CRLF
        return b".\r\n" if self._ends_crlf else b"\r\n.\r\n"


class TopFilter:
    """Pass the header, the blank line, then at most ``lines`` body lines (RFC 1939 §7 TOP)."""

    __slots__ = ("_done", "_in_body", "_remaining", "_tail")

    def __init__(self, lines: int) -> None:
        if lines < 0:
            raise ValueError("TopFilter lines must be >= 0")
        self._remaining = lines
        self._in_body = False
        self._done = False
        # A virtual LF before the message lets a message that starts with the
        # blank line (no header at all) match the same patterns.
        self._tail = b"\n"

    @property
    def done(self) -> bool:
        """True once everything TOP needs was emitted; the shell may stop reading."""
        return self._done

    def feed(self, chunk: bytes) -> bytes:
        """Return the part of ``chunk`` that belongs to the TOP response."""
        if self._done or not chunk:
            return b""
        if self._in_body:
            return self._body(chunk)
        window = self._tail + chunk
        ends = [i + len(p) for p in (b"\n\r\n", b"\n\n") if (i := window.find(p)) >= 0]
        if not ends:
            self._tail = window[-2:]
            return chunk
        # RFC 5322 §2.1: the header ends at the first empty line
        cut = min(ends) - len(self._tail)
        self._in_body = True
        if self._remaining == 0:
            self._done = True
            return chunk[:cut]
        return chunk[:cut] + self._body(chunk[cut:])

    def _body(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        count = chunk.count(b"\n")
        if count < self._remaining:
            self._remaining -= count
            return chunk
        rest = chunk.split(b"\n", self._remaining)[-1]
        self._remaining = 0
        self._done = True
        return chunk[: len(chunk) - len(rest)]
