"""FETCH items and SEARCH keys computed per message beyond the stored facts:
EMAILID and THREADID (RFC 8474), PREVIEW (RFC 8970).

The object ids are the ones JMAP shows (:mod:`correo.message.objectid`), made from
the store's per-message digests; a view's digests are read once and kept while it
lives.  A preview reads at most :data:`~correo.message.preview.PREVIEW_READ` octets
of one text part; decoding a large piece runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence

from correo.delivery.facts import load_tree
from correo.imap.responses import quote_string
from correo.imap.search import And, Not, ObjectIdKey, Or, SearchKey
from correo.message.objectid import email_id, thread_id
from correo.message.preview import PREVIEW_READ, preview_part, preview_text
from correo.server.imap.fetch import ensure_facts, read_range
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore, MessageFacts, StoreError

__all__ = ["EXTRA_ITEMS", "extra_items", "object_ids", "uses_object_ids"]

#: FETCH items this module answers.
EXTRA_ITEMS = frozenset({"EMAILID", "THREADID", "PREVIEW"})
#: Decoding more than this many octets for a preview goes to a worker thread.
_OFF_LOOP = 16 << 10

_IDS: weakref.WeakKeyDictionary[MailboxView, dict[int, tuple[str, str]]] = (
    weakref.WeakKeyDictionary()
)


async def object_ids(
    store: MailStore, view: MailboxView, uids: Sequence[int]
) -> dict[int, tuple[str, str]]:
    """(EMAILID, THREADID) of each of ``uids`` that still exists."""
    known = _IDS.setdefault(view, {})
    if any(u not in known for u in uids):
        digests = await store.message_digests(view.account, view.name)
        for uid, digest in digests.items():
            known[uid] = (email_id(digest), thread_id(digest))
    return {u: known[u] for u in uids if u in known}


def uses_object_ids(key: SearchKey) -> bool:
    """Whether a SEARCH program has an EMAILID or THREADID key (RFC 8474 §6)."""
    match key:
        case ObjectIdKey():
            return True
        case Not(inner):
            return uses_object_ids(inner)
        case Or(left, right):
            return uses_object_ids(left) or uses_object_ids(right)
        case And(keys):
            return any(uses_object_ids(k) for k in keys)
    return False


async def _preview(store: MailStore, view: MailboxView, uid: int, facts: MessageFacts) -> str:
    tree = load_tree(facts)
    part = preview_part(tree)
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
        ids = await object_ids(store, view, uids)
        for uid in uids:
            pair = ids.get(uid)
            if "EMAILID" in wanted:  # RFC 8474 §5.1: "EMAILID" SP "(" objectid ")"
                out[uid].append(b"EMAILID (%s)" % pair[0].encode() if pair else b"EMAILID NIL")
            if "THREADID" in wanted:  # RFC 8474 §5.2: NIL when there is no thread
                out[uid].append(b"THREADID (%s)" % pair[1].encode() if pair else b"THREADID NIL")
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
