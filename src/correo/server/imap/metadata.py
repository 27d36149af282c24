"""GETMETADATA, SETMETADATA (RFC 5464) and LIST RETURN (METADATA) (RFC 9590) of a session.

Entries live in the store (``metadata_get``/``metadata_set``); mailbox "" is the
server level, which here is the account's own (no other user sees it).  A value is
at most ``[limits] metadata_size`` octets (``NO [METADATA MAXSIZE n]``) and an account
holds at most ``[limits] metadata_entries`` entries (``NO [METADATA TOOMANY]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from correo.imap.metadata import GetMetadata, SetMetadata, metadata_response, within_depth
from correo.imap.responses import tagged
from correo.server.imap.names import MailboxNameError, check_name, normalize
from correo.store.api import MailboxError

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["cmd_getmetadata", "cmd_setmetadata", "list_metadata"]


def _mailbox(name: str) -> str | None:
    """None for the server level (RFC 5464 §4: the mailbox "")."""
    return None if name == "" else normalize(name)


async def cmd_getmetadata(session: ImapSession, tag: str, cmd: GetMetadata) -> None:
    assert session.user is not None
    mailbox = _mailbox(cmd.mailbox)
    try:
        found = await session.ctx.store.metadata_get(session.user, mailbox, cmd.entries)
    except MailboxError:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return
    items: list[tuple[str, bytes | None]] = []
    longest = 0  # RFC 5464 §4.2.1: the size of the largest entry left out
    for asked in cmd.entries:
        hits = sorted(n for n in found if within_depth(n, asked, cmd.depth))
        if asked not in found and asked.count("/") > 1:
            items.append((asked, None))  # named and not set: NIL, as Dovecot answers
        for name in hits:
            value = found[name]
            if cmd.maxsize is not None and len(value) > cmd.maxsize:
                longest = max(longest, len(value))
                continue
            items.append((name, value))
    items = list(dict(items).items())  # an entry under two asked ones once
    if items:
        session.write(metadata_response(cmd.mailbox, items, session.core.utf8))
    code = f"METADATA LONGENTRIES {longest}" if longest else None
    session.write(tagged(tag, "OK", "GETMETADATA completed", code))


async def cmd_setmetadata(session: ImapSession, tag: str, cmd: SetMetadata) -> None:
    assert session.user is not None
    limits = session.ctx.config.limits
    too_big = max((len(v) for _, v in cmd.values if v is not None), default=0)
    if too_big > limits.metadata_size:  # RFC 5464 §4.3: nothing is set
        code = f"METADATA MAXSIZE {limits.metadata_size}"
        session.write(tagged(tag, "NO", "Value too large", code))
        return
    mailbox = _mailbox(cmd.mailbox)
    if mailbox is not None:
        try:
            check_name(mailbox)
        except MailboxNameError:
            session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
            return
    try:
        await session.ctx.store.metadata_set(
            session.user, mailbox, dict(cmd.values), max_entries=limits.metadata_entries
        )
    except MailboxError as exc:
        session.write(tagged(tag, "NO", str(exc), exc.code))
        return
    session.write(tagged(tag, "OK", "SETMETADATA completed"))


async def list_metadata(session: ImapSession, name: str, entries: tuple[str, ...]) -> None:
    """The ``* METADATA`` response after a LIST line (RFC 9590 §3): the named entries,
    NIL for those not set; nothing when the mailbox went away meanwhile."""
    assert session.user is not None
    try:
        found = await session.ctx.store.metadata_get(session.user, name, entries)
    except MailboxError:
        return
    items = [(e, found.get(e)) for e in entries]
    session.write(metadata_response(name, items, session.core.utf8))
