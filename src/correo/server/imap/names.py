"""Mailbox names: validation, LIST pattern matching, special-use defaults (RFC 9051 §5.1)."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = [
    "DELIMITER",
    "SPECIAL_USE",
    "MailboxNameError",
    "check_name",
    "matcher",
    "normalize",
]

DELIMITER = "/"
#: Created for every account on first login (RFC 6154 attributes).
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Trash": "\\Trash",
    "Archive": "\\Archive",
}
_MAX_NAME = 512  # octets; Dovecot's default limit is in the same range
_MAX_DEPTH = 32


class MailboxNameError(ValueError):
    """A name no mailbox may have; the message goes into a NO [CANNOT] reply."""


def normalize(name: str) -> str:
    """``inbox`` in any case is INBOX, also as a hierarchy root (RFC 9051 §5.1)."""
    head, sep, rest = name.partition(DELIMITER)
    if head.upper() == "INBOX":
        return "INBOX" + sep + rest
    return name


def check_name(name: str) -> str:
    """Validate a name a client wants to create or select; returns it normalised.

    Names never become paths (the store keys them in SQL), but they are still refused
    when they could confuse clients or people: empty levels, leading or trailing
    delimiters, control characters, wildcards, ``.``/``..`` levels, absurd lengths.
    """
    if not name or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME:
        raise MailboxNameError("mailbox name empty or too long")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise MailboxNameError("control characters are not allowed in mailbox names")
    if "*" in name or "%" in name:
        raise MailboxNameError("wildcards are not allowed in mailbox names")
    levels = name.split(DELIMITER)
    if len(levels) > _MAX_DEPTH:
        raise MailboxNameError("mailbox hierarchy too deep")
    if any(level in ("", ".", "..") or level.startswith("~") for level in levels):
        raise MailboxNameError("mailbox name has an empty, '.', '..' or '~' level")
    return normalize(name)


@lru_cache(maxsize=256)
def matcher(reference: str, pattern: str) -> re.Pattern[str]:
    """LIST wildcard matching: ``*`` matches anything, ``%`` anything but the delimiter."""
    full = normalize(reference + pattern if not pattern.startswith(DELIMITER) else pattern)
    regex = "".join(
        ".*" if c == "*" else f"[^{re.escape(DELIMITER)}]*" if c == "%" else re.escape(c)
        for c in full
    )
    return re.compile(regex + r"\Z", re.DOTALL)
