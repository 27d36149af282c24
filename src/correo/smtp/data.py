"""Incremental DATA decoder and BDAT line checker: end detection, dot-unstuffing,
line-end checks.

RFC 5321 §4.5.2: the message ends only at CRLF "." CRLF, where the first
CRLF may be the one that ended the DATA command. Any CR not followed by LF or
LF not preceded by CR is recorded (SMTP smuggling, CVE-2023-51764) and the
decoder keeps reading to the real end so the session stays in step.

BDAT (RFC 3030) needs no end detection, but its octets become a message that a
relay later sends with DATA, so :class:`LineChecker` holds them to the same
line rules: a bare CR or LF accepted here would be a smuggled end of data at
the next hop.

Every step is a bytes method (find, count, replace, split) over the chunk;
between calls at most three bytes are carried (a possible ``.\\r`` of an end
marker or a trailing CR), so memory is bounded by the chunk the caller feeds.
"""

from __future__ import annotations

__all__ = ["DotDecoder", "LineChecker"]

_CRLF = b"\r\n"
_END = b"\r\n.\r\n"  # RFC 5321 §4.1.1.4: <CRLF>.<CRLF>
_STUFFED = b"\r\n."  # RFC 5321 §4.5.2: a line starting with "." had one added


class DotDecoder:
    """Feed raw DATA bytes; get unstuffed message bytes and, at the end, the rest.

    The decoder behaves as if the data were preceded by CRLF (``_bol``); it
    scans ``CRLF + carry + chunk`` so that end markers and stuffed dots at the
    start of a chunk need no special case.
    """

    __slots__ = (
        "_bol",
        "_carry",
        "_line_len",
        "bare_line_end",
        "done",
        "line_too_long",
        "max_line",
    )

    def __init__(self, max_line: int = 0) -> None:
        self._bol = True  # the CRLF of the DATA command line starts the first line
        self._carry = b""
        self._line_len = 0
        self.max_line = max_line
        self.bare_line_end = False
        self.line_too_long = False
        self.done = False

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """Decode ``data``; return (message bytes, rest after the end or None)."""
        bol = self._bol
        s = _CRLF + self._carry + data if bol else self._carry + data
        end = s.find(_END)
        rest: bytes | None
        if end >= 0:
            cut = end + 2  # the CRLF before "." belongs to the message
            rest = s[end + 5 :]
            self.done = True
            self._carry = b""
            self._bol = True
        else:
            rest = None
            # Hold back what may begin an end marker or a CRLF.
            if s.endswith(b"\r\n.\r"):
                cut, self._carry, self._bol = len(s) - 2, b".\r", True
            elif s.endswith(_STUFFED):
                cut, self._carry, self._bol = len(s) - 1, b".", True
            elif s.endswith(_CRLF):
                cut, self._carry, self._bol = len(s), b"", True
            elif s.endswith(b"\r"):
                cut, self._carry, self._bol = len(s) - 1, b"\r", False
            else:
                cut, self._carry, self._bol = len(s), b"", False
        seg = s[:cut] if cut < len(s) else s
        if not self.bare_line_end:
            # RFC 5321 §2.3.8: CR and LF only ever as the pair CRLF. The segment
            # never splits a CRLF, so counts settle it without a byte loop.
            crlf = seg.count(_CRLF)
            if seg.count(b"\r") != crlf or seg.count(b"\n") != crlf:
                self.bare_line_end = True
        out = seg.replace(_STUFFED, _CRLF)  # RFC 5321 §4.5.2 transparency
        if bol:
            out = out[2:]
        if self.max_line and not self.line_too_long:
            self._check_lines(out)
        return out, rest

    def _check_lines(self, out: bytes) -> None:
        self._line_len, too_long = _line_lengths(out, self._line_len, self.max_line)
        self.line_too_long = self.line_too_long or too_long


def _line_lengths(out: bytes, carried: int, max_line: int) -> tuple[int, bool]:
    """(length of the unfinished last line, whether a line of ``out`` exceeds ``max_line``).

    RFC 5321 §4.5.3.1.6: text line <= 1000 octets incl. CRLF, unstuffed.
    """
    first = out.find(b"\n")
    if first < 0:
        return carried + len(out), carried + len(out) > max_line
    longest = carried + first + 1
    last = out.rfind(b"\n")
    if last > first:
        longest = max(longest, 1 + max(map(len, out[first + 1 : last].split(b"\n"))))
    tail = len(out) - last - 1  # an unfinished line already too long counts at once
    return tail, longest > max_line or tail > max_line


class LineChecker:
    """Watch the raw octets of BDAT chunks for bare CR/LF and over-long lines.

    Chunks may split a CRLF anywhere (RFC 3030 §2), so a trailing CR is carried
    to the next call; a CR still pending at :meth:`finish` is a bare one.
    """

    __slots__ = ("_cr", "_line_len", "bare_line_end", "line_too_long", "max_line")

    def __init__(self, max_line: int = 0) -> None:
        self._cr = False
        self._line_len = 0
        self.max_line = max_line
        self.bare_line_end = False
        self.line_too_long = False

    def feed(self, data: bytes) -> None:
        """Check the next octets of the message."""
        if not data:
            return
        if self.max_line and not self.line_too_long:
            self._line_len, self.line_too_long = _line_lengths(data, self._line_len, self.max_line)
        if self.bare_line_end:
            return
        s = b"\r" + data if self._cr else data
        self._cr = s.endswith(b"\r")
        if self._cr:
            s = s[:-1]
        # RFC 5321 §2.3.8: CR and LF only ever as the pair CRLF.
        crlf = s.count(_CRLF)
        if s.count(b"\r") != crlf or s.count(b"\n") != crlf:
            self.bare_line_end = True

    def finish(self) -> None:
        """The message is complete: a CR left waiting for its LF was bare."""
        if self._cr:
            self._cr = False
            self.bare_line_end = True
