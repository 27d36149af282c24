"""Mailbox commands of an IMAP session: SELECT/EXAMINE, CREATE, DELETE, RENAME,
(UN)SUBSCRIBE, NAMESPACE, LIST, LSUB and STATUS (RFC 9051 §6.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from correo.delivery.textindex import indexer_for
from correo.imap import commands as c
from correo.imap.responses import (
    list_response,
    status_response,
    tagged,
    untagged,
)
from correo.message.objectid import mailbox_id
from correo.server.imap.acl import OTHER_USERS, WRITE_RIGHTS, resolve, shared_boxes
from correo.server.imap.acl_boxes import foreign, shared_create, shared_delete, shared_rename
from correo.server.imap.listing import PAUSE, list_lines, lsub_lines
from correo.server.imap.metadata import list_metadata
from correo.server.imap.names import (
    DELIMITER,
    MailboxNameError,
    PatternError,
    check_name,
    check_rename,
    list_matcher,
    normalize,
)
from correo.server.imap.shared import Snapshot
from correo.server.imap.view import MailboxView, format_uids
from correo.store.api import (
    INBOX,
    MailboxError,
    MailboxStatus,
)

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

#: Special uses CREATE may give (RFC 6154 §2), by their lower-case name; \All and
#: \Flagged name virtual mailboxes, which this store does not keep.
CREATABLE_USES = {
    u.lower(): u for u in ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash", "\\Important")
}

__all__ = [
    "CREATABLE_USES",
    "cmd_create",
    "cmd_delete",
    "cmd_list",
    "cmd_lsub",
    "cmd_namespace",
    "cmd_rename",
    "cmd_select",
    "cmd_status",
    "cmd_subscribe",
    "mailboxes_changed",
    "status_line",
]


# -- mailboxes ------------------------------------------------------------------


def _name(session: ImapSession, tag: str, raw: str, *, own: bool = False) -> str | None:
    try:
        name = check_name(raw)
    except MailboxNameError as exc:
        session.write(tagged(tag, "NO", str(exc), "CANNOT"))
        return None
    if own and name.startswith(OTHER_USERS):  # other users' mailboxes live there
        session.write(tagged(tag, "NO", "Other users' namespace", "CANNOT"))
        return None
    return name


async def cmd_select(session: ImapSession, tag: str, cmd: c.Select | c.Examine) -> None:
    assert session.user is not None
    read_only = isinstance(cmd, c.Examine)
    if session.view is not None:
        session.view = None
        session.core.unselected()
        session.write(untagged("OK", "Previous mailbox closed", "CLOSED"))  # RFC 7162 §3.2.11
    account, name = resolve(session.user, cmd.mailbox)
    store = session.ctx.store
    if account != session.user:  # another user's, by its rights (RFC 4314 §4)
        rights = await store.acl_rights(account, name, session.user)
        if "r" not in rights:
            code = "NOPERM" if "l" in rights else "NONEXISTENT"
            session.write(tagged(tag, "NO", "No such mailbox", code))
            return
        read_only = read_only or WRITE_RIGHTS.isdisjoint(rights)
    session.seen_counter = store.change_counter(account, name)
    session.checked_at = time.monotonic()
    try:
        status = await store.mailbox_status(account, name)
    except MailboxError:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return
    messages = await _snapshot(session, account, name, status)
    if read_only or account != session.user:  # \Recent seen, not claimed (RFC 3501 §6.3.2)
        recent = status.recent
        uids = messages.uids
        first_recent = uids[-recent] if 0 < recent <= len(uids) else status.uidnext
    else:
        first_recent = await store.take_recent(account, name)
    view = MailboxView(
        account,
        name,
        read_only=read_only,
        uidvalidity=status.uidvalidity,
        uidnext=status.uidnext,
        highestmodseq=status.highestmodseq,
        messages=messages,
        first_recent=first_recent,
        shared=session.ctx.imap,
    )
    view.rev2 = session.core.rev2
    view.uidonly = session.core.uidonly
    if cmd.condstore or cmd.qresync is not None:
        session.core.enable("CONDSTORE")
    session.view = view
    session.core.selected(read_only)
    flags_lines = view.flags_responses()
    session.write(flags_lines[0])
    session.write(b"* %d EXISTS\r\n" % view.exists)
    if not session.core.rev2:
        session.write(b"* %d RECENT\r\n" % view.recent)
        unseen = next(
            (i for i, u in enumerate(view.uids, 1) if "\\Seen" not in view.info[u].flags), 0
        )
        if unseen:
            session.write(untagged("OK", "First unseen", f"UNSEEN {unseen}"))  # RFC 3501 §6.3.1
    session.write(flags_lines[1])
    session.write(untagged("OK", "UIDs valid", f"UIDVALIDITY {view.uidvalidity}"))
    session.write(untagged("OK", "Ok", f"MAILBOXID ({mailbox_id(view.uidvalidity)})"))  # RFC 8474
    session.write(untagged("OK", "Predicted next UID", f"UIDNEXT {view.uidnext}"))
    session.write(untagged("OK", "Highest", f"HIGHESTMODSEQ {view.highestmodseq}"))
    if session.core.rev2:
        shown = name if account == session.user else cmd.mailbox
        session.write(list_response([], DELIMITER, shown, True))  # RFC 9051 §6.3.2
    if cmd.qresync is not None and cmd.qresync.uidvalidity == view.uidvalidity:
        await _qresync(session, cmd.qresync)
    code = "READ-ONLY" if read_only else "READ-WRITE"
    session.write(
        tagged(tag, "OK", "SELECT completed" if not read_only else "EXAMINE completed", code)
    )


async def _snapshot(
    session: ImapSession, account: str, name: str, status: MailboxStatus
) -> Snapshot:
    """The mailbox's messages at ``status``'s MODSEQ, shared with other sessions."""
    shared = session.ctx.imap
    snap = shared.snapshot(account, name, status.uidvalidity, status.highestmodseq)
    if snap is not None:
        return snap
    messages = await session.ctx.store.list_messages(account, name)
    uids, info = [m.uid for m in messages], {m.uid: m for m in messages}
    # Shared only if nothing committed between the two reads: a commit adds a higher
    # MODSEQ or (expunge alone) changes the count.
    if len(messages) == status.messages and all(m.modseq <= status.highestmodseq for m in messages):
        fresh = Snapshot(uids, info, status.highestmodseq)
        return shared.publish(account, name, status.uidvalidity, fresh)
    return Snapshot(uids, info, 0)  # this session's own, never published


async def _qresync(session: ImapSession, q: c.Qresync) -> None:
    """RFC 7162 §3.2.5: what changed since the client's MODSEQ."""
    view = session.view
    assert view is not None
    changes = await session.ctx.store.changes_since(view.account, view.name, q.modseq)
    gone = list(changes.expunged)
    if q.known_uids is not None:
        known = q.known_uids.resolve(max(view.max_uid(), max(gone, default=0)))
        gone = [u for u in gone if any(lo <= u <= hi for lo, hi in known)]
    if gone:
        session.write(b"* VANISHED (EARLIER) " + format_uids(gone).encode() + b"\r\n")
    for m in changes.messages:
        seq = view.seq(m.uid)
        if seq is not None:
            session.write(
                view.fetch_head(seq, m.uid)
                + b"UID %d FLAGS %s MODSEQ (%d))\r\n" % (m.uid, view.flag_list(m.uid), m.modseq)
            )


def mailboxes_changed(session: ImapSession) -> None:
    """Local delivery caches folder names briefly; +folder must see this change now."""
    if session.ctx.mda is not None and session.user is not None:
        session.ctx.mda.forget(session.user)


async def cmd_create(session: ImapSession, tag: str, cmd: c.Create) -> None:
    assert session.user is not None
    shared = foreign(session, cmd.mailbox.rstrip(DELIMITER))
    if shared is not None:  # RFC 4314 "k" on the parent
        await shared_create(session, tag, *shared)
        return
    name = _name(session, tag, cmd.mailbox.rstrip(DELIMITER), own=True)
    if name is None:
        return
    if name == INBOX:
        session.write(tagged(tag, "NO", "INBOX always exists", "ALREADYEXISTS"))
        return
    use: str | None = None
    if cmd.special_use:  # RFC 6154 §3 CREATE-SPECIAL-USE: one use this store can keep
        use = CREATABLE_USES.get(cmd.special_use[0].lower())
        if use is None or len(cmd.special_use) > 1:
            text = "Cannot create a mailbox with that special use"
            session.write(tagged(tag, "NO", text, "USEATTR"))
            return
    limit = session.ctx.config.limits.mailboxes_per_account  # RFC 9051 §7.1 LIMIT
    store = session.ctx.store
    await store.create_mailbox(session.user, name, use, subscribe=False, limit=limit)
    mailboxes_changed(session)
    st = await store.mailbox_state(session.user, name)
    code = f"MAILBOXID ({mailbox_id(st.uidvalidity)})"  # RFC 8474 §4.1
    session.write(tagged(tag, "OK", "CREATE completed", code))  # RFC 9051 §6.3.4


async def cmd_delete(session: ImapSession, tag: str, cmd: c.Delete) -> None:
    assert session.user is not None
    shared = foreign(session, cmd.mailbox)
    if shared is not None:  # RFC 4314 "x"
        await shared_delete(session, tag, *shared)
        return
    name = normalize(cmd.mailbox)
    if session.view is not None and session.view.name == name:
        session.view = None
        session.core.unselected()
    await session.ctx.store.delete_mailbox(session.user, name)
    indexer_for(session.ctx.store).forget(session.user, name)
    mailboxes_changed(session)
    session.write(tagged(tag, "OK", "DELETE completed"))


async def cmd_rename(session: ImapSession, tag: str, cmd: c.Rename) -> None:
    assert session.user is not None
    if foreign(session, cmd.mailbox) or foreign(session, cmd.new_name):  # RFC 4314 "x", "k"
        await shared_rename(session, tag, cmd.mailbox, cmd.new_name)
        return
    new = _name(session, tag, cmd.new_name, own=True)
    if new is None:
        return
    if new == INBOX:
        session.write(tagged(tag, "NO", "INBOX already exists", "ALREADYEXISTS"))
        return
    old = normalize(cmd.mailbox)
    if old != INBOX:
        # The inferiors move along: their new names must be valid names too.
        names = [b.name for b in await session.ctx.store.list_mailboxes(session.user)]
        try:
            check_rename(old, new, names)
        except MailboxNameError as exc:
            session.write(tagged(tag, "NO", str(exc), "CANNOT"))
            return
    limit = session.ctx.config.limits.mailboxes_per_account
    await session.ctx.store.rename_mailbox(session.user, old, new, limit=limit)
    indexer_for(session.ctx.store).forget(session.user, old)
    mailboxes_changed(session)
    session.write(tagged(tag, "OK", "RENAME completed"))


async def cmd_subscribe(session: ImapSession, tag: str, cmd: c.Subscribe | c.Unsubscribe) -> None:
    assert session.user is not None
    subscribed = isinstance(cmd, c.Subscribe)
    # RFC 9051 §6.3.7: a name need not exist to be subscribed; it must be a valid one.
    name = _name(session, tag, cmd.mailbox) if subscribed else normalize(cmd.mailbox)
    if name is None:
        return
    limit = session.ctx.config.limits.mailboxes_per_account
    await session.ctx.store.set_subscribed(session.user, name, subscribed, limit=limit)
    session.write(
        tagged(tag, "OK", "SUBSCRIBE completed" if subscribed else "UNSUBSCRIBE completed")
    )


async def cmd_namespace(session: ImapSession, tag: str, cmd: c.Namespace) -> None:
    session.write(b'* NAMESPACE (("" "/")) (("Other Users/" "/")) NIL\r\n')  # RFC 4314 §1
    session.write(tagged(tag, "OK", "NAMESPACE completed"))


async def cmd_list(session: ImapSession, tag: str, cmd: c.List) -> None:
    assert session.user is not None
    utf8 = session.core.utf8
    if len(cmd.patterns) == 1 and cmd.patterns[0] == "" and not cmd.extended:
        # RFC 9051 §6.3.9: the hierarchy delimiter and root
        session.write(b'* LIST (\\Noselect) "/" ""\r\n')
        session.write(tagged(tag, "OK", "LIST completed"))
        return
    try:
        match = list_matcher(cmd.reference, cmd.patterns)
    except PatternError as exc:
        session.write(tagged(tag, "NO", str(exc), "LIMIT"))
        return
    boxes = await session.ctx.store.list_mailboxes(session.user)
    if not cmd.metadata:  # other users' mailboxes shared with this one (RFC 4314 "l")
        boxes = [*boxes, *await shared_boxes(session)]
    subscriptions = None
    if "SUBSCRIBED" in cmd.selection:
        subscriptions = await session.ctx.store.list_subscriptions(session.user)
    for item in list_lines(boxes, subscriptions, match, cmd, utf8):
        if item is PAUSE:
            await asyncio.sleep(0)  # a long listing lets the other connections run
            continue
        session.write(item.line)
        if item.status is not None:  # RFC 5819
            if cmd.status_items and "STATUS" in cmd.return_options:
                with contextlib.suppress(MailboxError):  # deleted meanwhile: no STATUS
                    await status_line(session, item.status, cmd.status_items)
            if cmd.metadata:  # RFC 9590
                await list_metadata(session, item.status, cmd.metadata)
            await asyncio.sleep(0)  # each STATUS reads the store on the loop
    session.write(tagged(tag, "OK", "LIST completed"))


async def cmd_lsub(session: ImapSession, tag: str, cmd: c.Lsub) -> None:
    assert session.user is not None
    try:
        match = list_matcher(cmd.reference, [cmd.pattern])
    except PatternError as exc:
        session.write(tagged(tag, "NO", str(exc), "LIMIT"))
        return
    subscribed = await session.ctx.store.list_subscriptions(session.user)
    for line in lsub_lines(subscribed, match, session.core.utf8):
        if line is PAUSE:
            await asyncio.sleep(0)
            continue
        session.write(line)
    session.write(tagged(tag, "OK", "LSUB completed"))


async def status_line(session: ImapSession, name: str, items: tuple[str, ...]) -> None:
    assert session.user is not None
    account, box = resolve(session.user, name)
    if account != session.user and "r" not in await session.ctx.store.acl_rights(
        account, box, session.user
    ):  # RFC 4314 §4: STATUS needs "r"; without it the mailbox is not there
        raise MailboxError("No such mailbox", "NONEXISTENT")
    st = await session.ctx.store.mailbox_status(account, box)
    values: dict[str, int | str] = {
        "MESSAGES": st.messages,
        "UIDNEXT": st.uidnext,
        "UIDVALIDITY": st.uidvalidity,
        "UNSEEN": st.unseen,
        "DELETED": st.deleted,
        "SIZE": st.size,
        "DELETED-STORAGE": st.deleted_size,  # RFC 9208 §4.2
        "RECENT": st.recent,
        "HIGHESTMODSEQ": st.highestmodseq,
        "APPENDLIMIT": session.ctx.config.limits.message_size,
        "MAILBOXID": f"({mailbox_id(st.uidvalidity)})",  # RFC 8474 §4.2
    }
    wanted = {i.upper(): values[i.upper()] for i in items if i.upper() in values}
    session.write(status_response(name, wanted, session.core.utf8))


async def cmd_status(session: ImapSession, tag: str, cmd: c.Status) -> None:
    try:
        await status_line(session, normalize(cmd.mailbox), cmd.items)
    except MailboxError:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return
    session.write(tagged(tag, "OK", "STATUS completed"))
