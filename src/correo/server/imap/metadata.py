"""GETMETADATA, SETMETADATA (RFC 5464) and LIST RETURN (METADATA) (RFC 9590) of a session.

Entries live in the store (``metadata_get``/``metadata_set``); mailbox "" is the
server level, which here is the account's own (no other user sees it).  A value is
at most ``[limits] metadata_size`` octets (``NO [METADATA MAXSIZE n]``) and an account
holds at most ``[limits] metadata_entries`` entries (``NO [METADATA TOOMANY]``).

Another account's mailbox shared with the user (RFC 4314) shows its ``/shared``
entries to a user holding ``l`` and one of ``r s w i p`` there (RFC 5464 §3.3, as
Dovecot reads it); setting them also takes ``w``.  Its ``/private`` entries are the
owner's: never shown to anyone else, and a user's own private entries on another
account's mailbox are not kept (``NO [CANNOT]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from correo.imap.metadata import GetMetadata, SetMetadata, metadata_response, within_depth
from correo.imap.responses import tagged
from correo.server.imap.acl import OTHER_USERS, refusal, resolve
from correo.server.imap.names import MailboxNameError, check_name, normalize
from correo.store.api import MailboxError

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["cmd_getmetadata", "cmd_setmetadata", "list_metadata"]


def _mailbox(name: str) -> str | None:
    """None for the server level (RFC 5464 §4: the mailbox "")."""
    return None if name == "" else normalize(name)


#: RFC 5464 §3.3: "l" and any one of these reach a mailbox's entries.
_ANY_OF = frozenset("rswip")


async def _shared(session: ImapSession, tag: str, name: str, need: str) -> tuple[str, str] | None:
    """(owner, mailbox) of another account's mailbox whose entries the user may reach
    (and set, with ``need`` "w"); None when the NO was written."""
    assert session.user is not None
    owner, box = resolve(session.user, name)
    rights = await session.ctx.store.acl_rights(owner, box, session.user)
    if "l" not in rights or _ANY_OF.isdisjoint(rights):
        session.write(refusal(tag, rights, "r"))
        return None
    if need and need not in rights:
        session.write(refusal(tag, rights, need))
        return None
    return owner, box


async def cmd_getmetadata(session: ImapSession, tag: str, cmd: GetMetadata) -> None:
    assert session.user is not None
    account, mailbox = session.user, _mailbox(cmd.mailbox)
    others = foreign_name(session.user, cmd.mailbox)
    if others:
        found_box = await _shared(session, tag, cmd.mailbox, "")
        if found_box is None:
            return
        account, mailbox = found_box
    try:
        found = await session.ctx.store.metadata_get(account, mailbox, cmd.entries)
    except MailboxError:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return
    if others:  # the owner's private entries are the owner's alone
        found = {n: v for n, v in found.items() if n.startswith("/shared/")}
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


def foreign_name(user: str, name: str) -> bool:
    """Whether ``name`` stands for another account's mailbox ("Other Users/…")."""
    return name.startswith(OTHER_USERS) and resolve(user, name)[0] != user


async def cmd_setmetadata(session: ImapSession, tag: str, cmd: SetMetadata) -> None:
    assert session.user is not None
    limits = session.ctx.config.limits
    too_big = max((len(v) for _, v in cmd.values if v is not None), default=0)
    if too_big > limits.metadata_size:  # RFC 5464 §4.3: nothing is set
        code = f"METADATA MAXSIZE {limits.metadata_size}"
        session.write(tagged(tag, "NO", "Value too large", code))
        return
    account, mailbox = session.user, _mailbox(cmd.mailbox)
    if foreign_name(session.user, cmd.mailbox):
        found_box = await _shared(session, tag, cmd.mailbox, "w")
        if found_box is None:
            return
        if any(name.startswith("/private/") for name, _ in cmd.values):
            text = "Private entries of another user's mailbox are not kept"
            session.write(tagged(tag, "NO", text, "CANNOT"))
            return
        account, mailbox = found_box
    elif mailbox is not None:
        try:
            check_name(mailbox)
        except MailboxNameError:
            session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
            return
    try:
        await session.ctx.store.metadata_set(
            account, mailbox, dict(cmd.values), max_entries=limits.metadata_entries
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
