"""SEARCH and SORT execution: the store-backed message view the pure evaluator asks.

Each message loads only what the program needs: flags and sizes are in the session's
view already; header keys read the header section; BODY/TEXT read and decode the text
parts (RFC 9051 §6.4.4: case-insensitive substring of the decoded text).

BODY/TEXT go through the store's trigram index first: it holds the words of exactly
the text the evaluator compares (casefolded), so it can only over-select; the evaluator
then checks the few candidates. Every stored message is indexed in the background
(correo.delivery.textindex); one the index has not reached yet is scanned by the
search, which hands its text to the index without waiting for the write. Waiting for
the indexer instead would not be faster: scanning costs what extracting does, and the
trigram insert of the word set is small beside it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from correo.delivery.facts import tree_is_large, tree_of
from correo.delivery.partheads import part_headers
from correo.delivery.textindex import (
    ADDRESS_FIELDS,
    MAX_INDEXED,
    TextIndexer,
    address_text,
    body_texts,
    index_form,
    index_needles,
    index_text_of,
    indexer_for,
)
from correo.imap.responses import internal_datetime
from correo.imap.search import (
    All,
    And,
    BodyKey,
    DateKey,
    HeaderKey,
    Not,
    Or,
    SearchKey,
    TextKey,
    compile_program,
)
from correo.message.encoded import decode_header
from correo.message.headers import parse_fields
from correo.message.structure import Part
from correo.server.imap.fetch import ensure_facts, read_range
from correo.server.imap.objects import object_ids, object_kinds, save_days, uses_save_dates
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore, MessageFacts

__all__ = ["TextIndexer", "index_text_of", "run_search"]

_BACKFILL_CHARS = 64 << 20  # the rest is indexed by a later search
#: Key evaluations between two yields to the event loop (a few milliseconds): a program
#: of 1,000 keys over a large mailbox would otherwise hold the loop for seconds.
_PACE = 2000
#: Keys times characters of text past which one message is evaluated in a worker
#: thread: each BODY/TEXT/HEADER key scans the text again, and a program of many keys
#: over a message of megabytes costs seconds.
_HEAVY = 1 << 22


def _needs(key: SearchKey) -> tuple[bool, bool, bool]:
    """(headers, body, sent date) the program needs."""
    match key:
        case HeaderKey():
            return True, False, False
        case BodyKey():
            return False, True, False
        case TextKey():
            return True, True, False
        case DateKey(sent=sent):
            return False, False, sent
        case Not(inner):
            return _needs(inner)
        case Or(left, right):
            a, b = _needs(left), _needs(right)
            return a[0] or b[0], a[1] or b[1], a[2] or b[2]
        case And(keys):
            result = (False, False, False)
            for k in keys:
                n = _needs(k)
                result = (result[0] or n[0], result[1] or n[1], result[2] or n[2])
            return result
    return False, False, False


def _every(key: SearchKey) -> bool:
    """Whether the program matches every message (``ALL``, alone or in a conjunction)."""
    match key:
        case All():
            return True
        case And(keys):
            return all(_every(k) for k in keys)
    return False


def _size(key: SearchKey) -> int:
    """How many keys the program evaluates per message, at most."""
    match key:
        case Not(inner):
            return 1 + _size(inner)
        case Or(left, right):
            return 1 + _size(left) + _size(right)
        case And(keys):
            return 1 + sum(_size(k) for k in keys)
    return 1


def _required_needles(key: SearchKey) -> list[str]:
    """BODY/TEXT strings every match must contain (conjunction members only)."""
    match key:
        case TextKey(value=value) | BodyKey(value=value):
            return [value]
        case And(keys):
            return [n for k in keys for n in _required_needles(k)]
    return []


def _local_date(value: str) -> dt.datetime | None:
    """The Date field in its own zone: SENT* compare the date as written (RFC 9051 §6.4.4)."""
    try:
        return email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):  # a year past C's int
        return None


class _Meta:
    """One message as the evaluator sees it when the program reads no text: flags,
    numbers, sizes and dates from the view only (UNSEEN, UID ranges, MODSEQ…)."""

    __slots__ = ("_flags", "_view", "info", "sent_date", "seq")

    def __init__(self, view: MailboxView, uid: int, seq: int, sent: float | None) -> None:
        self.info = view.info[uid]
        self.seq = seq
        self._view = view
        self._flags: frozenset[str] | None = None  # when a key asks, once per message
        self.sent_date = dt.datetime.fromtimestamp(sent, dt.UTC) if sent is not None else None

    @property
    def uid(self) -> int:
        return self.info.uid

    @property
    def flags(self) -> AbstractSet[str]:
        if self._flags is None:
            flags = self.info.flags
            recent = self._view.is_recent(self.info.uid)
            self._flags = frozenset((*flags, "\\Recent") if recent else flags)
        return self._flags

    @property
    def internal_date(self) -> dt.datetime:
        return internal_datetime(self.info.internal_date, self.info.zone)  # RFC 9051 §6.4.4

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def modseq(self) -> int:
        return self.info.modseq

    def header(self, name: str) -> Sequence[str]:
        return ()  # never asked: the program has no header key

    def body_contains(self, needle: str) -> bool:
        return False  # never asked: the program has no BODY/TEXT key

    def text_contains(self, needle: str) -> bool:
        return False


class _Subject(_Meta):
    """One message as the evaluator sees it, with the text the program reads."""

    __slots__ = ("_body", "_folded", "_headers", "_parts", "_parts_folded")

    def __init__(self, view: MailboxView, uid: int, seq: int, sent: float | None) -> None:
        super().__init__(view, uid, seq, sent)
        self._headers: dict[str, list[str]] = {}
        self._folded: list[str] | None = None  # header values casefolded, once
        self._body: str = ""
        self._parts: tuple[bytes, Part] | None = None  # for the parts' headers (TEXT)
        self._parts_folded: list[str] | None = None

    def header(self, name: str) -> Sequence[str]:
        return self._headers.get(name.lower(), [])

    def body_contains(self, needle: str) -> bool:
        return needle.casefold() in self._body

    def text_contains(self, needle: str) -> bool:
        folded = needle.casefold()
        if folded in self._body:
            return True
        if self._folded is None:
            self._folded = [v.casefold() for vs in self._headers.values() for v in vs]
        if any(folded in v for v in self._folded):
            return True
        if self._parts_folded is None:  # every header in the message, as Dovecot reads TEXT
            found = part_headers(*self._parts) if self._parts is not None else []
            self._parts_folded = [v.casefold() for v in found]
        return any(folded in v for v in self._parts_folded)


async def run_search(
    store: MailStore,
    view: MailboxView,
    program: SearchKey,
    *,
    candidates: Sequence[int] | None = None,
) -> list[int]:
    """UIDs (ascending) of the messages matching ``program``."""
    headers, body, sent = _needs(program)
    if _every(program):  # UID SEARCH ALL, a client's every sync: no per-message test
        if candidates is None:
            return list(view.uids)
        known = view.info
        return [u for u in candidates if u in known]
    uids = list(candidates) if candidates is not None else list(view.uids)
    kinds = object_kinds(program)
    ids = await object_ids(store, view, uids, threads="THREADID" in kinds) if kinds else None
    days = await save_days(store, view, uids) if uses_save_dates(program) else None
    matcher = compile_program(
        program,
        max_seq=view.exists,
        max_uid=view.max_uid(),
        saved=frozenset(view.saved),
        ids=ids,
        save_dates=days,
    )
    unindexed: AbstractSet[int] = frozenset()
    if body:
        needles = index_needles(_required_needles(program))
        maybe, unindexed = await store.text_candidates(view.account, view.name, needles)
        uids = [u for u in uids if u in maybe]
        indexer_for(store).claim(view.account, view.name, unindexed)  # scanned here
    texts: dict[int, str] = {}
    backfill = _BACKFILL_CHARS  # bounds what one search holds for the index
    facts: dict[int, MessageFacts] = {}
    if headers or body or sent:
        facts = await ensure_facts(store, view, uids)
    matched: list[int] = []
    cost, spent = _size(program), 0
    # the whole mailbox in order: numbers by position, not a search per message
    by_seq: dict[int, int] | None = None
    if candidates is None and len(uids) > 64:
        by_seq = dict(zip(view.uids, range(1, len(view.uids) + 1), strict=True))
    for uid in uids:
        spent += cost
        if spent >= _PACE:
            spent = 0
            await asyncio.sleep(0)  # let the other connections run
        seq = view.seq(uid) if by_seq is None else by_seq.get(uid)
        if seq is None:
            continue
        f = facts.get(uid)
        if not (headers or body or sent):
            hit = matcher(_Meta(view, uid, seq, None))
            if hit:
                matched.append(uid)
            continue
        subject = _Subject(view, uid, seq, f.sent_date if f is not None else None)
        text_size = 0
        large = f is not None and tree_is_large(f)
        if f is not None:
            tree = await tree_of(f)
            if body:
                data = await read_range(store, view, uid, 0, None)
                index = uid in unindexed and backfill > 0  # what this search read anyway
                if large:  # a walk over thousands of parts
                    form = await asyncio.to_thread(_read_body, subject, data, tree, index)
                else:
                    form = _read_body(subject, data, tree, index)
                if form is not None:
                    texts[uid] = form
                    backfill -= len(form)
                raw_header = data[tree.header_start : tree.header_end]
            else:
                raw_header = await read_range(store, view, uid, tree.header_start, tree.header_end)
            for name, value in parse_fields(raw_header):
                values = subject._headers.setdefault(name, [])
                values.append(decode_header(value))
                if name in ADDRESS_FIELDS and headers:
                    values.append(address_text(value))
                if name == "date" and sent:
                    subject.sent_date = _local_date(value) or subject.sent_date
            text_size = len(subject._body) + len(raw_header)
        # many scans of a large text, or (TEXT) the header of every part of a large tree
        if cost * text_size > _HEAVY or large:
            hit = await asyncio.to_thread(matcher, subject)
        else:
            hit = matcher(subject)
        if hit:
            matched.append(uid)
    indexer_for(store).write(view.account, view.name, texts)  # not awaited: off the reply
    return matched


def _read_body(subject: _Subject, data: bytes, tree: Part, index: bool) -> str | None:
    """Give ``subject`` the message's body text; its indexed form if ``index`` and short."""
    subject._body = "\n".join(body_texts(data, tree)).casefold()
    subject._parts = (data, tree)
    if not index:
        return None
    text = index_text_of(data, tree)
    return index_form(text) if len(text) <= MAX_INDEXED else None
