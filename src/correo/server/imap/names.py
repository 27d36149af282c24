"""Mailbox names: validation, LIST pattern matching, special-use defaults (RFC 9051 §5.1)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from correo.imap.wildcard import PatternError, Wildcard

__all__ = [
    "DELIMITER",
    "SPECIAL_USE",
    "MailboxNameError",
    "PatternError",
    "check_name",
    "check_rename",
    "descendants",
    "has_descendant",
    "list_matcher",
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


def descendants(names: Sequence[str], name: str) -> Iterator[str]:
    """The names below ``name`` in ``names`` (sorted), found by bisection: O(log n + k)."""
    prefix = name + DELIMITER
    for i in range(bisect_left(names, prefix), len(names)):
        if not names[i].startswith(prefix):
            return
        yield names[i]


def has_descendant(names: Sequence[str], name: str) -> bool:
    """Is any of ``names`` (sorted) below ``name``? O(log n)."""
    return next(descendants(names, name), None) is not None


def check_rename(old: str, new: str, names: Iterable[str]) -> None:
    """Refuse a RENAME whose moved inferiors would get names no CREATE could make.

    ``new`` itself has passed :func:`check_name`; ``old/x`` becomes ``new/x``, which may
    be too long or too deep, and moving ``old`` below itself would nest it again with
    every repetition.
    """
    if new.startswith(old + DELIMITER):
        raise MailboxNameError("a mailbox cannot move inside itself")
    for name in descendants(sorted(names), old):
        check_name(new + name[len(old) :])


def list_matcher(reference: str, patterns: Iterable[str]) -> Wildcard:
    """The patterns of one LIST or LSUB, each joined to the reference (RFC 9051 §6.3.9).

    ``*`` matches anything, ``%`` anything but the delimiter, in linear time; raises
    :class:`~correo.imap.wildcard.PatternError` for patterns past the length limits.
    """
    return Wildcard(
        (normalize(p if p.startswith(DELIMITER) else reference + p) for p in patterns),
        DELIMITER,
    )
