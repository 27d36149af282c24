"""Message facts for IMAP, computed while a message streams into the store.

The SMTP, LMTP and IMAP APPEND paths feed every byte they spool into a
:class:`FactsBuilder`; when the message is complete its ENVELOPE, BODYSTRUCTURE, BODY
and part tree are ready to store beside it, so FETCH never parses a message again.
"""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime

from correo.message.imapfmt import bodystructure, envelope
from correo.message.structure import Part, StructureBuilder
from correo.store.api import MessageFacts

__all__ = ["FactsBuilder", "facts_from_bytes", "facts_of", "load_tree"]


class FactsBuilder:
    __slots__ = ("_builder",)

    def __init__(self) -> None:
        self._builder = StructureBuilder()

    def feed(self, data: bytes) -> None:
        self._builder.feed(data)

    def finish(self) -> MessageFacts:
        return facts_of(self._builder.finish())


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


def facts_from_bytes(data: bytes) -> MessageFacts:
    builder = FactsBuilder()
    builder.feed(data)
    return builder.finish()


def load_tree(facts: MessageFacts) -> Part:
    return Part.from_json(json.loads(facts.tree))
