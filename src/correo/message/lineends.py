"""Line ends of a message received in chunks: every bare LF becomes CRLF.

IMAP serves messages in RFC 5322 form, where a line ends in CRLF (RFC 5322 §2.1, RFC 9051
§2.3.1 counts RFC822.SIZE "as expressed in RFC 5322 format"): a client that APPENDs a
bare-LF message gets back, and counts, the CRLF form (as from Dovecot). A bare CR is left
alone. Linear in the input; one byte of state across chunks.
"""

from __future__ import annotations

__all__ = ["LineEnds"]


class LineEnds:
    """``feed()`` chunks, get the CRLF form of each (an LF after a CR that ended the
    previous chunk is already a CRLF)."""

    __slots__ = ("_cr",)

    def __init__(self) -> None:
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        if not data:
            return data
        head = b""
        if self._cr and data[:1] == b"\n":
            head, data = b"\n", data[1:]
        self._cr = data[-1:] == b"\r" if data else self._cr and not head
        if b"\n" not in data or data.count(b"\n") == data.count(b"\r\n"):
            # no bare LF (the usual case): two counts, no copies of a 100 KB literal
            return head + data if head else data
        return head + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
