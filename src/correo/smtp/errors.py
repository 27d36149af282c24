"""Exceptions of the SMTP core.

Two kinds, as in h11: misuse of the core by our own code (a bug in the
shell) versus a protocol violation by the peer, which carries the reply to
send. The peer's violations never escape ``ServerConnection``: they are
turned into ``CommandError`` events there, in one place.

::

    SmtpError
    ├── LocalProtocolError    our code called the core out of turn
    └── RemoteProtocolError   the peer sent something malformed (has .reply)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from correo import sansio

if TYPE_CHECKING:
    from correo.smtp.replies import Reply

__all__ = ["LocalProtocolError", "RemoteProtocolError", "SmtpError"]


class SmtpError(Exception):
    """Base of every exception raised by ``correo.smtp``."""


class LocalProtocolError(SmtpError, sansio.LocalProtocolError):
    """The shell used the core wrongly (e.g. next_event() with an unanswered event)."""


class RemoteProtocolError(SmtpError):
    """The peer violated the protocol; ``reply`` is what to answer."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.code, reply.text)
        self.reply = reply
