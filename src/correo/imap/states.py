"""Which command is legal in which state: one table (RFC 9051 §3, §6).

``LEGAL`` maps every command name the parser knows to the states where it may
be issued; anything else is answered ``BAD`` by the connection.  A test walks
every (state, command) pair.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["LEGAL", "ImapState", "is_legal"]


class ImapState(enum.Enum):
    """RFC 9051 §3 connection states."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_N, _A, _S = ImapState.NOT_AUTHENTICATED, ImapState.AUTHENTICATED, ImapState.SELECTED
_ANY: Final = frozenset({_N, _A, _S})
_NOT_AUTH: Final = frozenset({_N})
_AUTH: Final = frozenset({_A, _S})  # RFC 9051 §6.3: authenticated-state commands work selected too
_SELECTED: Final = frozenset({_S})

LEGAL: Final[dict[str, frozenset[ImapState]]] = {
    # RFC 9051 §6.1: any state
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "ID": _ANY,  # RFC 2971 §3.1: any state
    # RFC 9051 §6.2: not authenticated
    "STARTTLS": _NOT_AUTH,
    "AUTHENTICATE": _NOT_AUTH,
    "LOGIN": _NOT_AUTH,
    # RFC 9051 §6.3: authenticated (and selected)
    "ENABLE": frozenset({_A}),  # RFC 5161 §3.1: authenticated state only
    "SELECT": _AUTH,
    "EXAMINE": _AUTH,
    "CREATE": _AUTH,
    "DELETE": _AUTH,
    "RENAME": _AUTH,
    "SUBSCRIBE": _AUTH,
    "UNSUBSCRIBE": _AUTH,
    "LIST": _AUTH,
    "LSUB": _AUTH,
    "NAMESPACE": _AUTH,
    "STATUS": _AUTH,
    "APPEND": _AUTH,
    "IDLE": _AUTH,
    "COMPRESS": _AUTH,  # RFC 4978 §3: after authentication
    "GETQUOTA": _AUTH,  # RFC 9208 §4
    "GETQUOTAROOT": _AUTH,
    "SETQUOTA": _AUTH,
    "NOTIFY": _AUTH,  # RFC 5465 §3.1: authenticated and selected states
    "GENURLAUTH": _AUTH,  # RFC 4467 §7
    "RESETKEY": _AUTH,
    "URLFETCH": _AUTH,
    "UNAUTHENTICATE": _AUTH,  # RFC 8437 §3
    "GETMETADATA": _AUTH,  # RFC 5464 §4
    "SETMETADATA": _AUTH,
    "SETACL": _AUTH,  # RFC 4314 §3
    "DELETEACL": _AUTH,
    "GETACL": _AUTH,
    "LISTRIGHTS": _AUTH,
    "MYRIGHTS": _AUTH,
    "ESEARCH": _AUTH,  # RFC 7377 §2: authenticated and selected states
    # RFC 9051 §6.4: selected
    "CHECK": _SELECTED,  # RFC 3501 §6.4.1 (gone from rev2, harmless to keep)
    "CLOSE": _SELECTED,
    "UNSELECT": _SELECTED,
    "EXPUNGE": _SELECTED,
    "UID EXPUNGE": _SELECTED,
    "SEARCH": _SELECTED,
    "UID SEARCH": _SELECTED,
    "SORT": _SELECTED,
    "UID SORT": _SELECTED,
    "THREAD": _SELECTED,
    "UID THREAD": _SELECTED,
    "FETCH": _SELECTED,
    "UID FETCH": _SELECTED,
    "STORE": _SELECTED,
    "UID STORE": _SELECTED,
    "COPY": _SELECTED,
    "UID COPY": _SELECTED,
    "MOVE": _SELECTED,
    "UID MOVE": _SELECTED,
    "CANCELUPDATE": _SELECTED,
    "REPLACE": _SELECTED,  # RFC 8508 §3.3
    "UID REPLACE": _SELECTED,  # RFC 5267 §5: command-select
}


def is_legal(state: ImapState, name: str) -> bool:
    """Whether command ``name`` (upper-case, ``"UID FETCH"`` style) may run in ``state``."""
    return state in LEGAL.get(name, frozenset())
