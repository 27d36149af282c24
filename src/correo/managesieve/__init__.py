"""Sans-I/O ManageSieve (RFC 5804) server core: strings and literals, commands, states,
responses.  No sockets, no store: the shell (correo.server.managesieve_session)
performs every command and answers with :class:`Response` values.
"""

from __future__ import annotations

from .commands import (
    Authenticate,
    Capability,
    CheckScript,
    Command,
    DeleteScript,
    GetScript,
    HaveSpace,
    ListScripts,
    Logout,
    Noop,
    PutScript,
    RenameScript,
    SaslCancel,
    SaslResponse,
    SetActive,
    StartTls,
    Unauthenticate,
    script_name_error,
)
from .connection import (
    LEGAL,
    NEED_DATA,
    CommandError,
    ConnectionClosed,
    LocalProtocolError,
    SieveLimits,
    SieveServerConnection,
    State,
)
from .responses import Response, capability_block, quote, script_block, script_list

__all__ = [
    "LEGAL",
    "NEED_DATA",
    "Authenticate",
    "Capability",
    "CheckScript",
    "Command",
    "CommandError",
    "ConnectionClosed",
    "DeleteScript",
    "GetScript",
    "HaveSpace",
    "ListScripts",
    "LocalProtocolError",
    "Logout",
    "Noop",
    "PutScript",
    "RenameScript",
    "Response",
    "SaslCancel",
    "SaslResponse",
    "SetActive",
    "SieveLimits",
    "SieveServerConnection",
    "StartTls",
    "State",
    "Unauthenticate",
    "capability_block",
    "quote",
    "script_block",
    "script_list",
    "script_name_error",
]
