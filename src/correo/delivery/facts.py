"""Message facts for IMAP, computed while a message streams into the store.

The SMTP, LMTP and IMAP APPEND paths feed every byte they spool into a
:class:`FactsBuilder`; when the message is complete its ENVELOPE, BODYSTRUCTURE, BODY
and part tree are ready to store beside it, so FETCH never parses a message again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from email.utils import parsedate_to_datetime

from correo.message.imapfmt import bodystructure, envelope
from correo.message.structure import Part, StructureBuilder
from correo.store.api import MessageFacts

__all__ = [
    "FactsBuilder",
    "facts_from_bytes",
    "facts_of",
    "finish_facts",
    "load_tree",
    "shift_facts",
    "shift_part",
    "tree_is_large",
    "tree_of",
]


class FactsBuilder:
    __slots__ = ("_builder",)

    def __init__(self) -> None:
        self._builder = StructureBuilder()

    def feed(self, data: bytes) -> None:
        self._builder.feed(data)

    @property
    def parts(self) -> int:
        return self._builder.parts

    @property
    def header_octets(self) -> int:
        return self._builder.header_octets

    def finish(self, inserted: tuple[int, int] | None = None) -> MessageFacts:
        """``inserted`` = (offset, length) of header bytes added to the spool afterwards."""
        part = self._builder.finish()
        if inserted is not None and inserted[1]:
            part = shift_part(part, *inserted)
        return facts_of(part)


# past these the facts are made in a worker thread: at 10-30 µs of CPU a part, a tree
# of 1,000 (the structure limit) would hold the event loop for 20-45 ms, and a 270 KB
# To: field about 30 ms
_INLINE_PARTS = 64
_INLINE_HEADERS = 32 * 1024


async def finish_facts(
    builder: FactsBuilder, inserted: tuple[int, int] | None = None
) -> MessageFacts:
    """``builder.finish(inserted)``, off the event loop when the tree is large."""
    if builder.parts <= _INLINE_PARTS and builder.header_octets <= _INLINE_HEADERS:
        return builder.finish(inserted)
    return await asyncio.to_thread(builder.finish, inserted)


def facts_of(part: Part) -> MessageFacts:
    sent: float | None = None
    date = part.envelope.date if part.envelope is not None else None
    if date:
        try:
            sent = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            sent = None  # RFC 9051 §6.4.4.2: an unparsable Date: matches no SENT* key
    return MessageFacts(
        envelope=envelope(part),
        bodystructure=bodystructure(part, True),
        body=bodystructure(part, False),
        tree=json.dumps(part.to_json(), separators=(",", ":")).encode(),
        sent_date=sent,
    )


def shift_part(part: Part, at: int, delta: int) -> Part:
    """The same tree after ``delta`` bytes were inserted at offset ``at`` (in the header)."""

    def move(offset: int) -> int:
        return offset + delta if offset >= at else offset

    return replace(
        part,
        header_start=move(part.header_start),
        header_end=move(part.header_end),
        body_end=move(part.body_end),
        children=tuple(shift_part(c, at, delta) for c in part.children),
        message=shift_part(part.message, at, delta) if part.message is not None else None,
    )


def shift_facts(facts: MessageFacts, at: int, delta: int) -> MessageFacts:
    """Facts of the message after ``delta`` header bytes were inserted at ``at``.

    ENVELOPE and BODYSTRUCTURE do not depend on offsets; only the part tree moves.
    """
    tree = shift_part(load_tree(facts), at, delta)
    return replace(facts, tree=json.dumps(tree.to_json(), separators=(",", ":")).encode())


def facts_from_bytes(data: bytes) -> MessageFacts:
    builder = FactsBuilder()
    builder.feed(data)
    return builder.finish()


def load_tree(facts: MessageFacts) -> Part:
    return Part.from_json(json.loads(facts.tree))


# Loading a stored tree costs 55-70 µs of CPU a KB of its JSON (measured here: 4.8 ms
# for 1,000 parts in 84 KB, 61 ms for the 10,000 parts in 880 KB that stores written
# before Limits.max_parts hold), so up to 64 KB (about 3.5 ms) is loaded on the loop.
_INLINE_TREE = 64 * 1024


def tree_is_large(facts: MessageFacts, inline: int = _INLINE_TREE) -> bool:
    """Is loading (and so walking) this tree too long for one turn of the event loop?"""
    return len(facts.tree) > inline


async def tree_of(facts: MessageFacts, inline: int = _INLINE_TREE) -> Part:
    """``load_tree(facts)``, in a worker thread when the tree's JSON is past ``inline``."""
    if len(facts.tree) <= inline:
        return load_tree(facts)
    return await asyncio.to_thread(load_tree, facts)
