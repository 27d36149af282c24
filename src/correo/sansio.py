"""The plumbing every sans-I/O protocol core shares (SMTP/LMTP, IMAP, POP3, ManageSieve).

Each core is driven the same way (as in h11): the shell feeds the peer's bytes to
``receive_data()`` (``b""`` for EOF) and asks ``next_event()``, which answers
``NEED_DATA`` when it cannot go on without more bytes, or ``PAUSED`` while the shell
owes it a decision.  Misuse of a core by our own code raises
:class:`LocalProtocolError`; the peer's mistakes never raise.

:class:`ReceiveBuffer` holds what has arrived and cuts it into lines under a length
limit.  An over-long line is answered once and then skipped up to its line end
without being stored, so a peer that never sends LF costs no memory.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "LINE_TOO_LONG",
    "NEED_DATA",
    "PAUSED",
    "AuthCancel",
    "AuthResponse",
    "ConnectionClosed",
    "LineTooLong",
    "LocalProtocolError",
    "ReceiveBuffer",
    "Respond",
    "Sentinel",
]


class Sentinel(enum.Enum):
    """Non-event answers of a core's ``next_event()``."""

    NEED_DATA = "NEED_DATA"  # feed more bytes with receive_data()
    PAUSED = "PAUSED"  # the core waits for the shell (an answer, tls_started()...)


NEED_DATA: Final = Sentinel.NEED_DATA
PAUSED: Final = Sentinel.PAUSED


class LocalProtocolError(Exception):
    """Our own code called a core out of turn: a bug in the shell, never the peer's doing."""


@dataclass(frozen=True, slots=True)
class Respond:
    """The core answered by itself: write ``data`` as-is."""

    data: bytes


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """The client's decoded answer to the last ``send_challenge()`` (a SASL step,
    RFC 4422 §3); its bytes are credentials, so they never show in a repr."""

    data: bytes

    def __repr__(self) -> str:
        return f"AuthResponse(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class AuthCancel:
    """The client sent ``*`` instead of a SASL response (RFC 4422 §3.5): the
    exchange fails and the shell answers with the protocol's refusal."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The session is over (EOF, a logout or too many errors): close the socket."""


class LineTooLong(enum.Enum):
    """What :meth:`ReceiveBuffer.take_line` returns for a line over its limit."""

    LINE_TOO_LONG = "LINE_TOO_LONG"


LINE_TOO_LONG: Final = LineTooLong.LINE_TOO_LONG


class ReceiveBuffer:
    """The bytes received and not consumed yet, whether the peer closed, and line cutting."""

    __slots__ = ("data", "discarding", "eof")

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.discarding = False  # inside an over-long line: dropped up to its LF

    def __len__(self) -> int:
        return len(self.data)

    def feed(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` marks EOF.  The rest of an over-long line
        is dropped here, unbuffered."""
        if not data:
            self.eof = True
            return
        if self.discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            data = data[end + 1 :]
            self.discarding = False
        self.data += data

    def clear(self) -> None:
        """Forget everything buffered (a closed session, a TLS upgrade)."""
        self.data.clear()
        self.discarding = False

    def take_line(self, limit: int) -> bytes | LineTooLong | None:
        """One LF-terminated line without its LF (a CR before it is kept: the caller
        judges line ends), None when it has not fully arrived, or LINE_TOO_LONG when
        ``limit`` octets, the line end included, pass without an LF.  An over-long line
        is dropped up to its LF, now or as it arrives."""
        buf = self.data
        end = buf.find(b"\n", 0, limit)
        if end < 0:
            if len(buf) < limit:
                return None
            later = buf.find(b"\n", limit)
            if later < 0:
                buf.clear()
                self.discarding = True
            else:
                del buf[: later + 1]
            return LINE_TOO_LONG
        line = bytes(buf[:end])
        del buf[: end + 1]
        return line
