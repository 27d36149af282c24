"""How each protocol answers a store that cannot write: one place, so every session agrees.

A full disk (or quota) is a condition the client should retry once space is freed, and
says so in its own words; any other store failure is a temporary server-side error.
Either way the session goes on: nothing was stored, and nothing is left half-written.
"""

from __future__ import annotations

import errno

from correo.smtp import Reply
from correo.store.api import QuotaExceededError, StoreFullError

__all__ = ["imap_reply", "smtp_reply", "storage_full"]


def storage_full(exc: BaseException) -> bool:
    """True for a full disk: StoreFullError, or ENOSPC/EDQUOT from writing a spool."""
    if isinstance(exc, StoreFullError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def smtp_reply(exc: BaseException) -> Reply:
    """The reply to the end of DATA (or a per-recipient LMTP reply) when storing failed."""
    if isinstance(exc, QuotaExceededError):  # RFC 3463 X.2.2 mailbox full
        if exc.permanent:
            return Reply(552, "5.2.2", "Message too large for the mailbox quota")
        return Reply(452, "4.2.2", "Mailbox full; try again later")
    if storage_full(exc):
        # RFC 5321 §4.2.3 452 "insufficient system storage"; RFC 3463 X.3.1 system full
        return Reply(452, "4.3.1", "Insufficient system storage; try again later")
    return Reply(451, "4.3.0", "Local error storing the message; try again later")


def imap_reply(exc: BaseException, what: str = "Temporary server failure") -> tuple[str, str]:
    """Text and response code of the tagged NO (RFC 5530 §3): LIMIT for a full disk,
    OVERQUOTA past the account's quota (RFC 9208 §4.4)."""
    if isinstance(exc, QuotaExceededError):
        return "Quota exceeded", "OVERQUOTA"
    if storage_full(exc):
        return "Not enough disk space on the server; try again later", "LIMIT"
    return what, "UNAVAILABLE"
