"""Thread ids from a message's own header section (RFC 8621 §3).

A Thread id is a function of the message alone, so it never changes for an Email
(``threadId`` is immutable) and is the same after a restart without being stored:

* a reply names its thread's first message: the first id of ``References`` (RFC 5322
  §3.6.4 keeps it when a client trims the list), else its ``In-Reply-To``;
* a message that replies to nothing starts a thread named by its own ``Message-ID``,
  which its replies name in turn;
* a message with none of these fields falls back to its base subject (RFC 5256 §2.1,
  ``Re:``/``Fwd:`` and list tags removed), so such a reply joins its original when that
  lacks a Message-ID too; with no subject either, it is a thread of its own.

Linear in the header section; a message id is at most 1,000 characters here.
"""

from __future__ import annotations

import hashlib
import re

from correo.message.headers import parse_fields
from correo.message.subject import base_subject

__all__ = ["thread_of"]

_MSGID = re.compile(r"<([^<>\s]{1,1000})>")


def _first_id(fields: list[tuple[str, str]], name: str) -> str | None:
    for field, value in fields:
        if field == name:
            found = _MSGID.search(value)
            if found is not None:
                return found.group(1)
    return None


def thread_of(header: bytes, digest: str) -> str:
    """The ``T…`` id of the thread of the message whose header section is ``header``."""
    fields = parse_fields(header)
    root = (
        _first_id(fields, "references")
        or _first_id(fields, "in-reply-to")
        or _first_id(fields, "message-id")
    )
    if root is not None:
        seed = "id:" + root
    else:
        subject = next((v for f, v in fields if f == "subject"), "")
        base = base_subject(subject)
        seed = "subject:" + base if base else "digest:" + digest
    return "T" + hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()[:24]
