"""ESEARCH over several mailboxes (RFC 7377 MULTISEARCH) for a session.

Each source mailbox is searched through a read-only view of its own (the selected
mailbox through the session's view, caught up first), one after the other, letting
the other connections run in between; a mailbox deleted meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from correo.imap.multisearch import MultiSearch
from correo.imap.responses import esearch, mailbox_name, quote_string, tagged
from correo.server.imap.names import DELIMITER, normalize
from correo.server.imap.searching import run_search
from correo.server.imap.shared import Snapshot
from correo.server.imap.view import MailboxView
from correo.store.api import INBOX, MailboxError

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["cmd_esearch", "source_mailboxes"]


def source_mailboxes(
    cmd: MultiSearch, names: list[str], subscribed: set[str], selected: str | None
) -> list[str]:
    """The existing mailboxes the sources name, in LIST order (RFC 7377 §2, RFC 5465 §6)."""
    if not cmd.sources:
        return [selected] if selected is not None else []
    wanted: set[str] = set()
    for kind, given in cmd.sources:
        bases = [normalize(n) for n in given]
        for name in names:
            match kind:
                case "SELECTED" | "SELECTED-DELAYED":
                    hit = name == selected
                case "INBOXES":  # the one mailbox delivery fills unasked
                    hit = name == INBOX
                case "PERSONAL":
                    hit = True
                case "SUBSCRIBED":
                    hit = name in subscribed
                case "MAILBOXES":
                    hit = name in bases
                case "SUBTREE":
                    hit = any(name == b or name.startswith(b + DELIMITER) for b in bases)
                case _:  # SUBTREE-ONE: the mailbox and its children, not deeper
                    hit = any(
                        name == b
                        or (name.startswith(b + DELIMITER) and DELIMITER not in name[len(b) + 1 :])
                        for b in bases
                    )
            if hit:
                wanted.add(name)
    return [n for n in names if n in wanted]


async def _view(session: ImapSession, name: str) -> MailboxView:
    assert session.user is not None
    current = session.view
    if current is not None and current.name == name:
        await session._updates(allow_expunge=False)
        return current
    store = session.ctx.store
    status = await store.mailbox_status(session.user, name)
    messages = await store.list_messages(session.user, name)
    snapshot = Snapshot([m.uid for m in messages], {m.uid: m for m in messages}, 0)
    return MailboxView(
        session.user,
        name,
        read_only=True,
        uidvalidity=status.uidvalidity,
        uidnext=status.uidnext,
        highestmodseq=status.highestmodseq,
        messages=snapshot,
        first_recent=status.uidnext,  # \Recent belongs to the session that selected it
    )


async def cmd_esearch(session: ImapSession, tag: str, cmd: MultiSearch) -> None:
    assert session.user is not None
    store = session.ctx.store
    names = [b.name for b in await store.list_mailboxes(session.user)]
    subscribed: set[str] = set()
    if any(kind == "SUBSCRIBED" for kind, _ in cmd.sources):
        subscribed = set(await store.list_subscriptions(session.user))
    view = session.view  # another user's mailbox is not among the user's own sources
    selected = view.name if view is not None and view.account == session.user else None
    utf8 = session.core.utf8
    for name in source_mailboxes(cmd, names, subscribed, selected):
        try:
            view = await _view(session, name)
        except MailboxError:
            continue  # deleted meanwhile
        uids = await run_search(store, view, cmd.criteria)
        want = cmd.returns
        if not uids and "COUNT" not in want:
            continue  # a response would say nothing: none for this mailbox
        line = esearch(
            None,
            True,
            min=uids[0] if uids and "MIN" in want else None,
            max=uids[-1] if uids and "MAX" in want else None,
            count=len(uids) if "COUNT" in want else None,
            all=uids if "ALL" in want else None,
        )
        # RFC 7377 §2.1: search-correlator = "(" "TAG" SP tag SP "MAILBOX" SP mailbox
        # SP "UIDVALIDITY" SP nz-number ")"
        correlator = (
            b" (TAG " + quote_string(tag) + b" MAILBOX " + mailbox_name(name, utf8)
            + b" UIDVALIDITY %d)" % view.uidvalidity
        )  # fmt: skip
        session.write(b"* ESEARCH" + correlator + line[len(b"* ESEARCH") :])
        await asyncio.sleep(0)  # one mailbox at a time: the others' commands run between
    session.write(tagged(tag, "OK", "ESEARCH completed"))
