"""Background SEARCH TEXT/BODY indexing of newly stored messages.

Every path that stores a message — IMAP APPEND, SMTP/LMTP/queue local delivery,
``correo import`` — hands the new UIDs to :func:`index_delivered` after the commit: the
acknowledgement never waits for the index. One :class:`TextIndexer` per store reads
each message once (copies delivered to several mailboxes share the work), extracts the
text the search evaluator compares, and writes it to the store's trigram index, whose
writer is a separate low-priority thread.

What is indexed is the *word set* of that text: with ``detail='none'`` a trigram index
only records which trigrams a document contains, so repeated words add cost (about
60 ns per character) and no selectivity. Needles are split the same way
(:func:`index_needles`): each whitespace-free piece of a needle lies inside one word of
any text containing the needle, so the index still only over-selects and the evaluator
keeps the exact RFC 9051 §6.4.4 substring semantics.

The queue is bounded; messages it drops, and those of a crashed or restarted process,
are found by the search-time backfill (``correo.server.imap.searching``).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from correo.delivery.facts import load_tree
from correo.delivery.partheads import part_headers
from correo.message.encoded import decode_header
from correo.message.headers import parse_fields
from correo.message.imapfmt import TransferDecoder
from correo.message.mime import parse_address_list
from correo.message.structure import Part
from correo.message.text import decode_text, html_to_text
from correo.store.api import Delivered, MailStore, MessageFacts, StoreError

__all__ = [
    "ADDRESS_FIELDS",
    "INDEX_IN_HAND",
    "MAX_INDEXED",
    "Extractor",
    "TextIndexer",
    "address_text",
    "body_texts",
    "header_value",
    "index_delivered",
    "index_form",
    "index_needles",
    "index_text_of",
    "indexable",
    "indexer_for",
]

MAX_INDEXED = 4 << 20  # characters; a longer text stays unindexed and is always scanned
_MAX_INDEX_READ = 2 << 20  # bytes; bigger messages are not read whole in the background
_QUEUE_LIMIT = 50_000  # messages waiting; beyond that the search-time backfill finds them
_BUSY_LAG = 0.0005  # seconds other callbacks took in one loop turn: sessions are busy
_BUSY_FACTOR = 9.0  # then sleep this many times the last slice's extraction time
# seconds of extraction between two yields: one message per loop turn fell behind a
# burst (a busy turn takes milliseconds), so the bodies in hand ran out and the rest were
# read back from the store afterwards at about five times the cost (bench/README.md)
_SLICE = 0.002
_MAX_BUFFERED = 2000  # extracted texts waiting for the index writer before extraction waits
_READ_AHEAD = 64  # messages whose facts and bodies are read in one store call each
_READ_AHEAD_BODY = 256 << 10  # bytes: bigger bodies are read one by one
_READ_AHEAD_BYTES = 4 << 20  # bytes of bodies read ahead at most
_FLUSH_GATHER = 0.05  # seconds texts gather before an index write
INDEX_IN_HAND = 256 << 10  # bytes: a delivered message this small may come in hand
_IN_HAND_BYTES = 4 << 20  # bytes of bodies in hand, waiting for their turn, at most

_WINDOW = 24  # extractions in flight at the extractor at most

Target = tuple[str, str, int]  # (account, mailbox, uid)
# An extraction elsewhere (a worker process): the index form of (bytes, facts tree) on its
# way, or None to extract in this process.  A future that fails means the same.
Extractor = Callable[[bytes, bytes], "asyncio.Future[str | None] | None"]
_InFlight = tuple[list[Target], list[int], "asyncio.Future[str | None]", tuple[bytes, MessageFacts]]

ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to"})


def body_texts(data: bytes, part: Part) -> list[str]:
    """Decoded text of every text/* part (HTML as text): what BODY compares against."""
    out: list[str] = []
    for p in part.walk():
        if p.is_multipart or p.type.lower() != "text":
            continue
        decoder = TransferDecoder(p.encoding)
        raw = decoder.feed(data[p.header_end : p.body_end]) + decoder.finish()
        text = decode_text(raw, p.param("charset"))  # never raises (idna, punycode…)
        out.append(html_to_text(text) if p.subtype.lower() == "html" else text)
    return out


def address_text(value: str) -> str:
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


def header_value(value: str) -> str:
    """``decode_header`` with a fast path: plain ASCII without encoded words is itself."""
    if value.isascii() and "=?" not in value and "\n" not in value:
        return value
    return decode_header(value)


def index_text_of(data: bytes, tree: Part) -> str:
    """What BODY/TEXT compare against (body text, decoded header values, the canonical
    form of address fields, the headers of the parts for TEXT), casefolded, so every
    evaluator match is a substring of it."""
    parts = part_headers(data, tree)
    section = data[tree.header_start : tree.header_end]
    if section.isascii() and b"=?" not in section and b"\\" not in section:
        # Each value is a substring of the raw section, and the index ignores white space
        # (needles are split on it): no need to parse the fields one by one.
        heads = [section.decode("ascii")]
        return "\n".join(["\n".join(body_texts(data, tree)), *heads, *parts]).casefold()
    heads = []
    for name, value in parse_fields(section):
        heads.append(header_value(value))
        if name in ADDRESS_FIELDS and "\\" in value:  # only quoted-pairs make it differ
            heads.append(address_text(value))
    return "\n".join(["\n".join(body_texts(data, tree)), *heads, *parts]).casefold()


# characters; from here on the word set pays: on the SpamAssassin ham (4 KB of text a
# message, headers included) building it costs 50 µs and saves 80 µs of FTS5 work, on
# 5 KB of English prose 75 and 130 µs (bench/README.md, "SMTP: the text index's word set")
_DEDUPE_FROM = 1024


def index_form(text: str) -> str:
    """The distinct words of ``text`` in first-seen order: the same trigram matches for
    whitespace-free needles, a fraction of the characters (see the module docstring)."""
    if len(text) < _DEDUPE_FROM:
        return text
    return " ".join(dict.fromkeys(text.split()))


def index_needles(needles: Iterable[str]) -> list[str]:
    """Casefolded whitespace-free pieces of the needles, to look up in the index."""
    return [piece for needle in needles for piece in needle.casefold().split()]


class _Pending:
    """The targets queued and not yet taken by a search, by account and mailbox: a
    mailbox deleted or renamed drops its own without a scan of every queued message."""

    def __init__(self) -> None:
        self._boxes: dict[str, dict[str, set[int]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, target: Target) -> bool:
        account, mailbox, uid = target
        return uid in self._boxes.get(account, {}).get(mailbox, ())

    def update(self, targets: Iterable[Target]) -> None:
        for account, mailbox, uid in targets:
            uids = self._boxes.setdefault(account, {}).setdefault(mailbox, set())
            if uid not in uids:
                uids.add(uid)
                self._count += 1

    def discard(self, target: Target) -> None:
        account, mailbox, uid = target
        boxes = self._boxes.get(account)
        uids = boxes.get(mailbox) if boxes is not None else None
        if boxes is None or uids is None or uid not in uids:
            return
        uids.remove(uid)
        self._count -= 1
        if not uids:
            del boxes[mailbox]
            if not boxes:
                del self._boxes[account]

    def difference_update(self, targets: Iterable[Target]) -> None:
        for target in targets:
            self.discard(target)

    def drop(self, account: str, inside: Callable[[str], bool]) -> set[Target]:
        """Take out the targets of the account's mailboxes that ``inside`` accepts."""
        boxes = self._boxes.get(account)
        if boxes is None:
            return set()
        gone: set[Target] = set()
        for mailbox in [name for name in boxes if inside(name)]:
            uids = boxes.pop(mailbox)
            self._count -= len(uids)
            gone.update((account, mailbox, uid) for uid in uids)
        if not boxes:
            del self._boxes[account]
        return gone


class TextIndexer:
    """Indexes newly stored messages off the acknowledgement path, in FIFO order."""

    def __init__(
        self, store: MailStore, limit: int = _QUEUE_LIMIT, extractor: Extractor | None = None
    ) -> None:
        self.store = store
        self.extractor = extractor  # messages in hand go there first (server/index_pool.py)
        self.limit = limit
        self.jobs: deque[tuple[Target, ...]] = deque()
        self.pending = _Pending()  # queued and not yet taken by a search
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None
        self._buffer: dict[tuple[str, str], dict[int, str]] = {}
        self._buffered = 0
        self._flusher: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        # read ahead for the next jobs (one store call per kind, not two per message)
        self._trees: dict[Target, Part] = {}
        self._bodies: dict[Target, bytes] = {}
        # bodies the delivery handed over (bounded in bytes), by the job's first target
        self._in_hand: dict[Target, tuple[bytes, MessageFacts]] = {}
        self._in_hand_bytes = 0
        # by account, bumped by forget(): an extraction that spans it may belong to a
        # mailbox now gone (what it would have written is left to the backfill)
        self._generation: dict[str, int] = {}
        self._wake: asyncio.Future[None] | None = None  # set by add() while _run waits

    def add(
        self, targets: Sequence[Target], body: tuple[bytes, MessageFacts] | None = None
    ) -> None:
        """Queue copies of one message (same bytes); over the bound they are dropped.

        ``body``: the message and its facts, when the caller has them in memory: no
        read-back (on PostgreSQL two round trips and the database's work per batch).
        """
        if not targets:
            return
        if len(self.pending) + len(targets) > self.limit:
            self.dropped += len(targets)  # found later by the search-time backfill
            return
        if body is not None and self._in_hand_bytes + len(body[0]) <= _IN_HAND_BYTES:
            self._in_hand[targets[0]] = body
            self._in_hand_bytes += len(body[0])
        self.jobs.append(tuple(targets))
        self.pending.update(targets)
        self._idle.clear()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)  # the runner waits for an answer: take this one too
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def claim(self, account: str, mailbox: str, uids: Iterable[int]) -> None:
        """A search scanned these messages itself: do not extract them again."""
        for uid in uids:
            self.pending.discard((account, mailbox, uid))

    def forget(self, account: str, mailbox: str) -> None:
        """The mailbox (and those below it) was deleted or renamed: drop what is queued
        or buffered for it.

        Its UIDs will name other messages if a mailbox of that name is made again
        (a new UIDVALIDITY, RFC 9051 §2.3.1.1), so a text queued for the old one must
        not be written under the new; messages of a renamed mailbox are found by the
        search-time backfill.
        """
        below = mailbox + "/"  # the store's hierarchy delimiter

        def inside(name: str) -> bool:
            return name == mailbox or name.startswith(below)

        self._generation[account] = self._generation.get(account, 0) + 1
        gone = self.pending.drop(account, inside)  # that account's queued mailboxes only
        for target in gone & self._in_hand.keys():
            self._in_hand_bytes -= len(self._in_hand.pop(target)[0])
        for cache in (self._trees, self._bodies):
            for target in gone & cache.keys():
                del cache[target]
        for key in [k for k in self._buffer if k[0] == account and inside(k[1])]:
            self._buffered -= len(self._buffer.pop(key))

    def write(self, account: str, mailbox: str, texts: dict[int, str]) -> None:
        """Queue an index write without waiting for it (best effort, batched)."""
        if not texts:
            return
        self._buffer.setdefault((account, mailbox), {}).update(texts)
        self._buffered += len(texts)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """One store write for everything buffered while the previous one ran, and for
        a moment before: each write is a transaction (on PostgreSQL a statement and a
        round trip), so a burst of deliveries makes few large writes, not one each."""
        try:
            await asyncio.sleep(_FLUSH_GATHER)
            while self._buffer:
                batch, self._buffer, self._buffered = self._buffer, {}, 0
                try:
                    await self.store.index_texts(batch)
                except Exception:  # best effort: unindexed mail is found by scanning
                    pass
        finally:
            self._flusher = None

    async def drain(self) -> None:
        """Wait until every queued message is indexed (or skipped) and written."""
        await self._idle.wait()
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds, so
        # one extraction measured 0 and the share below was not kept
        work = 0.0  # seconds of the loop's time since the last yield
        # extractions handed to the extractor, oldest first: several in flight, so its
        # worker is not idle while this loop waits for one answer
        window: deque[_InFlight] = deque()
        try:
            while self.jobs or window:
                started = time.perf_counter()
                if self.jobs and len(window) < _WINDOW:
                    job = self.jobs.popleft()
                    body = self._in_hand.pop(job[0], None)
                    if body is not None:
                        self._in_hand_bytes -= len(body[0])
                    targets = [t for t in job if t in self.pending]
                    self.pending.difference_update(job)
                    before = [self._generation.get(t[0], 0) for t in targets]
                    if targets and body is not None:
                        handed = self.extractor(body[0], body[1].tree) if self.extractor else None
                        if handed is not None:
                            window.append((targets, before, handed, body))
                            text = None
                        else:
                            text = self._from_hand(*body)
                    else:
                        text = await self._extract(targets) if targets else None
                elif not self.jobs and not window[0][2].done():
                    await self._answer_or_job(window[0][2])  # a stuck worker blocks no job
                    continue
                else:
                    targets, before, handed, body = window.popleft()
                    try:
                        text = await handed
                        started = time.perf_counter()
                    except Exception:  # the worker died or failed: extract it here
                        started = time.perf_counter()
                        text = self._from_hand(*body)
                if text is not None:
                    self._keep(targets, before, text)
                work += time.perf_counter() - started
                while self._buffered > _MAX_BUFFERED and self._flusher is not None:
                    await asyncio.shield(self._flusher)  # the writer sets the pace
                if work >= _SLICE or not (self.jobs or window):
                    await self._yield(work)
                    work = 0.0
        finally:
            for _, _, handed, _ in window:  # cancelled: nothing will await these
                if handed.done() and not handed.cancelled():
                    handed.exception()  # retrieved: no "never retrieved" warning
                handed.cancel()
            self.task = None
            self._idle.set()

    async def _answer_or_job(self, handed: asyncio.Future[str | None]) -> None:
        """Wait until ``handed`` is answered or a new job is queued, whichever is first."""
        wake = self._wake = asyncio.get_running_loop().create_future()

        def done(_: object) -> None:
            if not wake.done():
                wake.set_result(None)

        handed.add_done_callback(done)
        try:
            await wake
        finally:
            self._wake = None
            handed.remove_done_callback(done)

    def _keep(self, targets: Sequence[Target], before: Sequence[int], text: str) -> None:
        """Write ``text`` for the targets whose account forgot no mailbox since the job
        was taken (a mailbox gone meanwhile must not get it)."""
        for (account, mailbox, uid), generation in zip(targets, before, strict=True):
            if self._generation.get(account, 0) == generation:
                self.write(account, mailbox, {uid: text})

    @staticmethod
    async def _yield(work: float) -> None:
        """Let sessions run; while they keep the loop busy, take a small share of it.

        Acknowledgements come first: under an SMTP or APPEND burst the indexer uses at
        most about 1/(1+_BUSY_FACTOR) of the loop, in slices of about ``_SLICE``, which
        keeps up with the burst at the cost of a few messages' extraction each.
        """
        before = time.perf_counter()
        await asyncio.sleep(0)
        if time.perf_counter() - before > _BUSY_LAG:
            await asyncio.sleep(min(work * _BUSY_FACTOR, 0.05))

    @staticmethod
    def _from_hand(data: bytes, facts: MessageFacts) -> str | None:
        """The index form of a message the delivery handed over (a copy expunged
        meanwhile is harmless: the store writes texts of existing messages only)."""
        try:
            return indexable(data, load_tree(facts))
        except ValueError:
            return None

    async def _extract(self, targets: Sequence[Target]) -> str | None:
        """The index form of the first copy still there (None: leave it to the backfill)."""
        for target in targets:
            account, mailbox, uid = target
            try:
                if target not in self._trees:
                    await self._read_ahead(target)
                tree = self._trees.pop(target, None)
                data = self._bodies.pop(target, None)
                if tree is None:
                    continue  # expunged meanwhile, or facts not computed yet
                if tree.body_end > _MAX_INDEX_READ:
                    return None
                if data is None:
                    chunks = [c async for c in self.store.read_message(account, mailbox, uid)]
                    data = b"".join(chunks)
            except (StoreError, ValueError):
                continue
            return indexable(data, tree)
        return None

    async def _read_ahead(self, first: Target) -> None:
        """Facts and small bodies of ``first`` and the next queued messages of its mailbox,
        in one store call each: on PostgreSQL every call is a network round trip, and a
        burst of deliveries queues many messages of few mailboxes."""
        account, mailbox, _ = first
        uids = [first[2]]
        for job in self.jobs:
            if len(uids) >= _READ_AHEAD:
                break
            for target in job:
                if target[0] == account and target[1] == mailbox and target in self.pending:
                    uids.append(target[2])
                    break
        self._trees.clear()
        self._bodies.clear()
        facts = await self.store.fetch_facts(account, mailbox, uids)
        small, total = [], 0
        for uid, found in facts.items():
            tree = self._trees[(account, mailbox, uid)] = load_tree(found)
            size = tree.body_end
            if size <= _READ_AHEAD_BODY and total + size <= _READ_AHEAD_BYTES:
                small.append(uid)
                total += size
        if small:
            bodies = await self.store.read_inlines(account, mailbox, small)
            for uid, data in bodies.items():
                self._bodies[(account, mailbox, uid)] = data


def indexable(data: bytes, tree: Part) -> str | None:
    """The index form of a message in hand, None if too long to index."""
    text = index_text_of(data, tree)
    return index_form(text) if len(text) <= MAX_INDEXED else None


_INDEXERS: weakref.WeakKeyDictionary[MailStore, TextIndexer] = weakref.WeakKeyDictionary()


def indexer_for(store: MailStore) -> TextIndexer:
    """The one indexer of ``store`` in this process."""
    indexer = _INDEXERS.get(store)
    if indexer is None:
        indexer = _INDEXERS[store] = TextIndexer(store)
    return indexer


def index_delivered(
    store: MailStore, delivered: Delivered, body: tuple[bytes, MessageFacts] | None = None
) -> None:
    """Queue the messages a ``store.deliver`` call just committed (one blob, N copies);
    ``body``: the bytes and facts that call stored, when the caller holds them."""
    targets = [(t.account, t.mailbox, uid) for t, uid in delivered.uids]
    if targets:
        indexer_for(store).add(targets, body)
