"""FETCH: turn fetch items into response bytes (RFC 9051 §6.4.5, §7.5.2; RFC 3516).

Metadata comes from the session's view, structure from the facts stored at delivery;
only body sections read message bytes, and only the byte range they need.

Repeated FETCHes of a mailbox (every client start, every sync) are the hot path: the
immutable items of a message (INTERNALDATE, ENVELOPE, BODYSTRUCTURE, BODY) are kept as
ready response bytes in a :class:`WireCache` shared by every session of a store,
bounded in bytes, so a repeated ``FETCH 1:* (... ENVELOPE)`` reads nothing from the
store and formats nothing but sequence numbers and flags.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from correo.delivery.facts import facts_from_bytes, tree_of
from correo.imap.commands import FetchAtt
from correo.imap.responses import format_internal_date
from correo.message.imapfmt import TransferDecoder, header_fields, resolve_part, section
from correo.message.structure import Part
from correo.server.imap.bodies import read_one
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore, MessageFacts, MessageInfo, StoreError
from correo.store.perstore import PerStore

__all__ = [
    "FetchPlan",
    "Rendered",
    "WireCache",
    "ensure_facts",
    "expunged_meanwhile",
    "read_range",
    "render_message",
    "render_meta",
    "render_meta_batch",
    "render_whole",
    "wire_cache",
]

_STRUCTURE_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE"})
_META_ITEMS = frozenset(
    {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "ENVELOPE", "BODYSTRUCTURE"}
)


def _whole(att: FetchAtt) -> bool:
    """BODY[] / BINARY[]: the whole message, which needs no part tree."""
    sec = att.section
    return sec is not None and not sec.part and not sec.text


def _reads_body(att: FetchAtt) -> bool:
    """Whether the item needs message text beyond the header (or a part's MIME header)."""
    if att.name in ("RFC822", "RFC822.TEXT"):
        return True
    if att.name not in ("BODY", "BINARY", "BINARY.SIZE") or att.section is None:
        return False
    text = att.section.text or ""
    return not (text.startswith("HEADER") or text == "MIME")


@dataclass
class FetchPlan:
    """What a FETCH needs beyond the view: computed once per command."""

    items: tuple[FetchAtt, ...]
    uid_command: bool
    condstore: bool
    needs_facts: bool = False
    needs_tree: bool = False
    metadata_only: bool = False
    sets_seen: bool = False
    reads_bodies: bool = False  # beyond headers: worth reading whole bodies in groups
    names: frozenset[str] = field(default_factory=frozenset)
    #: Each item's label when every item is a whole-message literal (BODY[], RFC822)
    #: or view metadata, else None: :func:`render_whole` answers without the general
    #: machinery, once the body is in hand. None in the tuple marks a metadata item.
    whole_labels: tuple[bytes | None, ...] | None = None

    @classmethod
    def of(cls, items: Sequence[FetchAtt], *, uid_command: bool, condstore: bool) -> FetchPlan:
        """The plan for these items, shared: a client repeats the same few item lists.

        Keyed by the identity of the item tuple, which the parser shares between
        commands with the same item list (hashing the items costs more than the
        lookup); the plan holds the tuple, so its id is not reused while cached.
        """
        items = tuple(items)  # the same object when it is a tuple already
        key = (id(items), uid_command, condstore)
        plan = _PLANS.get(key)
        if plan is None or plan.items is not items:
            if len(_PLANS) >= _PLANS_KEPT:
                _PLANS.clear()
            plan = _PLANS[key] = cls._make(items, uid_command=uid_command, condstore=condstore)
        return plan

    @classmethod
    def _make(cls, items: Sequence[FetchAtt], *, uid_command: bool, condstore: bool) -> FetchPlan:
        names = frozenset(i.name for i in items)
        # The JSON part tree is only for sections; ENVELOPE/BODYSTRUCTURE are stored as
        # wire bytes and a whole-message read (BODY[], RFC822) needs no facts at all.
        tree = any(
            (i.section is not None and not (i.name == "BODY" and _whole(i)))
            or i.name in ("BINARY", "BINARY.SIZE", "RFC822.HEADER", "RFC822.TEXT")
            for i in items
        )
        needs = (
            tree
            or bool(names & _STRUCTURE_ITEMS)
            or any(i.name == "BODY" and i.section is None for i in items)
        )
        plan = cls(
            tuple(items),
            uid_command,
            condstore,
            needs_facts=needs,
            needs_tree=tree,
            metadata_only=all(i.name in _META_ITEMS for i in items),
            sets_seen=any(i.sets_seen for i in items),
            reads_bodies=any(_reads_body(i) for i in items),
            names=names,
            whole_labels=_whole_labels(items),
        )
        return plan


_VIEW_ITEMS = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})


def _whole_labels(items: Sequence[FetchAtt]) -> tuple[bytes | None, ...] | None:
    """The labels for :attr:`FetchPlan.whole_labels`, or None when some item needs more
    than the message's bytes and the view (a part, a header, structure, EMAILID…)."""
    labels: list[bytes | None] = []
    for att in items:
        if att.name in _VIEW_ITEMS:
            labels.append(None)
        elif (att.name == "BODY" and _whole(att)) or (att.name == "RFC822" and not att.partial):
            labels.append(att.response_name())
        else:
            return None
    return tuple(labels) if any(label is not None for label in labels) else None


_PLANS: dict[tuple[int, bool, bool], FetchPlan] = {}
_PLANS_KEPT = 256


async def ensure_facts(
    store: MailStore, view: MailboxView, uids: Sequence[int], *, tree: bool = True
) -> dict[int, MessageFacts]:
    """Stored facts, computing (and saving) them for messages stored without.

    ``tree=False``: the part tree may be left out (empty), for ENVELOPE/BODYSTRUCTURE only.
    """
    facts = await store.fetch_facts(view.account, view.name, uids, tree=tree)
    for uid in uids:
        if uid in facts:
            continue
        try:
            data = await read_range(store, view, uid, 0, None)
        except StoreError:
            continue
        computed = facts_from_bytes(data)
        facts[uid] = computed
        await store.save_facts(view.account, view.name, uid, computed)
    return facts


async def expunged_meanwhile(store: MailStore, view: MailboxView, uid: int) -> bool:
    """Whether another session expunged ``uid`` since this view was taken: its data is
    gone though its number stays until the EXPUNGE may be told (RFC 9051 §7.5.1)."""
    if uid in view.pending_expunge:
        return True
    changes = await store.changes_since(view.account, view.name, view.highestmodseq)
    return uid in changes.expunged


async def read_range(
    store: MailStore, view: MailboxView, uid: int, start: int, end: int | None
) -> bytes:
    chunks = [c async for c in store.read_message(view.account, view.name, uid, 65536, start, end)]
    return b"".join(chunks)


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    origin, count = partial
    return data[origin : origin + count]


def _clip(start: int, end: int, partial: tuple[int, int] | None) -> tuple[int, int]:
    """The bytes ``<origin.count>`` of the range ``start``..``end`` select (RFC 9051 §6.4.5)."""
    if partial is None:
        return start, end
    lo = min(start + partial[0], end)
    return lo, min(end, lo + partial[1])


def _literal_head(data: bytes, binary: bool = False) -> bytes:
    # RFC 3516 §4.3: literal8 only when the decoded data holds NUL
    lead = b"~{" if binary and b"\x00" in data else b"{"
    return lead + b"%d}\r\n" % len(data)


class _Source:
    """One message's bytes for the sections of one FETCH response.

    A small (inline) body is read once, in one indexed query, and sliced; a big one is
    read range by range through the store's stream, never whole.
    """

    __slots__ = ("checked", "data", "store", "uid", "view")

    def __init__(self, store: MailStore, view: MailboxView, uid: int) -> None:
        self.store = store
        self.view = view
        self.uid = uid
        self.data: bytes | None = None
        self.checked = False

    async def inline(self) -> bytes | None:
        """The whole message if it is small enough to be kept inline, else None."""
        if not self.checked:
            self.data = await read_one(self.store, self.view, self.uid)
            self.checked = True
        return self.data

    async def range(self, start: int, end: int | None) -> bytes:
        if not self.checked and end is not None and end - start <= _SMALL_RANGE:
            # a header or a small part: read just that, not the whole (inline) body
            return await read_range(self.store, self.view, self.uid, start, end)
        data = await self.inline()
        if data is None:
            return await read_range(self.store, self.view, self.uid, start, end)
        if start == 0 and (end is None or end >= len(data)):
            return data  # the whole message: no copy
        return data[start:end]


def _section_range(tree: Part, att: FetchAtt) -> tuple[int, int] | None:
    """The stored bytes BODY[section] is taken from (for HEADER.FIELDS: the header)."""
    sec = att.section
    assert sec is not None
    spec_parts = ".".join(map(str, sec.part))
    text = sec.text or ""
    if text.startswith("HEADER.FIELDS"):
        text = "HEADER"
    return section(tree, f"{spec_parts}.{text}" if spec_parts and text else spec_parts or text)


async def _section_bytes(src: _Source, tree: Part, att: FetchAtt) -> bytes | None:
    rng = _section_range(tree, att)
    if rng is None:
        return None
    data = await src.range(rng[0], rng[1])
    sec = att.section
    assert sec is not None
    text = sec.text or ""
    if text.startswith("HEADER.FIELDS"):
        data = header_fields(data, sec.fields, text.endswith(".NOT"))
    return data


class UnknownCte(Exception):
    """BINARY of a part whose transfer encoding correo cannot undo: RFC 3516 §4.3 wants
    the FETCH failed with NO [UNKNOWN-CTE]."""


_KNOWN_CTE = frozenset({"", "7bit", "8bit", "binary", "base64", "quoted-printable"})


def _check_cte(part: Part) -> None:
    if not part.is_multipart and (part.encoding or "").lower() not in _KNOWN_CTE:
        raise UnknownCte(part.encoding)


async def _binary_bytes(src: _Source, tree: Part, att: FetchAtt) -> bytes | None:
    """BINARY[part]: the part's content with its transfer encoding undone (RFC 3516)."""
    sec = att.section
    assert sec is not None
    if not sec.part:
        return await src.range(tree.header_start, tree.body_end)
    found = resolve_part(tree, list(sec.part))
    if found is None:
        return None
    part, _ = found
    _check_cte(part)
    raw = await src.range(part.header_end, part.body_end)
    if part.is_multipart:  # RFC 2045 §6.4: only an identity encoding; served as is (Dovecot)
        return raw
    decoder = TransferDecoder(part.encoding)
    return decoder.feed(raw) + decoder.finish()


def _meta_item(
    view: MailboxView, uid: int, att: FetchAtt, facts: MessageFacts | None
) -> bytes | None:
    """A metadata item's bytes, or None if ``att`` needs message data (or is unknown)."""
    info = view.info[uid]
    name = att.name
    if name == "UID":
        return b"UID %d" % uid
    if name == "FLAGS":
        return b"FLAGS " + view.flag_list(uid)
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + format_internal_date(info.internal_date, info.zone)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % info.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % info.modseq
    if facts is None:
        return None
    if name == "ENVELOPE":
        return b"ENVELOPE (" + facts.envelope + b")"
    if name == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE (" + facts.bodystructure + b")"
    if name == "BODY" and att.section is None:
        return b"BODY (" + facts.body + b")"
    return None


def render_meta(
    view: MailboxView, uid: int, seq: int, plan: FetchPlan, facts: MessageFacts | None
) -> bytes:
    """One ``* n FETCH`` response of metadata items only: no I/O, no part tree."""
    info = view.info[uid]
    parts: list[bytes] = []
    if plan.uid_command and "UID" not in plan.names:
        parts.append(b"UID %d" % uid)  # RFC 9051 §6.4.9: UID FETCH always returns UID
    for att in plan.items:
        item = _meta_item(view, uid, att, facts)
        if item is not None:
            parts.append(item)
    if plan.condstore and "MODSEQ" not in plan.names:
        parts.append(b"MODSEQ (%d)" % info.modseq)  # RFC 7162 §3.1.4.1
    return view.fetch_head(seq, uid) + b" ".join(parts) + b")\r\n"


# -- the metadata hot path: whole batches, cached immutable items ------------------------


class _Wire:
    """One message's immutable items as response bytes (``None``: not known yet)."""

    __slots__ = ("body", "bodystructure", "date", "envelope")

    def __init__(self) -> None:
        self.date: bytes | None = None
        self.envelope: bytes | None = None
        self.bodystructure: bytes | None = None
        self.body: bytes | None = None


_ENTRY_OVERHEAD = 200  # bytes of Python objects per cached message, beyond its items

BoxKey = tuple[str, str, int]  # account, mailbox, UIDVALIDITY


class WireCache:
    """Immutable FETCH items of recently fetched messages, shared by a store's sessions.

    A message's INTERNALDATE and structure never change while its mailbox keeps its
    UIDVALIDITY and the UID is not reused (RFC 9051 §2.3.1.1), and a store never gives one
    UIDVALIDITY to two mailboxes, so ``(account, mailbox, UIDVALIDITY, UID)`` names the
    content for good: no invalidation needed. Bounded in bytes: whole mailboxes are
    dropped least recently used first, then the oldest entries of a mailbox too big alone.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._boxes: OrderedDict[BoxKey, dict[int, _Wire]] = OrderedDict()
        self._sizes: dict[BoxKey, int] = {}

    def box(self, key: BoxKey) -> dict[int, _Wire]:
        """The mailbox's entries (created empty), marked most recently used."""
        box = self._boxes.get(key)
        if box is None:
            box = self._boxes[key] = {}
            self._sizes[key] = 0
        else:
            self._boxes.move_to_end(key)
        return box

    def grew(self, key: BoxKey, added: int) -> None:
        """Account ``added`` bytes to ``key``'s mailbox, then evict down to the bound."""
        if key not in self._boxes:
            return  # dropped while its entries were being filled: they are not kept
        self._sizes[key] += added
        self.size += added
        if self.size <= self.max_bytes:
            return
        for old in list(self._boxes):  # least recently used first
            if self.size <= self.max_bytes:
                return
            if old != key:
                del self._boxes[old]
                self.size -= self._sizes.pop(old)
        # one mailbox bigger than the bound: drop its oldest entries (insertion order)
        box = self._boxes[key]
        target = self.max_bytes * 3 // 4
        while box and self.size > target:
            freed = _wire_size(box.pop(next(iter(box))))
            self.size -= freed
            self._sizes[key] -= freed


def _wire_size(wire: _Wire) -> int:
    return _ENTRY_OVERHEAD + sum(
        len(b) for b in (wire.date, wire.envelope, wire.bodystructure, wire.body) if b
    )


#: The cache of a store's sessions (one per store object, dropped with it).
wire_cache: PerStore[WireCache] = PerStore(WireCache)


# Each metadata item is a format piece and a column of values for a whole batch, built
# with C-level map() calls: the per-message work is one ``fmt % row`` in map().
_PIECES: dict[str, bytes] = {
    "UID": b"UID %d",
    "FLAGS": b"FLAGS %b",
    "RFC822.SIZE": b"RFC822.SIZE %d",
    "MODSEQ": b"MODSEQ (%d)",
    "INTERNALDATE": b"%b",  # the cached item bytes carry their own names
    "ENVELOPE": b"%b",
    "BODYSTRUCTURE": b"%b",
    "BODY": b"%b",
}
_WIRE_FIELDS = {
    "INTERNALDATE": "date",
    "ENVELOPE": "envelope",
    "BODYSTRUCTURE": "bodystructure",
    "BODY": "body",
}
_INFO_FIELDS = {"RFC822.SIZE": attrgetter("size"), "MODSEQ": attrgetter("modseq")}
_DATE, _ENVELOPE = attrgetter("date"), attrgetter("envelope")


def _columns(plan: FetchPlan) -> tuple[bytes, tuple[str, ...]]:
    """The response format of a metadata-only plan and the item of each ``%``."""
    names: list[str] = []
    if plan.uid_command and "UID" not in plan.names:
        names.append("UID")  # RFC 9051 §6.4.9: UID FETCH always returns UID
    names += [a.name for a in plan.items]
    if plan.condstore and "MODSEQ" not in plan.names:
        names.append("MODSEQ")  # RFC 7162 §3.1.4.1
    fmt = b"* %d FETCH (" + b" ".join(_PIECES[n] for n in names) + b")\r\n"
    return fmt, tuple(names)


def _flag_column(view: MailboxView, uids: list[int], infos: list[MessageInfo]) -> list[bytes]:
    """FLAGS of each message, formatted once per distinct flag set (there are few)."""
    flags = list(map(attrgetter("flags"), infos))
    if not view.rev2 and max(uids) >= view.first_recent:
        # some carry \Recent (RFC 3501 §2.3.2): once per flag set and recency, since
        # right after a SELECT that claimed them every message of a mailbox may be recent
        # (no ranges claimed by other sessions: one comparison a message, in C)
        recency = (
            map(view.first_recent.__le__, uids)
            if not view.others_recent
            else map(view.is_recent, uids)
        )
        keys = list(zip(flags, recency, strict=True))
        recent = {k: view.flag_list(u) for k, u in dict(zip(keys, uids, strict=True)).items()}
        return list(map(recent.__getitem__, keys))
    memo = {f: view.flag_list(u) for f, u in dict(zip(flags, uids, strict=True)).items()}
    return list(map(memo.__getitem__, flags))


async def render_meta_batch(
    store: MailStore, view: MailboxView, uids: Sequence[int], plan: FetchPlan
) -> tuple[bytes, list[int]]:
    """The ``* n FETCH`` responses of a metadata-only plan for ``uids``, as one buffer,
    and the UIDs left out because their structure could not be read (expunged).

    Structure items come from the shared :class:`WireCache`; only messages missing
    there are read from the store (one batched query, without the part tree).
    """
    all_uids = view.uids
    infos_by_uid = view.info
    batch = [u for u in uids if u in infos_by_uid]
    if not batch:
        return b"", []
    fmt, names = _columns(plan)
    wire_names = [n for n in names if n in _WIRE_FIELDS]
    wires: list[_Wire] = []
    if wire_names:
        wires = await _wires(store, view, batch, "INTERNALDATE" in wire_names, plan.needs_facts)
        if plan.needs_facts and None in map(_ENVELOPE, wires):
            # expunged meanwhile, facts gone: those messages are left out, not half told
            out, lost = [], []
            for uid, wire in zip(batch, wires, strict=True):
                seq = view.seq(uid)
                facts = _facts_of(wire)
                if facts is None:
                    lost.append(uid)
                elif seq is not None:
                    out.append(render_meta(view, uid, seq, plan, facts))
            return b"".join(out), lost
    infos = list(map(infos_by_uid.__getitem__, batch))
    first = bisect.bisect_left(all_uids, batch[0])
    seqs: Sequence[int]
    if all_uids[first : first + len(batch)] == batch:  # a run of the mailbox: 1:*, n:m
        seqs = range(first + 1, first + len(batch) + 1)
    else:
        seqs = [bisect.bisect_left(all_uids, u) + 1 for u in batch]
    if view.uidonly:  # RFC 9586 §3.3: "* uid UIDFETCH (...)"
        fmt = fmt.replace(b" FETCH (", b" UIDFETCH (", 1)
        seqs = batch
    columns: list[Sequence[object]] = [seqs]
    flags: list[bytes] | None = None
    for name in names:
        if name == "UID":
            columns.append(batch)
        elif name == "FLAGS":
            if flags is None:
                flags = _flag_column(view, batch, infos)
            columns.append(flags)
        elif name in _INFO_FIELDS:
            columns.append(list(map(_INFO_FIELDS[name], infos)))
        else:
            columns.append(list(map(attrgetter(_WIRE_FIELDS[name]), wires)))
    return b"".join(map(fmt.__mod__, zip(*columns, strict=True))), []


def _facts_of(wire: _Wire) -> MessageFacts | None:
    if wire.envelope is None or wire.bodystructure is None or wire.body is None:
        return None
    return MessageFacts(
        wire.envelope[len(b"ENVELOPE (") : -1],
        wire.bodystructure[len(b"BODYSTRUCTURE (") : -1],
        wire.body[len(b"BODY (") : -1],
        b"",
    )


async def _wires(
    store: MailStore, view: MailboxView, uids: list[int], date: bool, structure: bool
) -> list[_Wire]:
    """The cached items of ``uids`` (all present in the view), filling what is missing."""
    cache = wire_cache(store)
    key = (view.account, view.name, view.uidvalidity)
    box = cache.box(key)
    infos = view.info
    wires = list(map(box.get, uids))
    added = 0
    missing: list[tuple[int, _Wire]] = []
    if (
        None in wires
        or (date and None in map(_DATE, wires))  # map, not a generator: 10,000 in C
        or (structure and None in map(_ENVELOPE, wires))
    ):
        for i, uid in enumerate(uids):
            wire = wires[i]
            if wire is None:
                wire = wires[i] = box[uid] = _Wire()
                added += _ENTRY_OVERHEAD
            if date and wire.date is None:
                info = infos[uid]
                wire.date = b"INTERNALDATE " + format_internal_date(info.internal_date, info.zone)
                added += len(wire.date)
            if structure and wire.envelope is None:
                missing.append((uid, wire))
    if missing:
        facts = await ensure_facts(store, view, [uid for uid, _ in missing], tree=False)
        for uid, wire in missing:
            found = facts.get(uid)
            if found is None:
                continue  # expunged meanwhile: the caller leaves its structure out
            wire.envelope = b"ENVELOPE (" + found.envelope + b")"
            wire.bodystructure = b"BODYSTRUCTURE (" + found.bodystructure + b")"
            wire.body = b"BODY (" + found.body + b")"
            added += len(wire.envelope) + len(wire.bodystructure) + len(wire.body)
    if added:
        cache.grew(key, added)
    return wires  # type: ignore[return-value]  # every None was replaced above


@dataclass(slots=True)
class Rendered:
    """One ``* n FETCH (...)`` response: its pieces, and the streams some of them stand for.

    Literal data is its own piece, never concatenated: the socket write takes the list
    as it is (a 50 KB body is not copied on the way). ``streams`` maps the index of an
    empty placeholder piece to the chunks that go in its place, read as they are sent.
    """

    pieces: list[bytes]
    streams: dict[int, AsyncIterator[bytes]] | None = None


async def render_message(
    store: MailStore,
    view: MailboxView,
    uid: int,
    plan: FetchPlan,
    facts: MessageFacts | None,
    extras: Sequence[bytes] = (),
    whole: bytes | None = None,
) -> Rendered:
    """The response for one message: one await for a whole response (a message read
    at most once), the big literals left as streams for the caller to send.

    ``whole``: the message, read already (:func:`~correo.server.imap.bodies.prefetch`).
    """
    info = view.info[uid]
    seq = view.seq(uid)
    tree: Part | None = await tree_of(facts) if facts is not None and plan.needs_tree else None
    src = _Source(store, view, uid)
    if whole is not None:
        src.data, src.checked = whole, True
    small: list[bytes] = []  # items since the last literal, joined with spaces
    pieces: list[bytes] = []  # finished pieces (text and literal data)
    streams: dict[int, AsyncIterator[bytes]] = {}  # index in pieces -> chunks to send there

    def literal(label: bytes, data: bytes, binary: bool = False) -> None:
        small.append(label + b" " + _literal_head(data, binary))
        pieces.append(b" ".join(small))
        pieces.append(data)
        small.clear()
        small.append(b"")  # the next item follows the literal after a space

    async def big(att: FetchAtt, start: int, end: int) -> bool:
        """Stream a large range of a file-backed message as a literal; False if small."""
        lo, hi = _clip(start, end, att.partial)
        if hi - lo < _STREAM_MIN or await src.inline() is not None:
            return False
        chunks = store.read_message(view.account, view.name, uid, 65536, lo, hi)
        stream(att.response_name() + b" {%d}\r\n" % (hi - lo), chunks)
        return True

    def stream(label_and_head: bytes, chunks: AsyncIterator[bytes]) -> None:
        small.append(label_and_head)
        pieces.append(b" ".join(small))
        small.clear()
        small.append(b"")
        streams[len(pieces)] = chunks
        pieces.append(b"")  # the chunks go here

    async def big_binary(att: FetchAtt, tree: Part) -> bool:
        """BINARY[part] of a large file-backed part: decoded twice, never held whole.

        The literal's length (and whether it needs literal8) is only known after
        decoding, so a first pass counts and a second one sends (RFC 3516 §4.2).
        """
        sec = att.section
        assert sec is not None
        found = resolve_part(tree, list(sec.part)) if sec.part else None
        if found is None or found[0].is_multipart:
            return False
        part = found[0]
        _check_cte(part)
        if part.body_end - part.header_end < _STREAM_MIN or await src.inline() is not None:
            return False
        size, nul = 0, False
        async for piece in _decoded(store, view, uid, part, 0, None):
            size += len(piece)
            nul = nul or b"\x00" in piece
        if att.name == "BINARY.SIZE":
            small.append(b"BINARY.SIZE[%s] %d" % (".".join(map(str, sec.part)).encode(), size))
            return True
        lo, hi = _clip(0, size, att.partial)
        head = b"%s%s{%d}\r\n" % (att.response_name(), b" ~" if nul else b" ", hi - lo)
        stream(head, _decoded(store, view, uid, part, lo, hi))
        return True

    if plan.uid_command and "UID" not in plan.names:
        small.append(b"UID %d" % uid)  # RFC 9051 §6.4.9: UID FETCH always returns UID
    for att in plan.items:
        name = att.name
        item = _meta_item(view, uid, att, facts)
        if item is not None:
            small.append(item)
        elif name == "RFC822":
            if not await big(att, 0, info.size):
                literal(b"RFC822", await src.range(0, None))
        elif name == "RFC822.HEADER" and tree is not None:
            literal(b"RFC822.HEADER", await src.range(tree.header_start, tree.header_end))
        elif name == "RFC822.TEXT" and tree is not None:
            if not await big(att, tree.header_end, tree.body_end):
                literal(b"RFC822.TEXT", await src.range(tree.header_end, tree.body_end))
        elif name == "BODY" and att.section is not None and (tree is not None or _whole(att)):
            if _whole(att) or tree is None:
                rng: tuple[int, int] | None = (0, info.size)
            elif not (att.section.text or "").startswith("HEADER.FIELDS"):
                rng = _section_range(tree, att)  # sent as stored: may stream
            else:
                rng = None
            if rng is not None and await big(att, *rng):
                continue
            if tree is None:
                body: bytes | None = await src.range(0, None)
            else:
                body = await _section_bytes(src, tree, att)
            # RFC 9051 §6.4.5: a missing section is empty
            literal(att.response_name(), b"" if body is None else _partial(body, att.partial))
        elif name in ("BINARY", "BINARY.SIZE") and att.section is not None and tree is not None:
            if await big_binary(att, tree):
                continue
            body = await _binary_bytes(src, tree, att)
            if body is None:
                body = b""
            if name == "BINARY.SIZE":
                small.append(
                    b"BINARY.SIZE[%s] %d"
                    % (".".join(map(str, att.section.part)).encode(), len(body))
                )
            else:
                literal(att.response_name(), _partial(body, att.partial), True)
    small.extend(extras)  # items computed by the caller (EMAILID, PREVIEW…)
    if plan.condstore and "MODSEQ" not in plan.names:
        small.append(b"MODSEQ (%d)" % info.modseq)  # RFC 7162 §3.1.4.1
    head = view.fetch_head(seq or 0, uid)
    if not pieces:
        return Rendered([head + b" ".join(small) + b")\r\n"])
    pieces[0] = head + pieces[0]
    pieces.append(b" ".join(small) + b")\r\n")
    return Rendered(pieces, streams or None)


def render_whole(view: MailboxView, uid: int, plan: FetchPlan, data: bytes) -> list[bytes]:
    """The response pieces for one message of a :attr:`FetchPlan.whole_labels` plan,
    its bytes ``data`` in hand: what :func:`render_message` sends for the same items,
    without its per-call set-up (no I/O, no part tree; the body is not copied).
    """
    labels = plan.whole_labels
    assert labels is not None
    small: list[bytes] = []
    if plan.uid_command and "UID" not in plan.names:
        small.append(b"UID %d" % uid)  # RFC 9051 §6.4.9: UID FETCH always returns UID
    pieces: list[bytes] = []
    for att, label in zip(plan.items, labels, strict=True):
        if label is None:
            item = _meta_item(view, uid, att, None)
            assert item is not None
            small.append(item)
            continue
        body = _partial(data, att.partial)  # RFC 9051 §6.4.5 <origin.count>
        small.append(label + b" {%d}\r\n" % len(body))
        pieces.append(b" ".join(small))
        pieces.append(body)
        small = [b""]  # the next item follows the literal after a space
    if plan.condstore and "MODSEQ" not in plan.names:
        small.append(b"MODSEQ (%d)" % view.info[uid].modseq)  # RFC 7162 §3.1.4.1
    pieces[0] = view.fetch_head(view.seq(uid) or 0, uid) + pieces[0]
    pieces.append(b" ".join(small) + b")\r\n")
    return pieces


_SMALL_RANGE = 16 << 10  # sections up to this size are read alone, not via the whole body
_STREAM_MIN = 1 << 20  # literals from file-backed bodies at least this big are streamed


async def _decoded(
    store: MailStore, view: MailboxView, uid: int, part: Part, lo: int, hi: int | None
) -> AsyncIterator[bytes]:
    """Bytes ``lo``..``hi`` of a part's decoded content, decoded as it is read."""
    decoder = TransferDecoder(part.encoding)
    pos = 0
    chunks = store.read_message(view.account, view.name, uid, 65536, part.header_end, part.body_end)
    done = False
    try:
        while not done:
            raw = await anext(chunks, None)
            if raw is None:
                out, done = decoder.finish(), True
            else:
                out = decoder.feed(raw)
            start, pos = pos, pos + len(out)
            if pos <= lo or not out:
                continue
            piece = out[max(lo - start, 0) : None if hi is None else max(hi - start, 0)]
            if piece:
                yield piece
            if hi is not None and pos >= hi:
                break
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()  # the blob file, at once rather than when collected
