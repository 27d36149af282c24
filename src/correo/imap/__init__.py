"""The sans-I/O IMAP server core (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1).

``ImapConnection`` frames and parses commands and enforces limits and the
state table; ``responses`` builds what the shell writes back; ``search``
evaluates SEARCH programs over any :class:`MessageView`.
"""

from __future__ import annotations

from correo.imap.commands import *  # noqa: F403
from correo.imap.commands import __all__ as _commands_all
from correo.imap.errors import ImapError, LocalProtocolError, ParseError
from correo.imap.reader import ImapLimits
from correo.imap.sequence import SequenceSet, format_sequence
from correo.imap.server import *  # noqa: F403
from correo.imap.server import __all__ as _server_all
from correo.imap.states import LEGAL, ImapState, is_legal
from correo.imap.utf7 import decode_mutf7, encode_mutf7

__all__ = [
    *_commands_all,
    *_server_all,
    "LEGAL",
    "ImapError",
    "ImapLimits",
    "ImapState",
    "LocalProtocolError",
    "ParseError",
    "SequenceSet",
    "decode_mutf7",
    "encode_mutf7",
    "format_sequence",
    "is_legal",
]
