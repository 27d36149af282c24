"""The object ids IMAP (RFC 8474 OBJECTID) and JMAP (RFC 8621) both show.

One function per kind, so a client that speaks both protocols sees one message, one
thread and one mailbox under one id:

* an Email is named by the SHA-256 of its stored octets (the same octets in several
  mailboxes are one Email, RFC 8621 §4);
* a Thread by :func:`correo.jmap.threads.thread_of` over the message's header section,
  read from at most :data:`THREAD_HEAD` octets, exactly as JMAP reads it;
* a mailbox by its UIDVALIDITY, which a RENAME keeps (RFC 8474 §4.1).

Every id is at most 25 characters of ``[A-Za-z0-9]``, inside RFC 8474 §3's grammar.
"""

from __future__ import annotations

from correo.jmap.threads import thread_of

__all__ = ["ID_HEX", "THREAD_HEAD", "email_id", "mailbox_id", "thread_id_of"]

#: Hex digits of the SHA-256 kept in an id: 96 bits.
ID_HEX = 24
#: Octets of a message read to find its header section for the Thread id.
THREAD_HEAD = 64 * 1024


def email_id(digest: str) -> str:
    """EMAILID / JMAP Email id of a message whose stored octets hash to ``digest``."""
    return "E" + digest[:ID_HEX]


def _header_of(head: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = head.find(sep)
        if at >= 0:
            return head[: at + len(sep)]
    return head


def thread_id_of(head: bytes, digest: str) -> str:
    """THREADID / JMAP Thread id of the message whose first :data:`THREAD_HEAD` octets
    are ``head`` and whose stored octets hash to ``digest``."""
    return thread_of(_header_of(head[:THREAD_HEAD]), digest)


def mailbox_id(uidvalidity: int) -> str:
    """MAILBOXID / JMAP Mailbox id."""
    return f"M{uidvalidity}"
