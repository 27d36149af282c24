"""Events and modes of the sans-I/O IMAP connection that its parts share.

:mod:`correo.imap.server` re-exports them; the APPEND framing
(:mod:`correo.imap.appending`) makes most of them.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from correo import sansio
from correo.imap.sequence import SequenceSet

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AppendAborted",
    "AppendChunk",
    "AppendDone",
    "AppendEnd",
    "AppendStart",
    "CatenateStart",
    "CatenateText",
    "CatenateUrl",
    "Mode",
    "Respond",
    "Sentinel",
]


# Non-event answers of ImapConnection.next_event(), shared by every core: PAUSED while
# an AppendStart awaits append_accept()/append_reject().
Sentinel = sansio.Sentinel
NEED_DATA = sansio.NEED_DATA
PAUSED = sansio.PAUSED


Respond = sansio.Respond  # the core answered by itself: write ``data`` as-is


class Mode(enum.Enum):
    """What the connection is reading."""

    COMMAND = enum.auto()  # reading command lines
    LITERAL = enum.auto()  # reading a (small) literal of the current command
    APPEND_WAIT = enum.auto()  # AppendStart/CatenateStart/CatenateText: shell to decide
    APPEND_DATA = enum.auto()  # streaming a message or TEXT literal
    APPEND_NEXT = enum.auto()  # after a message: the next one or the end
    CATENATE = enum.auto()  # reading the parts of a CATENATE message
    CATENATE_URL = enum.auto()  # reading a URL part sent as a literal
    DISCARD = enum.auto()  # dropping the octets of a rejected LITERAL+ literal
    DISCARD_LINE = enum.auto()  # dropping the rest of a rejected command line
    IDLE = enum.auto()  # only DONE is valid (RFC 2177 §3)
    AUTH = enum.auto()  # the next line is a SASL response
    CLOSED = enum.auto()


@dataclass(frozen=True, slots=True)
class AppendStart:
    """One APPEND message is announced (RFC 9051 §6.3.12, RFC 3502 for the 2nd and later).

    The core pauses until the shell calls ``append_accept()`` or ``append_reject()``.
    """

    tag: str
    mailbox: str
    flags: tuple[str, ...]
    date: dt.datetime | None
    size: int
    binary: bool  # literal8: the message may hold NUL and 8-bit data (RFC 3516 §4.1)
    replace: SequenceSet | None = None  # REPLACE (RFC 8508): the message it replaces
    uid: bool = False  # UID REPLACE: ``replace`` holds UIDs


@dataclass(frozen=True, slots=True)
class CatenateStart:
    """A message made of parts begins (RFC 4469 §3): accept or reject it as a whole."""

    tag: str
    mailbox: str
    flags: tuple[str, ...]
    date: dt.datetime | None


@dataclass(frozen=True, slots=True)
class CatenateText:
    """A TEXT part of ``size`` octets is announced: accept (its octets follow as
    AppendChunk events) or reject the command."""

    size: int
    binary: bool


@dataclass(frozen=True, slots=True)
class CatenateUrl:
    """A URL part: the shell appends what it names, or refuses with append_abort()."""

    url: bytes


@dataclass(frozen=True, slots=True)
class AppendChunk:
    """Octets of the current APPEND message, in order."""

    data: bytes

    def __repr__(self) -> str:
        return f"AppendChunk(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class AppendEnd:
    """The current APPEND message is complete."""


@dataclass(frozen=True, slots=True)
class AppendDone:
    """The APPEND command ended well-formed: commit every message and answer ``tag``."""

    tag: str


@dataclass(frozen=True, slots=True)
class AppendAborted:
    """The APPEND broke off after an AppendStart: drop all its messages and write ``data``."""

    tag: str
    data: bytes
