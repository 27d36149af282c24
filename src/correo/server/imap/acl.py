"""SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS (RFC 4314) of a session.

Entries live in the store (``acl_get``/``acl_set``/``acl_rights``).  The owner of a
mailbox holds every right and cannot lose them; other accounts hold what their entry
and ``anyone``'s grant.  Another account's mailbox is named under the "Other Users"
namespace (``Other Users/OWNER/MAILBOX``): LIST shows it with the ``l`` right, and
``r`` opens it (read-write with any of ``s w t e``, which STORE and EXPUNGE then
check), ``i`` lets APPEND, COPY and MOVE add to it (keeping only the flags the user
may set there), MOVE out of it needs ``t`` and ``e`` as well; its rights are read again
before every command while it is selected.  ``k``, ``x`` (CREATE, DELETE, RENAME) are
checked in :mod:`acl_boxes`; ``p`` (post) is no IMAP right (RFC 4314 §2.1).
Without any right a mailbox answers exactly as a missing one (NO [NONEXISTENT]), so
nobody learns what is not shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from correo.imap import commands as c
from correo.imap.acl import (
    ALL_RIGHTS,
    DeleteAcl,
    GetAcl,
    ListRights,
    MyRights,
    SetAcl,
    acl_response,
    apply_rights,
    listrights_response,
    myrights_response,
)
from correo.imap.responses import tagged
from correo.server.imap.names import DELIMITER, normalize
from correo.store.api import MailboxError, MailboxInfo

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = [
    "OTHER_USERS",
    "cmd_deleteacl",
    "cmd_getacl",
    "cmd_listrights",
    "cmd_myrights",
    "cmd_setacl",
    "flag_rights",
    "flags_allowed",
    "guard",
    "may_set_seen",
    "refusal",
    "resolve",
    "rights_of",
    "shared_boxes",
    "still_readable",
]

#: The "Other Users" namespace prefix (RFC 2342 §5, RFC 4314 §1).
OTHER_USERS = "Other Users" + DELIMITER
ANYONE = "anyone"


def resolve(user: str, name: str) -> tuple[str, str]:
    """(owner, mailbox) a client's mailbox name stands for."""
    if name.startswith(OTHER_USERS):
        owner, sep, rest = name[len(OTHER_USERS) :].partition(DELIMITER)
        if owner and sep and rest:
            return owner, normalize(rest)
    return user, normalize(name)


async def rights_of(session: ImapSession, owner: str, mailbox: str) -> str:
    """The session user's rights there; "" for a mailbox missing or not shared."""
    assert session.user is not None
    store = session.ctx.store
    if owner == session.user:
        try:
            await store.acl_get(owner, mailbox)
        except MailboxError:
            return ""
        return ALL_RIGHTS
    held = await store.acl_rights(owner, mailbox, session.user)
    return "".join(r for r in ALL_RIGHTS if r in held)  # RFC 4314 §2.1 order, as GETACL


async def _checked(session: ImapSession, tag: str, name: str, need: str) -> tuple[str, str] | None:
    """(owner, mailbox) when the user holds right ``need`` there; else the NO is sent."""
    assert session.user is not None
    owner, mailbox = resolve(session.user, name)
    rights = await rights_of(session, owner, mailbox)
    if not rights:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return None
    if need and need not in rights:
        session.write(tagged(tag, "NO", f"Right {need!r} is needed here", "NOPERM"))
        return None
    return owner, mailbox


async def _identifier(session: ImapSession, identifier: str) -> str | None:
    """The account an identifier names (or ``anyone``); None for no such user."""
    if identifier.lower() == ANYONE:
        return ANYONE
    directory = session.ctx.directory

    def lookup() -> str | None:
        try:
            if not directory.user_exists(identifier):
                return None
            return directory.account_name(identifier)
        except Exception:  # any address the directory refuses is nobody
            return None

    return await asyncio.to_thread(lookup)


async def _change(session: ImapSession, tag: str, name: str, identifier: str, cmd: str,
                  change: SetAcl | None) -> None:  # fmt: skip
    found = await _checked(session, tag, name, "a")
    if found is None:
        return
    owner, mailbox = found
    if identifier.startswith("-"):
        session.write(tagged(tag, "NO", "Negative rights are not supported", "CANNOT"))
        return
    who = await _identifier(session, identifier)
    if who is None:
        session.write(tagged(tag, "NO", "No such user", "CANNOT"))
        return
    if who == owner:  # RFC 4314 §2: the owner's rights are not for anyone to change
        session.write(tagged(tag, "NO", "The owner always holds every right", "CANNOT"))
        return
    store = session.ctx.store
    try:
        rights = ""
        if change is not None:
            current = (await store.acl_get(owner, mailbox)).get(who, "")
            rights = apply_rights(current, change.mode, change.rights)
        await store.acl_set(owner, mailbox, who, rights)
    except MailboxError:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return
    session.write(tagged(tag, "OK", f"{cmd} completed"))


async def cmd_setacl(session: ImapSession, tag: str, cmd: SetAcl) -> None:
    await _change(session, tag, cmd.mailbox, cmd.identifier, "SETACL", cmd)


async def cmd_deleteacl(session: ImapSession, tag: str, cmd: DeleteAcl) -> None:
    await _change(session, tag, cmd.mailbox, cmd.identifier, "DELETEACL", None)


async def cmd_getacl(session: ImapSession, tag: str, cmd: GetAcl) -> None:
    found = await _checked(session, tag, cmd.mailbox, "a")
    if found is None:
        return
    owner, mailbox = found
    try:
        entries = await session.ctx.store.acl_get(owner, mailbox)
    except MailboxError:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return
    items = [(owner, ALL_RIGHTS), *sorted(entries.items())]
    session.write(acl_response(cmd.mailbox, items, session.core.utf8))
    session.write(tagged(tag, "OK", "GETACL completed"))


async def cmd_listrights(session: ImapSession, tag: str, cmd: ListRights) -> None:
    found = await _checked(session, tag, cmd.mailbox, "a")
    if found is None:
        return
    owner, _ = found
    who = await _identifier(session, cmd.identifier)
    required = ALL_RIGHTS if who == owner else ""
    session.write(listrights_response(cmd.mailbox, cmd.identifier, required, session.core.utf8))
    session.write(tagged(tag, "OK", "LISTRIGHTS completed"))


async def cmd_myrights(session: ImapSession, tag: str, cmd: MyRights) -> None:
    assert session.user is not None
    owner, mailbox = resolve(session.user, cmd.mailbox)
    rights = await rights_of(session, owner, mailbox)
    if not rights:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return
    session.write(myrights_response(cmd.mailbox, rights, session.core.utf8))
    session.write(tagged(tag, "OK", "MYRIGHTS completed"))


async def shared_boxes(session: ImapSession) -> list[MailboxInfo]:
    """Other accounts' mailboxes the user may see (``l``), as LIST names them."""
    assert session.user is not None
    found = await session.ctx.store.acl_shared(session.user)
    return [
        MailboxInfo(f"{OTHER_USERS}{owner}{DELIMITER}{name}", subscribed=False)
        for owner, name, rights in found
        if "l" in rights
    ]


#: Commands that leave the view or the session: no rights needed.
_FREE = (c.Select, c.Examine, c.Logout, c.Unselect)
#: Rights that change a mailbox's state: with none of them SELECT is read-only.
WRITE_RIGHTS = frozenset("swte")


def flag_rights(mode: str, flags: tuple[str, ...]) -> str:
    """Rights a STORE needs (RFC 4314 §4): ``s`` for \\Seen, ``t`` for \\Deleted,
    ``w`` for any other flag; replacing the flags may change all of them."""
    if mode == "replace":
        return "stw"
    need = {
        "s" if f.lower() == "\\seen" else "t" if f.lower() == "\\deleted" else "w" for f in flags
    }
    return "".join(sorted(need))


def refusal(tag: str, rights: str, need: str) -> bytes:
    """The NO for a missing right: NOPERM where the user may know of the mailbox
    (``l``), else exactly the answer for a mailbox that does not exist (RFC 4314 §4)."""
    if "l" in rights:
        return tagged(tag, "NO", f"Right {need!r} is needed here", "NOPERM")
    return tagged(tag, "NO", "No such mailbox", "NONEXISTENT")


def flags_allowed(rights: str) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """The flags a COPY or MOVE into a shared mailbox keeps: each needs its right there
    (RFC 4314 §4: ``s`` for \\Seen, ``t`` for \\Deleted, ``w`` for the others)."""

    def keep(flags: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f for f in flags if flag_rights("add", (f,)) in rights)

    return keep


async def may_set_seen(session: ImapSession) -> bool:
    """Whether a FETCH may set \\Seen in the selected mailbox (the ``s`` right)."""
    view = session.view
    if view is None or view.account == session.user:
        return True
    assert session.user is not None
    return "s" in await session.ctx.store.acl_rights(view.account, view.name, session.user)


async def guard(session: ImapSession, tag: str, command: object) -> bool:
    """Before a command while another account's mailbox is selected: the rights are
    read again, so rights taken away end the access at the next command (RFC 4314 §4).
    False when the command was answered here."""
    view = session.view
    if view is None or view.account == session.user or isinstance(command, _FREE):
        return True
    assert session.user is not None
    rights = await session.ctx.store.acl_rights(view.account, view.name, session.user)
    if isinstance(command, c.Close) and "e" not in rights:  # closed, nothing expunged
        session.view = None
        session.core.unselected()
        session.write(tagged(tag, "OK", "CLOSE completed"))
        return False
    if "r" not in rights:
        session.view = None
        session.core.unselected()
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return False
    missing = ""
    if isinstance(command, c.Store) and not view.read_only:
        missing = "".join(r for r in flag_rights(command.mode, command.flags) if r not in rights)
    elif isinstance(command, (c.Expunge, c.UidExpunge)) and not view.read_only:
        missing = "" if "e" in rights else "e"
    elif isinstance(command, c.Move) and not view.read_only:  # RFC 6851 §3.3, RFC 4314 §4
        missing = "".join(r for r in "te" if r not in rights)
    if missing:
        session.write(tagged(tag, "NO", f"Rights {missing!r} are needed here", "NOPERM"))
        return False
    return True


async def still_readable(session: ImapSession) -> bool:
    """Whether the selected mailbox may still be read (IDLE asks before each push)."""
    view = session.view
    if view is None or view.account == session.user:
        return True
    assert session.user is not None
    return "r" in await session.ctx.store.acl_rights(view.account, view.name, session.user)
