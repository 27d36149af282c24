"""APPEND of an IMAP session: each message streamed to a spool, all committed or
none (RFC 3502 §6), answered with APPENDUID (RFC 4315).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

from correo.delivery.facts import FactsBuilder, finish_facts, tree_is_large, tree_of
from correo.delivery.textindex import indexable, indexer_for
from correo.imap.responses import (
    tagged,
    untagged,
)
from correo.imap.server import (
    AppendStart,
    CatenateStart,
)
from correo.message.imapfmt import base64_binary_parts
from correo.message.lineends import LineEnds
from correo.server.imap.acl import flag_rights, resolve
from correo.server.imap.view import MAX_KEYWORDS, SYSTEM_FLAGS, format_uids
from correo.server.store_failure import imap_reply
from correo.store.api import (
    INBOX,
    Envelope,
    Spool,
    StoreError,
    spool_read,
)

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["Append", "append_done", "append_start", "drop_appends"]


class Append:
    """One message of an APPEND command being received."""

    __slots__ = (
        "account",
        "date",
        "facts",
        "failed",
        "flags",
        "lines",
        "mailbox",
        "nul",
        "replace",
        "spool",
        "zone",
    )

    def __init__(
        self,
        mailbox: str,
        flags: tuple[str, ...],
        date: dt.datetime | None,
        spool: Spool,
    ):
        self.mailbox = mailbox
        self.account = ""  # the mailbox's owner: the user, or one who shared it
        self.flags = flags
        self.date = date.timestamp() if date is not None else None
        offset = date.utcoffset() if date is not None else None
        # RFC 9051 §2.3.3: INTERNALDATE comes back in the zone APPEND gave
        self.zone = int(offset.total_seconds()) // 60 if offset is not None else None
        self.spool = spool
        self.nul = False  # a literal8 carried NUL: see _binary_to_base64
        self.failed: OSError | None = None  # the spool could not be written: NO at the end
        self.facts = FactsBuilder()
        self.replace: int | None = None  # REPLACE (RFC 8508): the UID it expunges after
        # bare LF stored as CRLF (what IMAP serves); a literal8 is binary: kept as sent
        self.lines: LineEnds | None = LineEnds()


def _target(account: str, mailbox: str, flags: tuple[str, ...]) -> Any:
    from correo.store.api import DeliveryTarget

    return DeliveryTarget(account, mailbox, flags)


# -- APPEND (streamed, RFC 3502 all or nothing) -----------------------------------


async def append_start(session: ImapSession, event: AppendStart | CatenateStart) -> None:
    assert session.user is not None
    account, name = resolve(session.user, event.mailbox)
    flags = event.flags
    if session.append_failed is None:
        if sum(f not in SYSTEM_FLAGS for f in event.flags) > MAX_KEYWORDS:
            drop_appends(session)
            text = f"A message carries at most {MAX_KEYWORDS} keywords"
            session.write(session.core.append_reject("NO", text, "LIMIT"))
            return
        # RFC 9051 §6.3.12: TRYCREATE unless the mailbox surely cannot be made; none
        # can be made by APPEND in another account, whose missing and unshared mailboxes
        # alike are NONEXISTENT (RFC 4314 §4: nothing tells them apart)
        missing = "TRYCREATE" if account == session.user else "NONEXISTENT"
        if account != session.user:  # RFC 4314 §4: "i", and a flag only with its right
            rights = await session.ctx.store.acl_rights(account, name, session.user)
            if "i" not in rights:
                session.append_failed = "NOPERM" if "l" in rights else missing
            flags = tuple(f for f in flags if flag_rights("add", (f,)) in rights)
        # the user's own INBOX is always there (RFC 9051 §5.1; DELETE refuses it, and a
        # delivery makes it): no read of it before the "+"
        if account != session.user or name != INBOX:
            try:
                await session.ctx.store.mailbox_state(account, name)  # cheaper than STATUS
            except StoreError:
                session.append_failed = session.append_failed or missing
    if session.append_failed is not None:
        drop_appends(session)
        code, session.append_failed = session.append_failed, None
        text = "Right 'i' is needed here" if code == "NOPERM" else "No such mailbox"
        session.write(session.core.append_reject("NO", text, code))
        return
    replaced: int | None = None
    if isinstance(event, AppendStart) and event.replace is not None:
        found = _replaced(session, event)
        if found is None:
            return
        replaced = found
    append = Append(name, flags, event.date, session.ctx.store.new_spool())
    append.account = account
    append.replace = replaced
    if isinstance(event, AppendStart) and event.binary:
        append.lines = None
    session.appends.append(append)
    session.write(session.core.append_accept())
    await session.conn.flush(session.write_timeout)


def _replaced(session: ImapSession, event: AppendStart) -> int | None:
    """The UID a REPLACE expunges (RFC 8508 §3.3), or None after refusing the command:
    exactly one message of the selected mailbox, which must be writable."""
    view = session.view
    assert view is not None and event.replace is not None  # the state table: SELECTED
    seq = event.replace
    if seq.saved:
        uids = [u for u in view.saved if u in view.info]
    elif event.uid:
        uids = view.uids_for_uid_ranges(seq.resolve(view.max_uid()))
    else:
        uids = view.uids_for_seq_ranges(seq.resolve(view.exists))
    refusal: tuple[str, str, str | None] | None = None
    if view.read_only:
        refusal = ("NO", "Mailbox is read-only", "READ-ONLY")
    elif view.account != session.user:  # RFC 4314: not in another user's mailbox (yet)
        refusal = ("NO", "Not possible in another user's mailbox", "CANNOT")
    elif len(uids) > 1:
        refusal = ("BAD", "REPLACE replaces one message", "CLIENTBUG")
    elif not uids:
        refusal = ("NO", "No such message", "NONEXISTENT")
    if refusal is not None:
        drop_appends(session)
        session.write(session.core.append_reject(*refusal))
        return None
    return uids[0]


def drop_appends(session: ImapSession) -> None:
    for append in session.appends:
        append.spool.discard()
    session.appends = []


async def append_done(session: ImapSession, tag: str) -> None:
    assert session.user is not None
    appends, session.appends = session.appends, []
    store = session.ctx.store
    done: list[tuple[str, str, int]] = []
    validity: int | None = None  # the last copy's mailbox's, from its commit
    failed = next((a.failed for a in appends if a.failed is not None), None)
    if failed is not None:
        for a in appends:
            a.spool.discard()
        session.write(tagged(tag, "NO", *imap_reply(failed, "APPEND failed: cannot store it")))
        return
    try:
        indexed = []
        for a in appends:
            if a.nul:
                await _binary_to_base64(session, a)
            facts = await finish_facts(a.facts)
            spool = a.spool
            held = spool.read() if spool.in_memory else b""
            commit = asyncio.ensure_future(
                store.deliver(
                    spool,
                    Envelope(sender="", authenticated=session.user),
                    [_target(a.account, a.mailbox, a.flags)],
                    facts=facts,
                    internal_date=a.date,
                    internal_zone=a.zone,
                )
            )
            text, in_hand = None, None
            if held and len(held) == spool.size and indexer_for(store).extractor is not None:
                in_hand = (held, facts)  # the indexer hands it to a worker process
            elif held and len(held) == spool.size:  # small: it never left memory
                await asyncio.sleep(0)  # the commit goes to the writer thread first
                # the SEARCH text, extracted while the commit waits for its fsync
                with contextlib.suppress(ValueError):  # best effort: SEARCH scans it
                    tree = await tree_of(facts)
                    if tree_is_large(facts):  # hundreds of parts to walk
                        text = await asyncio.to_thread(indexable, held, tree)
                    else:
                        text = indexable(held, tree)
            result = await commit
            validity = result.validities[0] if result.validities else None
            done.append((a.account, a.mailbox, result.uids[0][1]))
            indexed.append((a.account, a.mailbox, result.uids[0][1], text, in_hand))
    except StoreError as exc:
        for account, mailbox, uid in done:  # RFC 3502 §6: all or nothing
            await store.expunge(account, mailbox, [uid])
        for a in appends:
            a.spool.discard()
        session.ctx.log.error("imap.append_failed", session=session.id, error=str(exc))
        session.write(tagged(tag, "NO", *imap_reply(exc, "APPEND failed")))
        return
    for account, mailbox, uid, text, in_hand in indexed:  # the SEARCH TEXT index
        if text is not None:
            indexer_for(store).write(account, mailbox, {uid: text})
        else:
            indexer_for(store).add([(account, mailbox, uid)], in_hand)
    if validity is None:  # a store that did not say
        validity = (await store.mailbox_state(done[-1][0], done[-1][1])).uidvalidity
    uids = format_uids(uid for _, _, uid in done)
    appenduid = f"APPENDUID {validity} {uids}"
    replaced = appends[-1].replace if appends else None
    if replaced is not None and session.view is not None:
        await _expunge_replaced(session, replaced, appenduid)
        session.write(tagged(tag, "OK", "REPLACE completed"))
        return
    if session.view is not None:
        await session._updates(allow_expunge=False)
    session.write(tagged(tag, "OK", "APPEND completed", appenduid))


async def _expunge_replaced(session: ImapSession, uid: int, appenduid: str) -> None:
    """RFC 8508 §3.4: the new message's APPENDUID first, then the old message's EXPUNGE
    (or VANISHED), then EXISTS when it was saved into the selected mailbox."""
    view = session.view
    assert view is not None and session.user is not None
    session.write(untagged("OK", "Replacement Message ID", appenduid))
    if uid in view.info:
        await session.ctx.store.expunge(view.account, view.name, [uid])
        for line in view.expunged_now([uid], session.core.vanished):
            session.write(line)
    await session._updates(allow_expunge=False)


async def _binary_to_base64(session: ImapSession, a: Append) -> None:
    """RFC 9051 §4.3/§6.3.12: NUL may reach a client only in BINARY[]; store such parts
    base64-encoded (reversible), in memory: the APPEND limit bounds it and it is rare."""
    spool = a.spool
    data = await spool_read(spool)
    converted = base64_binary_parts(data)
    if converted is None:
        return
    a.spool = session.ctx.store.new_spool()
    a.spool.write(converted)
    a.facts = FactsBuilder()
    a.facts.feed(converted)
    spool.discard()
