"""Exceptions of the IMAP core.

As in h11 there are two kinds: misuse of the core by our own shell (a bug),
and the peer's protocol violation, which carries the status and response code
to answer with.  ``ParseError`` never escapes :class:`ImapConnection`; it is
turned into a tagged ``BAD``/``NO`` there, in one place.

::

    ImapError
    ├── LocalProtocolError   our code called the core out of turn
    └── ParseError           the peer sent something malformed (status, text, code)
"""

from __future__ import annotations

from correo import sansio

__all__ = ["ImapError", "LocalProtocolError", "ParseError"]


class ImapError(Exception):
    """Base of every exception raised by ``correo.imap``."""


class LocalProtocolError(ImapError, sansio.LocalProtocolError):
    """The shell used the core wrongly (e.g. ``append_accept()`` with no APPEND pending)."""


class ParseError(ImapError):
    """The peer's input is invalid; answer ``status [code] text`` (RFC 9051 §7.1)."""

    def __init__(self, text: str, code: str | None = "PARSE", status: str = "BAD") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status
