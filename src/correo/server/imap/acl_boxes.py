"""CREATE, DELETE and RENAME of mailboxes in another account, by their rights (RFC 4314).

A name under "Other Users/OWNER/" stands for OWNER's mailbox (:func:`acl.resolve`).
``k`` on a mailbox lets CREATE make a child of it, and RENAME move a mailbox below
it; ``x`` on a mailbox lets DELETE remove it and RENAME take it away (RFC 4314 §4).
A child made this way inherits its parent's entries, so whoever made it can use it.
The owner's top level takes no new mailbox from anyone else, and no mailbox moves
between two accounts (messages and their quota would change owner): NO [CANNOT].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from correo.delivery.textindex import indexer_for
from correo.imap.responses import tagged
from correo.message.objectid import mailbox_id
from correo.server.imap.acl import OTHER_USERS, refusal, resolve
from correo.server.imap.names import DELIMITER, MailboxNameError, check_name, check_rename
from correo.store.api import INBOX

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["foreign", "shared_create", "shared_delete", "shared_rename"]


def foreign(session: ImapSession, name: str) -> tuple[str, str] | None:
    """(owner, mailbox) when ``name`` stands for another account's mailbox, else None."""
    assert session.user is not None
    if not name.startswith(OTHER_USERS):
        return None
    owner, box = resolve(session.user, name)
    return None if owner == session.user else (owner, box)


def _forget(session: ImapSession, owner: str) -> None:
    """Local delivery caches the owner's folder names: +folder must see the change now."""
    if session.ctx.mda is not None:
        session.ctx.mda.forget(owner)


async def _may_add_below(session: ImapSession, tag: str, owner: str, name: str) -> bool:
    """Whether ``name`` may come into being in ``owner``'s account (``k`` on its parent);
    False after the NO was written."""
    assert session.user is not None
    parent, sep, _ = name.rpartition(DELIMITER)
    if not sep or name == INBOX:
        session.write(tagged(tag, "NO", "Other users' namespace", "CANNOT"))
        return False
    rights = await session.ctx.store.acl_rights(owner, parent, session.user)
    if "k" not in rights:
        session.write(refusal(tag, rights, "k"))
        return False
    return True


async def shared_create(session: ImapSession, tag: str, owner: str, name: str) -> None:
    """CREATE of a child of a shared mailbox: ``k`` on the parent (RFC 4314 §4)."""
    try:
        check_name(name)
    except MailboxNameError as exc:
        session.write(tagged(tag, "NO", str(exc), "CANNOT"))
        return
    if not await _may_add_below(session, tag, owner, name):
        return
    store = session.ctx.store
    limit = session.ctx.config.limits.mailboxes_per_account  # the owner's account
    await store.create_mailbox(owner, name, None, subscribe=False, limit=limit)
    parent = name.rpartition(DELIMITER)[0]
    for identifier, rights in (await store.acl_get(owner, parent)).items():
        await store.acl_set(owner, name, identifier, rights)  # inherited from the parent
    _forget(session, owner)
    st = await store.mailbox_state(owner, name)
    code = f"MAILBOXID ({mailbox_id(st.uidvalidity)})"  # RFC 8474 §4.1
    session.write(tagged(tag, "OK", "CREATE completed", code))


async def shared_delete(session: ImapSession, tag: str, owner: str, name: str) -> None:
    """DELETE of a shared mailbox: ``x`` on it (RFC 4314 §4); never the owner's INBOX."""
    assert session.user is not None
    rights = await session.ctx.store.acl_rights(owner, name, session.user)
    if "x" not in rights:
        session.write(refusal(tag, rights, "x"))
        return
    if name == INBOX:
        session.write(tagged(tag, "NO", "INBOX cannot be deleted", "CANNOT"))
        return
    view = session.view
    if view is not None and (view.account, view.name) == (owner, name):
        session.view = None
        session.core.unselected()
    await session.ctx.store.delete_mailbox(owner, name)
    indexer_for(session.ctx.store).forget(owner, name)
    _forget(session, owner)
    session.write(tagged(tag, "OK", "DELETE completed"))


async def shared_rename(session: ImapSession, tag: str, old: str, new: str) -> None:
    """RENAME within another account: ``x`` on the mailbox and ``k`` on the new parent."""
    assert session.user is not None
    source = foreign(session, old) or resolve(session.user, old)
    target = foreign(session, new) or resolve(session.user, new)
    owner = source[0]
    store = session.ctx.store
    if owner != session.user:
        rights = await store.acl_rights(owner, source[1], session.user)
        if "x" not in rights:
            session.write(refusal(tag, rights, "x"))
            return
    if target[0] != owner or owner == session.user or source[1] == INBOX:
        text = "A mailbox cannot move to another account"
        session.write(tagged(tag, "NO", text, "CANNOT"))
        return
    try:
        check_name(target[1])
        names = [b.name for b in await store.list_mailboxes(owner)]
        check_rename(source[1], target[1], names)
    except MailboxNameError as exc:
        session.write(tagged(tag, "NO", str(exc), "CANNOT"))
        return
    if not await _may_add_below(session, tag, owner, target[1]):
        return
    limit = session.ctx.config.limits.mailboxes_per_account
    await store.rename_mailbox(owner, source[1], target[1], limit=limit)
    indexer_for(store).forget(owner, source[1])
    _forget(session, owner)
    session.write(tagged(tag, "OK", "RENAME completed"))
