"""UIDONLY (RFC 9586): which commands name messages by sequence number.

Once a client has enabled UIDONLY, such a command is ``BAD [UIDREQUIRED]`` (§3.1):
FETCH, STORE, COPY, MOVE, SEARCH, SORT, THREAD and REPLACE in their non-UID forms,
and any SEARCH program with a bare sequence set.  Responses then name messages by
UID (``* uid UIDFETCH (...)``, VANISHED for EXPUNGE; the shell writes those).
"""

from __future__ import annotations

from correo.imap.cmdtypes import Copy, Fetch, Move, Search, Sort, Store, Thread
from correo.imap.search import And, Not, Or, SearchKey, SeqKey

__all__ = ["uses_sequence_numbers"]


def _program(key: SearchKey) -> bool:
    match key:
        case SeqKey(seqset, uid):
            return not uid and not seqset.saved  # $ holds UIDs already (RFC 5182)
        case Not(inner):
            return _program(inner)
        case Or(left, right):
            return _program(left) or _program(right)
        case And(keys):
            return any(_program(k) for k in keys)
    return False


def uses_sequence_numbers(command: object) -> bool:
    """Whether ``command`` names messages by sequence number (RFC 9586 §3.1)."""
    match command:
        case Fetch(uid=uid) | Store(uid=uid) | Copy(uid=uid) | Move(uid=uid):
            return not uid
        case Search(uid=uid, criteria=criteria):
            return not uid or _program(criteria)
        case Sort(uid=uid, search=program) | Thread(uid=uid, search=program):
            return not uid or _program(program)
    return False
