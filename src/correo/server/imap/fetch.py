"""FETCH: turn fetch items into response bytes (RFC 9051 §6.4.5, §7.5.2; RFC 3516).

Metadata comes from the session's view, structure from the facts stored at delivery;
only body sections read message bytes, and only the byte range they need.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from correo.delivery.facts import facts_from_bytes, load_tree
from correo.imap.commands import FetchAtt
from correo.imap.responses import format_internal_date
from correo.message.imapfmt import TransferDecoder, header_fields, section
from correo.message.imapfmt import _resolve as resolve_part
from correo.message.structure import Part
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore, MessageFacts, StoreError

__all__ = ["FetchPlan", "render_message", "render_meta"]

_STRUCTURE_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE"})
_META_ITEMS = frozenset(
    {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "ENVELOPE", "BODYSTRUCTURE"}
)


def _whole(att: FetchAtt) -> bool:
    """BODY[] / BINARY[]: the whole message, which needs no part tree."""
    sec = att.section
    return sec is not None and not sec.part and not sec.text


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
    names: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, items: Sequence[FetchAtt], *, uid_command: bool, condstore: bool) -> FetchPlan:
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
            names=names,
        )
        return plan


async def ensure_facts(
    store: MailStore, view: MailboxView, uids: Sequence[int]
) -> dict[int, MessageFacts]:
    """Stored facts, computing (and saving) them for messages stored without."""
    facts = await store.fetch_facts(view.account, view.name, uids)
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


def _literal(data: bytes, binary: bool = False) -> bytes:
    # RFC 3516 §4.3: literal8 only when the decoded data holds NUL
    lead = b"~{" if binary and b"\x00" in data else b"{"
    return lead + b"%d}\r\n" % len(data) + data


async def _section_bytes(
    store: MailStore, view: MailboxView, uid: int, tree: Part, att: FetchAtt
) -> bytes | None:
    sec = att.section
    assert sec is not None
    spec_parts = ".".join(map(str, sec.part))
    text = sec.text or ""
    spec = f"{spec_parts}.{text}" if spec_parts and text else spec_parts or text
    base = spec
    if text.startswith("HEADER.FIELDS"):
        base = f"{spec_parts}.HEADER" if spec_parts else "HEADER"
    rng = section(tree, base)
    if rng is None:
        return None
    data = await read_range(store, view, uid, rng[0], rng[1])
    if text.startswith("HEADER.FIELDS"):
        data = header_fields(data, sec.fields, text.endswith(".NOT"))
    return data


async def _binary_bytes(
    store: MailStore, view: MailboxView, uid: int, tree: Part, att: FetchAtt
) -> bytes | None:
    """BINARY[part]: the part's content with its transfer encoding undone (RFC 3516)."""
    sec = att.section
    assert sec is not None
    if not sec.part:
        return await read_range(store, view, uid, tree.header_start, tree.body_end)
    found = resolve_part(tree, list(sec.part))
    if found is None:
        return None
    part, _ = found
    if part.is_multipart:
        return None
    raw = await read_range(store, view, uid, part.header_end, part.body_end)
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
        return b"INTERNALDATE " + format_internal_date(info.internal_date)
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
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"


async def render_message(
    store: MailStore,
    view: MailboxView,
    uid: int,
    plan: FetchPlan,
    facts: MessageFacts | None,
) -> AsyncIterator[bytes]:
    """Yield the pieces of one ``* n FETCH (...)`` response."""
    info = view.info[uid]
    seq = view.seq(uid)
    tree: Part | None = load_tree(facts) if facts is not None and plan.needs_tree else None
    parts: list[bytes] = []
    if plan.uid_command and "UID" not in plan.names:
        parts.append(b"UID %d" % uid)  # RFC 9051 §6.4.9: UID FETCH always returns UID
    for att in plan.items:
        name = att.name
        item = _meta_item(view, uid, att, facts)
        if item is not None:
            parts.append(item)
        elif name == "RFC822":
            data = await read_range(store, view, uid, 0, None)
            parts.append(b"RFC822 " + _literal(data))
        elif name == "RFC822.HEADER" and tree is not None:
            data = await read_range(store, view, uid, tree.header_start, tree.header_end)
            parts.append(b"RFC822.HEADER " + _literal(data))
        elif name == "RFC822.TEXT" and tree is not None:
            data = await read_range(store, view, uid, tree.header_end, tree.body_end)
            parts.append(b"RFC822.TEXT " + _literal(data))
        elif name == "BODY" and att.section is not None and (tree is not None or _whole(att)):
            if tree is None:
                body: bytes | None = await read_range(store, view, uid, 0, None)
            else:
                body = await _section_bytes(store, view, uid, tree, att)
            label = att.response_name()
            if body is None:
                parts.append(label + b" {0}\r\n")  # RFC 9051 §6.4.5: a missing section is empty
            else:
                parts.append(label + b" " + _literal(_partial(body, att.partial)))
        elif name in ("BINARY", "BINARY.SIZE") and att.section is not None and tree is not None:
            body = await _binary_bytes(store, view, uid, tree, att)
            if body is None:
                body = b""
            if name == "BINARY.SIZE":
                parts.append(
                    b"BINARY.SIZE[%s] %d"
                    % (".".join(map(str, att.section.part)).encode(), len(body))
                )
            else:
                parts.append(
                    att.response_name() + b" " + _literal(_partial(body, att.partial), True)
                )
    if plan.condstore and "MODSEQ" not in plan.names:
        parts.append(b"MODSEQ (%d)" % info.modseq)  # RFC 7162 §3.1.4.1
    yield b"* %d FETCH (" % (seq or 0) + b" ".join(parts) + b")\r\n"
