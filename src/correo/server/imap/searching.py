"""SEARCH and SORT execution: the store-backed message view the pure evaluator asks.

Each message loads only what the program needs: flags and sizes are in the session's
view already; header keys read the header section; BODY/TEXT read and decode the text
parts (RFC 9051 §6.4.4: case-insensitive substring of the decoded text).

BODY/TEXT go through the store's trigram index first: it holds exactly the text the
evaluator compares (casefolded), so it can only over-select; the evaluator then checks
the few candidates. Appended messages are indexed in the background; others (SMTP
delivery, imports) the first time a search has to read them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import weakref
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from correo.delivery.facts import load_tree
from correo.imap.search import (
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
from correo.message.imapfmt import TransferDecoder
from correo.message.mime import parse_address_list
from correo.message.structure import Part
from correo.message.text import html_to_text
from correo.server.imap.fetch import ensure_facts, read_range
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore, MessageFacts, StoreError

__all__ = ["TextIndexer", "index_soon", "index_text_of", "run_search"]

_MAX_INDEXED = 4 << 20  # characters; a longer text stays unindexed and is always scanned
_MAX_INDEX_READ = 2 << 20  # bytes; bigger messages are not read whole in the background


_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to"})


def _address_text(value: str) -> str:
    """Address fields written the canonical way, ``Display Name <local@domain>``.

    RFC 9051 §6.4.4 compares against the field's text; clients type what they see, the
    display name and the address without quotes, comments or folding, so an address
    field also matches in this form (the decoded raw value is matched as well).
    """
    out: list[str] = []
    for a in parse_address_list(value):
        if a.host is None:
            if a.mailbox is not None:  # RFC 5322 §3.4 group start: "name:"
                out.append(decode_header(a.mailbox) + ":")
            continue
        local = "" if a.mailbox == "MISSING_MAILBOX" else a.mailbox or ""
        spec = local if a.host == "MISSING_DOMAIN" else f"{local}@{a.host}"
        out.append(f"{decode_header(a.name)} <{spec}>" if a.name else spec)
    return ", ".join(out)


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


def _text_of(data: bytes, part: Part) -> list[str]:
    """Decoded text of every text/* part (HTML as text)."""
    out: list[str] = []
    for p in part.walk():
        if p.is_multipart or p.type.lower() != "text":
            continue
        decoder = TransferDecoder(p.encoding)
        raw = decoder.feed(data[p.header_end : p.body_end]) + decoder.finish()
        charset = (p.param("charset") or "utf-8").strip().lower()
        try:
            text = raw.decode(charset, "replace")
        except LookupError:
            text = raw.decode("utf-8", "replace")
        out.append(html_to_text(text) if p.subtype.lower() == "html" else text)
    return out


def index_text_of(data: bytes, tree: Part) -> str:
    """The indexed text: what BODY/TEXT compare against (body text, decoded header
    values), casefolded, so every evaluator match is a substring of it."""
    heads = [decode_header(v) for _, v in parse_fields(data[tree.header_start : tree.header_end])]
    return "\n".join(["\n".join(_text_of(data, tree)), *heads]).casefold()


def _required_needles(key: SearchKey) -> list[str]:
    """BODY/TEXT strings every match must contain (conjunction members only)."""
    match key:
        case TextKey(value=value) | BodyKey(value=value):
            return [value]
        case And(keys):
            return [n for k in keys for n in _required_needles(k)]
    return []


class TextIndexer:
    """Indexes appended messages off the APPEND's critical path, in batches."""

    def __init__(self, store: MailStore) -> None:
        self.store = store
        self.pending: dict[tuple[str, str], dict[int, bytes]] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, account: str, mailbox: str, uid: int, tree: bytes) -> None:
        self.pending.setdefault((account, mailbox), {})[uid] = tree
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self.pending:
                (account, mailbox), items = self.pending.popitem()
                texts: dict[int, str] = {}
                for uid, tree_json in items.items():
                    try:
                        chunks = [c async for c in self.store.read_message(account, mailbox, uid)]
                        tree = Part.from_json(json.loads(tree_json))
                    except (StoreError, ValueError):
                        continue  # expunged meanwhile, or no usable tree: searched by scan
                    text = index_text_of(b"".join(chunks), tree)
                    if len(text) <= _MAX_INDEXED:
                        texts[uid] = text
                    await asyncio.sleep(0)  # let sessions run between messages
                try:
                    await self.store.index_text(account, mailbox, texts)
                except StoreError:
                    pass  # unindexed messages are still found, by scanning
        finally:
            self.task = None


_INDEXERS: weakref.WeakKeyDictionary[MailStore, TextIndexer] = weakref.WeakKeyDictionary()


def index_soon(
    store: MailStore, account: str, mailbox: str, uid: int, size: int, facts: MessageFacts
) -> None:
    """Queue an appended message for the text index (small enough to read whole)."""
    if size > _MAX_INDEX_READ:
        return
    indexer = _INDEXERS.get(store)
    if indexer is None:
        indexer = _INDEXERS[store] = TextIndexer(store)
    indexer.add(account, mailbox, uid, facts.tree)


def _local_date(value: str) -> dt.datetime | None:
    """The Date field in its own zone: SENT* compare the date as written (RFC 9051 §6.4.4)."""
    try:
        return email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None


class _Subject:
    """One message as the evaluator sees it."""

    __slots__ = ("_body", "_headers", "info", "recent", "sent_date", "seq")

    def __init__(self, view: MailboxView, uid: int, seq: int, sent: float | None) -> None:
        self.info = view.info[uid]
        self.seq = seq
        self.recent = view.is_recent(uid)
        self.sent_date = dt.datetime.fromtimestamp(sent, dt.UTC) if sent is not None else None
        self._headers: dict[str, list[str]] = {}
        self._body: str = ""

    @property
    def uid(self) -> int:
        return self.info.uid

    @property
    def flags(self) -> AbstractSet[str]:
        if self.recent:
            return frozenset((*self.info.flags, "\\Recent"))
        return frozenset(self.info.flags)

    @property
    def internal_date(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.info.internal_date, dt.UTC)

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def modseq(self) -> int:
        return self.info.modseq

    def header(self, name: str) -> Sequence[str]:
        return self._headers.get(name.lower(), [])

    def body_contains(self, needle: str) -> bool:
        return needle.casefold() in self._body

    def text_contains(self, needle: str) -> bool:
        folded = needle.casefold()
        if folded in self._body:
            return True
        return any(folded in v.casefold() for vs in self._headers.values() for v in vs)


async def run_search(
    store: MailStore,
    view: MailboxView,
    program: SearchKey,
    *,
    candidates: Sequence[int] | None = None,
) -> list[int]:
    """UIDs (ascending) of the messages matching ``program``."""
    headers, body, sent = _needs(program)
    uids = list(candidates) if candidates is not None else list(view.uids)
    matcher = compile_program(
        program, max_seq=view.exists, max_uid=view.max_uid(), saved=frozenset(view.saved)
    )
    unindexed: AbstractSet[int] = frozenset()
    if body:
        needles = [n.casefold() for n in _required_needles(program)]
        maybe, unindexed = await store.text_candidates(view.account, view.name, needles)
        uids = [u for u in uids if u in maybe]
    texts: dict[int, str] = {}
    facts: dict[int, MessageFacts] = {}
    if headers or body or sent:
        facts = await ensure_facts(store, view, uids)
    matched: list[int] = []
    for uid in uids:
        seq = view.seq(uid)
        if seq is None:
            continue
        f = facts.get(uid)
        subject = _Subject(view, uid, seq, f.sent_date if f is not None else None)
        if (headers or body or sent) and f is not None:
            tree = load_tree(f)
            if body:
                data = await read_range(store, view, uid, 0, None)
                subject._body = "\n".join(_text_of(data, tree)).casefold()
                raw_header = data[tree.header_start : tree.header_end]
                if uid in unindexed:  # backfill what this search had to read anyway
                    text = index_text_of(data, tree)
                    if len(text) <= _MAX_INDEXED:
                        texts[uid] = text
            else:
                raw_header = await read_range(store, view, uid, tree.header_start, tree.header_end)
            for name, value in parse_fields(raw_header):
                values = subject._headers.setdefault(name, [])
                values.append(decode_header(value))
                if name in _ADDRESS_FIELDS and headers:
                    values.append(_address_text(value))
                if name == "date" and sent:
                    subject.sent_date = _local_date(value) or subject.sent_date
        if matcher(subject):
            matched.append(uid)
    if texts:
        await store.index_text(view.account, view.name, texts)
    return matched
