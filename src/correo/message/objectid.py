"""The object ids IMAP (RFC 8474 OBJECTID) and JMAP (RFC 8621) both show.

One function per kind, so a client that speaks both protocols sees one message, one
thread and one mailbox under one id: an email and its thread are named by the SHA-256
of the stored octets (the same octets in several mailboxes are one Email, RFC 8621
§4), a mailbox by its UIDVALIDITY, which a RENAME keeps (RFC 8474 §4.1).  Every id
is at most 25 characters of ``[A-Za-z0-9]``, inside RFC 8474 §3's objectid grammar.
"""

from __future__ import annotations

__all__ = ["ID_HEX", "email_id", "mailbox_id", "thread_id"]

#: Hex digits of the SHA-256 kept in an id: 96 bits.
ID_HEX = 24


def email_id(digest: str) -> str:
    """EMAILID / JMAP Email id of a message whose stored octets hash to ``digest``."""
    return "E" + digest[:ID_HEX]


def thread_id(digest: str) -> str:
    """THREADID / JMAP Thread id: one thread per distinct message for now."""
    return "T" + digest[:ID_HEX]


def mailbox_id(uidvalidity: int) -> str:
    """MAILBOXID / JMAP Mailbox id."""
    return f"M{uidvalidity}"
