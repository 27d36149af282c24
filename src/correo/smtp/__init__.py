"""correo.smtp: the sans-I/O SMTP/LMTP server core.

``ServerConnection`` turns bytes into events and replies into bytes; see
``server.py`` for the answering rules and the state table.
"""

from correo.smtp.address import Address, Path, parse_path
from correo.smtp.commands import (
    Auth,
    Bdat,
    Command,
    Data,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
    parse_command,
)
from correo.smtp.errors import LocalProtocolError, RemoteProtocolError, SmtpError
from correo.smtp.replies import Reply, ehlo_reply, greeting
from correo.smtp.server import (
    LEGAL,
    NEED_DATA,
    AuthCancel,
    AuthResponse,
    CommandError,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    NeedData,
    ServerConnection,
    SmtpLimits,
    State,
)

__all__ = [
    "LEGAL",
    "NEED_DATA",
    "Address",
    "Auth",
    "AuthCancel",
    "AuthResponse",
    "Bdat",
    "Command",
    "CommandError",
    "ConnectionClosed",
    "Data",
    "DataChunk",
    "DataEnd",
    "Event",
    "Expn",
    "Helo",
    "Help",
    "LocalProtocolError",
    "MailFrom",
    "NeedData",
    "Noop",
    "Path",
    "Quit",
    "RcptTo",
    "RemoteProtocolError",
    "Reply",
    "Rset",
    "ServerConnection",
    "SmtpError",
    "SmtpLimits",
    "StartTls",
    "State",
    "Vrfy",
    "ehlo_reply",
    "greeting",
    "parse_command",
    "parse_path",
]
