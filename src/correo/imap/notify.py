"""The NOTIFY command (RFC 5465 §3.1, grammar §8).

``NOTIFY NONE`` or ``NOTIFY SET [STATUS] (filter events) ...``.  Event names are kept
in their registered spelling; whether the server supports each one is the session's
answer (``NO [BADEVENT]``, RFC 5465 §3.1), not a syntax error.  The composition rules
of §5 are syntax: a violation is BAD.
"""

from __future__ import annotations

from dataclasses import dataclass

from correo.imap.commands import FetchAtt, ParseOptions, decode_mailbox, fetch_att_list
from correo.imap.errors import ParseError
from correo.imap.reader import Reader

__all__ = ["EVENTS", "FILTERS", "MAX_NAMES", "EventGroup", "Notify", "parse_notify"]

#: RFC 5465 §8 event names, by upper-cased spelling.
EVENTS = {
    name.upper(): name
    for name in (
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "AnnotationChange",
        "MailboxName",
        "SubscriptionChange",
        "MailboxMetadataChange",
        "ServerMetadataChange",
    )
}
FILTERS = frozenset(
    {"SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"}
)
#: Mailbox names (and event groups) one NOTIFY may list: every change of the account is
#: matched against them, so more is refused (RFC 5465 §3.1 NOTIFICATIONOVERFLOW).
MAX_NAMES = 100


@dataclass(frozen=True, slots=True)
class EventGroup:
    """One ``(filter events)``; ``events`` empty for NONE."""

    filter: str  # upper-cased, one of FILTERS
    events: tuple[str, ...] = ()
    mailboxes: tuple[str, ...] = ()  # SUBTREE / MAILBOXES
    fetch: tuple[FetchAtt, ...] = ()  # MessageNew (fetch-att ...), selected mailbox


@dataclass(frozen=True, slots=True)
class Notify:
    """``groups`` None for NOTIFY NONE."""

    groups: tuple[EventGroup, ...] | None
    status: bool = False


def _events(r: Reader) -> tuple[tuple[str, ...], tuple[FetchAtt, ...]]:
    if r.peek_keyword(b"NONE"):
        r.keyword()
        return (), ()
    r.open_paren()
    events: list[str] = []
    fetch: tuple[FetchAtt, ...] = ()
    while True:
        word = r.keyword()
        name = EVENTS.get(word, word)  # an unknown event-ext atom is kept for BADEVENT
        if name in events:
            raise ParseError(f"event {name} given twice")
        events.append(name)
        if name == "MessageNew" and r.peek_is(b" ("):
            r.sp()
            fetch = fetch_att_list(r)  # RFC 5465 §8 message-event
        if not r.take(b" "):
            break
    r.close_paren()
    new, gone = "MessageNew" in events, "MessageExpunge" in events
    if new != gone:
        raise ParseError("MessageNew and MessageExpunge go together")  # RFC 5465 §5
    if {"FlagChange", "AnnotationChange"} & set(events) and not new:
        raise ParseError("FlagChange needs MessageNew and MessageExpunge")  # RFC 5465 §5
    return tuple(events), fetch


def _mailboxes(r: Reader, o: ParseOptions) -> tuple[str, ...]:
    if r.peek() != 0x28:
        return (decode_mailbox(r.astring(), o.utf8),)
    r.open_paren()  # RFC 5465 §8 many-mailboxes = "(" mailbox *(SP mailbox) ")"
    names = [decode_mailbox(r.astring(), o.utf8)]
    while r.take(b" "):
        names.append(decode_mailbox(r.astring(), o.utf8))
        if len(names) > MAX_NAMES:
            raise ParseError("too many mailbox names", "NOTIFICATIONOVERFLOW", "NO")
    r.close_paren()
    return tuple(names)


def parse_notify(r: Reader, o: ParseOptions) -> Notify:
    r.sp()
    mode = r.keyword()
    if mode == "NONE":
        r.end()
        return Notify(None)
    if mode != "SET":
        raise ParseError("expected SET or NONE")
    r.sp()
    status = False
    if r.peek_keyword(b"STATUS"):
        r.keyword()
        status = True
        r.sp()
    groups: list[EventGroup] = []
    selected = False
    names = 0
    while True:
        r.open_paren()
        kind = r.keyword()
        if kind not in FILTERS:
            raise ParseError(f"unknown mailbox filter {kind}")
        mailboxes: tuple[str, ...] = ()
        if kind in ("SUBTREE", "MAILBOXES"):
            r.sp()
            mailboxes = _mailboxes(r, o)
            names += len(mailboxes)
            if names > MAX_NAMES:
                raise ParseError("too many mailbox names", "NOTIFICATIONOVERFLOW", "NO")
        if kind.startswith("SELECTED"):
            if selected:
                raise ParseError("SELECTED given twice")  # RFC 5465 §6.1
            selected = True
        r.sp()
        events, fetch = _events(r)
        r.close_paren()
        groups.append(EventGroup(kind, events, mailboxes, fetch))
        if len(groups) > MAX_NAMES:
            raise ParseError("too many event groups", "NOTIFICATIONOVERFLOW", "NO")
        if not r.take(b" "):
            break
    r.end()
    return Notify(tuple(groups), status)
