"""Selected-state commands of an IMAP session: CLOSE/UNSELECT, EXPUNGE, SEARCH,
SORT, THREAD, FETCH, STORE, COPY and MOVE (RFC 9051 §6.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from correo.imap import commands as c
from correo.imap.responses import (
    search_response,
    tagged,
    untagged,
)
from correo.imap.sequence import STAR
from correo.server.imap.acl import flags_allowed, may_set_seen, refusal, resolve
from correo.server.imap.bodies import CACHED_MAX, Prefetcher, read_one
from correo.server.imap.context import (
    contexts_changed,
    esearch_reply,
    refused_update,
)
from correo.server.imap.fetch import (
    FetchPlan,
    UnknownCte,
    ensure_facts,
    expunged_meanwhile,
    render_message,
    render_meta_batch,
    render_whole,
)
from correo.server.imap.objects import extra_items
from correo.server.imap.ordering import sort_uids, thread_uids
from correo.server.imap.searching import run_search
from correo.server.imap.streams import send_streams
from correo.server.imap.view import MAX_KEYWORDS, SYSTEM_FLAGS, format_uids
from correo.server.junk_moves import on_imap_move  # moving to/from Junk trains the filter
from correo.store.api import (
    MailboxError,
    StoreError,
)

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = [
    "cmd_close",
    "cmd_copy",
    "cmd_expunge",
    "cmd_fetch",
    "cmd_search",
    "cmd_sort",
    "cmd_store",
    "cmd_thread",
]

_HOLD_BACK = 256 * 1024  # FETCH output held for the tagged reply (one write) at most
#: Within a FETCH of bodies, output is sent once this much is queued: memory stays
#: bounded and the client decodes (and decrypts) one part while the next is read.
_SEND_AT = 256 * 1024


# -- selected state -------------------------------------------------------------


def _uids(session: ImapSession, sequence: Any, uid: bool) -> list[int]:
    view = session.view
    assert view is not None
    if sequence.saved:
        return [u for u in view.saved if u in view.info]
    if uid:
        ranges = sequence.ranges
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1] != STAR:  # one UID, no "*"
            return [ranges[0][0]] if view.seq(ranges[0][0]) is not None else []
        return view.uids_for_uid_ranges(sequence.resolve(view.max_uid()))
    return view.uids_for_seq_ranges(sequence.resolve(view.exists))


async def cmd_close(session: ImapSession, tag: str, cmd: c.Close | c.Unselect) -> None:
    view = session.view
    assert view is not None and session.user is not None
    if isinstance(cmd, c.Close) and not view.read_only:
        deleted = [u for u in view.uids if "\\Deleted" in view.info[u].flags]
        if deleted:
            await session.ctx.store.expunge(view.account, view.name, deleted)  # silently (§6.4.1)
    session.view = None
    session.core.unselected()
    session.write(
        tagged(tag, "OK", "CLOSE completed" if isinstance(cmd, c.Close) else "UNSELECT completed")
    )


async def cmd_expunge(session: ImapSession, tag: str, cmd: c.Expunge | c.UidExpunge) -> None:
    view = session.view
    assert view is not None and session.user is not None
    if view.read_only:
        session.write(tagged(tag, "NO", "Mailbox is read-only", "READ-ONLY"))
        return
    await session._updates()
    candidates = view.uids
    if isinstance(cmd, c.UidExpunge):
        candidates = _uids(session, cmd.uids, True)
    deleted = [u for u in candidates if "\\Deleted" in view.info[u].flags]
    if deleted:
        await session.ctx.store.expunge(view.account, view.name, deleted)
        for line in view.expunged_now(deleted, session.core.vanished):
            session.write(line)
    await session._updates()
    session.write(tagged(tag, "OK", "EXPUNGE completed"))


async def cmd_search(session: ImapSession, tag: str, cmd: c.Search) -> None:
    view = session.view
    assert view is not None
    if refused_update(session, tag, cmd):
        return
    await session._updates(allow_expunge=False)
    if _uses_modseq(cmd.criteria):
        session._condstore_on()
    matched = await run_search(session.ctx.store, view, cmd.criteria)
    result = matched if cmd.uid else [s for s in (view.seq(u) for u in matched) if s is not None]
    modseq = None
    if session.core.condstore and _uses_modseq(cmd.criteria) and matched:
        modseq = max(view.info[u].modseq for u in matched)
    if cmd.return_options is None:
        session.write(search_response(result, modseq))
    else:  # RFC 4731, RFC 5267 §4: ESEARCH, PARTIAL, UPDATE
        await esearch_reply(session, tag, cmd, matched, modseq)
    session.write(tagged(tag, "OK", "SEARCH completed"))


async def cmd_sort(session: ImapSession, tag: str, cmd: c.Sort) -> None:
    view = session.view
    assert view is not None
    if refused_update(session, tag, cmd):
        return
    await session._updates(allow_expunge=False)
    matched = await run_search(session.ctx.store, view, cmd.search)
    ordered = await sort_uids(session.ctx.store, view, matched, cmd.criteria)
    if cmd.return_options is not None:  # RFC 5267 §3 ESORT, §4 CONTEXT=SORT
        await esearch_reply(session, tag, cmd, ordered, None)
        session.write(tagged(tag, "OK", "SORT completed"))
        return
    result = ordered if cmd.uid else [view.seq(u) or 0 for u in ordered]
    session.write(b"* SORT" + b"".join(b" %d" % n for n in result) + b"\r\n")
    session.write(tagged(tag, "OK", "SORT completed"))


async def cmd_thread(session: ImapSession, tag: str, cmd: c.Thread) -> None:
    view = session.view
    assert view is not None
    await session._updates(allow_expunge=False)
    matched = await run_search(session.ctx.store, view, cmd.search)
    text = await thread_uids(session.ctx.store, view, matched, cmd.algorithm, uid=cmd.uid)
    session.write(b"* THREAD " + text + b"\r\n")
    session.write(tagged(tag, "OK", "THREAD completed"))


async def cmd_fetch(session: ImapSession, tag: str, cmd: c.Fetch) -> None:
    view = session.view
    assert view is not None and session.user is not None
    await session._updates(allow_expunge=False)
    uids = _uids(session, cmd.sequence, cmd.uid)
    plan = FetchPlan.of(
        cmd.items,
        uid_command=cmd.uid,
        condstore=session.core.condstore or cmd.changedsince is not None,
    )
    if not session.core.condstore and (cmd.changedsince is not None or "MODSEQ" in plan.names):
        session._condstore_on()
        plan = FetchPlan.of(cmd.items, uid_command=cmd.uid, condstore=True)
    if cmd.changedsince is not None:
        uids = [u for u in uids if view.info[u].modseq > cmd.changedsince]
        if cmd.vanished and cmd.uid:
            changes = await session.ctx.store.changes_since(
                view.account, view.name, cmd.changedsince
            )
            known = cmd.sequence.resolve(view.max_uid())
            gone = [u for u in changes.expunged if any(lo <= u <= hi for lo, hi in known)]
            if gone:
                session.write(b"* VANISHED (EARLIER) " + format_uids(gone).encode() + b"\r\n")
    if plan.sets_seen and not view.read_only and await may_set_seen(session):  # RFC 4314 s
        unseen = [u for u in uids if "\\Seen" not in view.info[u].flags]
        if unseen:
            changed, _ = await session.ctx.store.store_flags(
                view.account, view.name, unseen, "add", ["\\Seen"]
            )
            await session._stored(changed)
            await contexts_changed(session)
            added = [c.FetchAtt(n) for n in ("FLAGS",) if n not in plan.names]
            if plan.condstore and not cmd.uid and "UID" not in plan.names:
                added.append(c.FetchAtt("UID"))  # RFC 7162 §3.1: flags changed by FETCH too
            if added:
                plan = FetchPlan.of(
                    (*cmd.items, *added), uid_command=cmd.uid, condstore=plan.condstore
                )
    if (
        len(uids) == 1
        and plan.whole_labels is not None
        and await _fetch_whole(session, uids[0], plan)
    ):
        session.write(tagged(tag, "OK", "FETCH completed"))
        return
    facts = {}
    expunged = False  # some message's data was gone: left out (RFC 5530 §3 EXPUNGEISSUED)
    for start in range(0, len(uids), 1000):
        batch = uids[start : start + 1000]
        if plan.metadata_only:
            data, lost = await render_meta_batch(session.ctx.store, view, batch, plan)
            for uid in lost:
                if not await expunged_meanwhile(session.ctx.store, view, uid):
                    raise StoreError(f"the structure of message {uid} cannot be read")
                expunged = True
            pending = len(data)
            session.write(data)
        else:
            if plan.needs_facts:
                facts = await ensure_facts(session.ctx.store, view, batch)
            extras = await extra_items(
                session.ctx.store, view, batch, plan.names, utf8=session.core.utf8
            )
            pending = 0
            bodies: dict[int, bytes] = {}
            covered = 0 if plan.reads_bodies and len(batch) > 1 else len(batch)
            reader = Prefetcher(session.ctx.store, view, batch)
            for i, uid in enumerate(batch):
                if i >= covered:  # the next group's small bodies, in one store call
                    bodies, n = await reader.group(i)
                    covered = i + max(n, 1)
                if uid not in view.info:
                    continue
                no_id = b"EMAILID NIL" in extras.get(uid, ())  # RFC 8474 §7: never NIL
                if (plan.needs_facts and uid not in facts) or no_id:
                    if not await expunged_meanwhile(session.ctx.store, view, uid):
                        raise StoreError(f"the structure of message {uid} cannot be read")
                    expunged = True
                    continue
                try:
                    out = await render_message(
                        session.ctx.store,
                        view,
                        uid,
                        plan,
                        facts.get(uid),
                        extras.get(uid, ()),
                        bodies.pop(uid, None),
                    )
                except UnknownCte:  # RFC 3516 §4.3
                    text = "Unknown Content-Transfer-Encoding"
                    session.write(tagged(tag, "NO", text, "UNKNOWN-CTE"))
                    return
                except StoreError:
                    if not await expunged_meanwhile(session.ctx.store, view, uid):
                        raise
                    expunged = True  # RFC 2180 §4.1.2: another session expunged it
                    continue
                if out.streams is None:
                    for piece in out.pieces:
                        pending += len(piece)
                        session.write(piece)
                else:
                    pending = await send_streams(session, out, pending)
                if pending > _SEND_AT:  # the client reads these while the next are read
                    await session.conn.flush(session.write_timeout)
                    pending = 0
        if start + 1000 < len(uids) or pending > _HOLD_BACK:
            await session.conn.flush(
                session.write_timeout
            )  # a small last batch goes out with the tagged reply
    if expunged:  # RFC 5530 §3: the client may want to NOOP soon
        session.write(tagged(tag, "OK", "Some messages were already expunged", "EXPUNGEISSUED"))
        return
    session.write(tagged(tag, "OK", "FETCH completed"))


async def _fetch_whole(session: ImapSession, uid: int, plan: FetchPlan) -> bool:
    """One small message's BODY[] (a client that syncs one UID FETCH at a time): its
    bytes read once and the response written, without the group read-ahead and the
    per-item machinery of the general path. False when that path must answer: a big
    message (streamed), or one whose bytes are gone (expunged meanwhile)."""
    view = session.view
    assert view is not None
    info = view.info.get(uid)
    if info is None or info.size > CACHED_MAX:
        return False
    try:
        data = await read_one(session.ctx.store, view, uid)
    except StoreError:
        return False  # the general path tells an expunge from a failure
    if data is None:
        return False
    for piece in render_whole(view, uid, plan, data):
        session.write(piece)
    return True


async def cmd_store(session: ImapSession, tag: str, cmd: c.Store) -> None:
    view = session.view
    assert view is not None and session.user is not None
    if view.read_only:
        session.write(tagged(tag, "NO", "Mailbox is read-only", "READ-ONLY"))
        return
    await session._updates(allow_expunge=False)
    uids = _uids(session, cmd.sequence, cmd.uid)
    if cmd.mode != "remove":
        fresh = {f for f in cmd.flags if f not in SYSTEM_FLAGS and f not in view.keywords}
        if fresh and len(view.keywords) + len(fresh) > MAX_KEYWORDS:
            text = f"A mailbox holds at most {MAX_KEYWORDS} keywords"
            session.write(tagged(tag, "NO", text, "LIMIT"))
            return
    if cmd.unchangedsince is not None:
        session._condstore_on()
    changed, failed = await session.ctx.store.store_flags(
        view.account, view.name, uids, cmd.mode, cmd.flags, cmd.unchangedsince
    )
    await session._stored(changed)
    for line in view.new_keywords(changed):
        session.write(line)
    changed_uids = {m.uid for m in changed}
    condstore = session.core.condstore or cmd.unchangedsince is not None
    for uid in uids:
        if uid in failed or uid not in view.info:
            continue
        if cmd.silent and not (condstore and uid in changed_uids):
            continue
        seq = view.seq(uid)
        items = [b"FLAGS " + view.flag_list(uid)] if not cmd.silent else []
        if cmd.uid or condstore:  # RFC 7162 §3.1: with CONDSTORE, UID and MODSEQ always
            items.insert(0, b"UID %d" % uid)
        if condstore:
            items.append(b"MODSEQ (%d)" % view.info[uid].modseq)
        session.write(view.fetch_head(seq or 0, uid) + b" ".join(items) + b")\r\n")
    await contexts_changed(session)  # RFC 5267 §4.3: after the FETCHes
    if failed:
        numbers = failed if cmd.uid else [view.seq(u) or 0 for u in failed]
        session.write(
            tagged(tag, "OK", "Conditional STORE failed", f"MODIFIED {format_uids(numbers)}")
        )
    else:
        session.write(tagged(tag, "OK", "STORE completed"))


async def cmd_copy(session: ImapSession, tag: str, cmd: c.Copy | c.Move) -> None:
    view = session.view
    assert view is not None and session.user is not None
    move = isinstance(cmd, c.Move)
    if move and view.read_only:
        session.write(tagged(tag, "NO", "Mailbox is read-only", "READ-ONLY"))
        return
    owner, target = resolve(session.user, cmd.mailbox)
    keep_flags = None
    if owner != session.user:  # RFC 4314 §4: "i" there, and flags only with their rights
        rights = await session.ctx.store.acl_rights(owner, target, session.user)
        if "i" not in rights:
            session.write(refusal(tag, rights, "i"))
            return
        keep_flags = flags_allowed(rights)
    try:
        status = await session.ctx.store.mailbox_status(owner, target)
    except MailboxError:
        missing = "TRYCREATE" if owner == session.user else "NONEXISTENT"
        session.write(tagged(tag, "NO", "No such mailbox", missing))
        return
    await session._updates(allow_expunge=False)
    uids = _uids(session, cmd.sequence, cmd.uid)
    into_self = owner == view.account and target == view.name
    store = session.ctx.store
    own = owner == session.user and view.account == session.user
    if own:
        pairs = await store.copy_messages(
            session.user, view.name, uids, target, move=move and not into_self
        )
    else:  # a shared mailbox on either side: the target account's quota is charged
        pairs = await store.copy_across(
            view.account,
            view.name,
            uids,
            owner,
            target,
            move=move and not into_self,
            keep_flags=keep_flags,
        )
    if move and into_self and pairs:
        # RFC 6851 §3.3: moving into the source mailbox is allowed; the messages get
        # new UIDs, so it is a copy and then an expunge of the originals.
        await store.expunge(view.account, view.name, [p[0] for p in pairs])
    if pairs:
        source_uids = format_uids(p[0] for p in pairs)
        code = f"COPYUID {status.uidvalidity} {source_uids} {format_uids(p[1] for p in pairs)}"
    else:
        code = None
    if move:
        if code:
            session.write(untagged("OK", "Moved", code))  # RFC 6851 §4.3
        for line in view.expunged_now([p[0] for p in pairs], session.core.vanished):
            session.write(line)
    if into_self and pairs:
        # RFC 6851 §4.4: the EXPUNGEs above first, then EXISTS for the new messages
        await session._updates(allow_expunge=False)
    if move:
        session.write(tagged(tag, "OK", "MOVE completed"))
    else:
        session.write(tagged(tag, "OK", "COPY completed", code))
    if own:  # moving to/from Junk trains the owner's filter
        await on_imap_move(session.ctx, session.user, view.name, target, [p[1] for p in pairs])


def _uses_modseq(key: object) -> bool:
    from correo.imap.search import And, ModSeqKey, Not, Or

    match key:
        case ModSeqKey():
            return True
        case Not(inner):
            return _uses_modseq(inner)
        case Or(left, right):
            return _uses_modseq(left) or _uses_modseq(right)
        case And(keys):
            return any(_uses_modseq(k) for k in keys)
    return False
