"""FETCH items and SEARCH keys computed per message beyond the stored facts:
EMAILID and THREADID (RFC 8474), PREVIEW (RFC 8970), SAVEDATE (RFC 8514).

The object ids are the ones JMAP shows (:mod:`correo.message.objectid`): EMAILID from
the store's per-message digests, THREADID from each message's header section (read
once, hashed in a worker thread for a batch); both are kept while the view lives.
A preview reads at most :data:`~correo.message.preview.PREVIEW_READ` octets of one
text part; decoding a large piece runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import Mapping, Sequence

from correo.delivery.facts import tree_is_large, tree_of
from correo.imap.responses import format_internal_date, internal_datetime, quote_string
from correo.imap.search import And, Not, ObjectIdKey, Or, SaveDateKey, SearchKey
from correo.message.objectid import THREAD_HEAD, email_id, thread_id_of
from correo.message.preview import PREVIEW_READ, preview_part, preview_text
from correo.server.imap.fetch import ensure_facts, read_range
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore, MessageFacts, StoreError, local_zone

__all__ = [
    "EXTRA_ITEMS",
    "extra_items",
    "object_ids",
    "object_kinds",
    "save_days",
    "uses_save_dates",
]

#: FETCH items this module answers.
EXTRA_ITEMS = frozenset({"EMAILID", "THREADID", "PREVIEW", "SAVEDATE"})
#: Decoding more than this many octets for a preview goes to a worker thread.
_OFF_LOOP = 16 << 10

_EMAILS: weakref.WeakKeyDictionary[MailboxView, dict[int, str]] = weakref.WeakKeyDictionary()
_THREADS: weakref.WeakKeyDictionary[MailboxView, dict[int, str]] = weakref.WeakKeyDictionary()


async def _email_ids(store: MailStore, view: MailboxView, uids: Sequence[int]) -> dict[int, str]:
    known = _EMAILS.setdefault(view, {})
    if any(u not in known for u in uids):
        digests = await store.message_digests(view.account, view.name)
        known.update((uid, email_id(digest)) for uid, digest in digests.items())
    return known


async def object_ids(
    store: MailStore, view: MailboxView, uids: Sequence[int], *, threads: bool = True
) -> dict[int, tuple[str, str]]:
    """(EMAILID, THREADID) of each of ``uids`` that still exists; THREADID is "" when
    ``threads`` is False (it costs a read of each message's header section)."""
    emails = await _email_ids(store, view, uids)
    found = {u: emails[u] for u in uids if u in emails}
    known = _THREADS.setdefault(view, {})
    missing = [u for u in found if u not in known] if threads else []
    if missing:
        digests = await store.message_digests(view.account, view.name)
        heads: list[tuple[int, bytes, str]] = []
        for uid in missing:
            info = view.info.get(uid)
            if info is None or uid not in digests:
                continue
            try:
                head = await read_range(store, view, uid, 0, min(info.size, THREAD_HEAD))
            except StoreError:
                continue  # expunged meanwhile
            heads.append((uid, head, digests[uid]))

        def compute() -> list[tuple[int, str]]:
            return [(uid, thread_id_of(head, digest)) for uid, head, digest in heads]

        known.update(await asyncio.to_thread(compute) if len(heads) > 8 else compute())
    return {u: (e, known.get(u, "")) for u, e in found.items()}


async def save_days(store: MailStore, view: MailboxView, uids: Sequence[int]) -> dict[int, dt.date]:
    """The day (server time) each message was saved, for SAVED* (RFC 8514 §4.2)."""
    dates = await store.save_dates(view.account, view.name, uids)
    return {u: internal_datetime(w, local_zone(w)).date() for u, w in dates.items()}


def uses_save_dates(key: SearchKey) -> bool:
    match key:
        case SaveDateKey():
            return True
        case Not(inner):
            return uses_save_dates(inner)
        case Or(left, right):
            return uses_save_dates(left) or uses_save_dates(right)
        case And(keys):
            return any(uses_save_dates(k) for k in keys)
    return False


def object_kinds(key: SearchKey) -> frozenset[str]:
    """EMAILID and/or THREADID if a SEARCH program has such keys (RFC 8474 §6)."""
    match key:
        case ObjectIdKey(kind):
            return frozenset({kind})
        case Not(inner):
            return object_kinds(inner)
        case Or(left, right):
            return object_kinds(left) | object_kinds(right)
        case And(keys):
            return frozenset().union(*(object_kinds(k) for k in keys))
    return frozenset()


async def _preview(store: MailStore, view: MailboxView, uid: int, facts: MessageFacts) -> str:
    tree = await tree_of(facts)
    # the walk may pass every part of a large tree before a text one
    part = (
        await asyncio.to_thread(preview_part, tree) if tree_is_large(facts) else preview_part(tree)
    )
    if part is None:
        return ""
    end = min(part.body_end, part.header_end + PREVIEW_READ)
    body = await read_range(store, view, uid, part.header_end, end)
    if len(body) > _OFF_LOOP:
        return await asyncio.to_thread(preview_text, body, part)
    return preview_text(body, part)


async def extra_items(
    store: MailStore,
    view: MailboxView,
    uids: Sequence[int],
    names: frozenset[str],
    *,
    utf8: bool,
) -> Mapping[int, list[bytes]]:
    """The EMAILID/THREADID/PREVIEW items of each message, in that order."""
    wanted = names & EXTRA_ITEMS
    if not wanted or not uids:
        return {}
    out: dict[int, list[bytes]] = {u: [] for u in uids}
    if wanted & {"EMAILID", "THREADID"}:
        ids = await object_ids(store, view, uids, threads="THREADID" in wanted)
        for uid in uids:
            email, thread = ids.get(uid, ("", ""))
            if "EMAILID" in wanted:  # RFC 8474 §5.1: "EMAILID" SP "(" objectid ")"
                out[uid].append(b"EMAILID (%s)" % email.encode() if email else b"EMAILID NIL")
            if "THREADID" in wanted:  # RFC 8474 §5.2: NIL when there is no thread
                out[uid].append(b"THREADID (%s)" % thread.encode() if thread else b"THREADID NIL")
    if "SAVEDATE" in wanted:  # RFC 8514 §4.3: NIL for a message saved before they were kept
        dates = await store.save_dates(view.account, view.name, uids)
        for uid in uids:
            when = dates.get(uid)
            out[uid].append(
                b"SAVEDATE NIL"
                if when is None
                else b"SAVEDATE " + format_internal_date(when, local_zone(when))
            )
    if "PREVIEW" in wanted:
        facts = await ensure_facts(store, view, uids)
        for uid in uids:
            f = facts.get(uid)
            text: str | None = None
            if f is not None:
                try:
                    text = await _preview(store, view, uid, f)
                except (StoreError, ValueError):
                    text = None  # expunged meanwhile, or a part tree that does not fit
            # RFC 8970 §4: "PREVIEW" SP nstring; NIL when there is none to give
            item = b"NIL" if text is None else quote_string(text, utf8)
            out[uid].append(b"PREVIEW " + item)
    return out
