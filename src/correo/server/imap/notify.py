"""NOTIFY (RFC 5465): what changes in the account reaches the client unasked.

``NOTIFY SET`` keeps, per session, which mailboxes the client watches (SELECTED,
SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES) for which events
(MessageNew, MessageExpunge, FlagChange, MailboxName, SubscriptionChange).  Between
commands, and during IDLE, the session waits on the store's account feed
(:meth:`~correo.store.api.MailStore.wait_for_account`) instead of polling: a commit
anywhere in the account wakes it, and it then compares what it last told the client
with the store and sends the difference —

* the selected mailbox: EXISTS, EXPUNGE (SELECTED only; SELECTED-DELAYED keeps them for
  the next command, §6.1) and FETCH, followed by the MessageNew fetch items (§5.2);
* other mailboxes: STATUS (MESSAGES, UIDNEXT, UNSEEN; UIDVALIDITY when it changed;
  HIGHESTMODSEQ with FlagChange or CONDSTORE, §5.1-§5.3);
* names: LIST, ``\\NonExistent`` for a deleted one, OLDNAME for a rename (§5.4);
  subscriptions: LIST with or without ``\\Subscribed`` (§5.5).

Other accounts' mailboxes shared with the user (RFC 4314, "Other Users/…") are
watched when a MAILBOXES, SUBTREE or SUBSCRIBED group names them and the user holds
``r`` there (read again at every look, so a right taken away ends the events); their
owners' account feeds wake the session too.  PERSONAL and INBOXES stay the user's own
(§6.2, §6.3), and MailboxName events are the user's own mailboxes' only.

Writers in other processes (the CLI) are not announced by the feed: every
:data:`RESCAN` seconds the session looks at all it watches anyway.  Changes this
session made itself are absorbed silently (§5: the server SHOULD omit them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from correo.imap import commands as c
from correo.imap.notify import EventGroup, Notify
from correo.imap.responses import Raw, list_response, mailbox_name, status_response, tagged
from correo.server.imap.acl import OTHER_USERS
from correo.server.imap.fetch import FetchPlan, ensure_facts, render_message
from correo.server.imap.names import DELIMITER, normalize
from correo.server.imap.streams import send_streams
from correo.store.api import MailboxError, MailboxStatus, StoreError

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["RESCAN", "NotifyState", "absorb", "cmd_notify", "deliver", "notify_read", "wait"]

SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
_MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})
#: Seconds between looks at everything watched, for writers the feed does not announce.
RESCAN = 30.0
#: Commands whose effects on other mailboxes this session need not be told about.
_OWN = (c.Append, c.Copy, c.Move, c.Create, c.Delete, c.Rename, c.Subscribe, c.Unsubscribe)


@dataclass(frozen=True, slots=True)
class _Status:
    uidvalidity: int
    messages: int
    uidnext: int
    unseen: int
    highestmodseq: int

    @classmethod
    def of(cls, st: MailboxStatus) -> _Status:
        return cls(st.uidvalidity, st.messages, st.uidnext, st.unseen, st.highestmodseq)


@dataclass
class NotifyState:
    """One session's NOTIFY SET and what it last told the client."""

    groups: tuple[EventGroup, ...]
    selected: frozenset[str] = frozenset()  # events of the selected mailbox
    immediate: bool = False  # SELECTED: expunges at any time; SELECTED-DELAYED: not
    fetch: tuple[c.FetchAtt, ...] = ()  # MessageNew (fetch-att ...) for the selected one
    counter: int = -1  # store.account_counter() at the last look
    looked_at: float = 0.0
    names: dict[str, int] = field(default_factory=dict)  # mailbox -> UIDVALIDITY
    subscribed: set[str] = field(default_factory=set)
    known: dict[str, _Status] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # per mailbox change_counter
    owners: dict[str, int] = field(default_factory=dict)  # shared: owner -> account_counter

    @classmethod
    def of(cls, cmd: Notify) -> NotifyState:
        groups = cmd.groups or ()
        state = cls(tuple(g for g in groups if not g.filter.startswith("SELECTED")))
        for g in groups:
            if g.filter.startswith("SELECTED"):
                state.selected = frozenset(g.events)
                state.immediate = g.filter == "SELECTED"
                state.fetch = g.fetch
        return state

    def wants(self, event: str) -> bool:
        return any(event in g.events for g in self.groups)

    def events_for(self, name: str) -> set[str]:
        """Every event some group asks for about mailbox ``name`` (RFC 5465 §6)."""
        out: set[str] = set()
        for g in self.groups:
            if g.events and _matches(g, name, self.subscribed):
                out.update(g.events)
        return out


def _matches(group: EventGroup, name: str, subscribed: set[str]) -> bool:
    match group.filter:
        case "PERSONAL" | "INBOXES":  # §6.3: INBOXES may be treated as PERSONAL
            return not name.startswith(OTHER_USERS)  # §6.2: the personal namespace
        case "SUBSCRIBED":  # §6.4
            return name in subscribed
        case "MAILBOXES":  # §6.6: exact names, no wildcards
            return name in group.mailboxes
        case "SUBTREE":  # §6.5: the mailbox and everything below it
            return any(name == m or name.startswith(m + DELIMITER) for m in group.mailboxes)
    return False


async def cmd_notify(session: ImapSession, tag: str, cmd: Notify) -> None:
    """RFC 5465 §3.1: replace the watched events (NONE: none), then an implicit NOOP."""
    if cmd.groups is None:
        session.notify = None
        await session._updates()
        session.write(tagged(tag, "OK", "NOTIFY completed"))
        return
    asked = {e for g in cmd.groups for e in g.events}
    if not asked <= set(SUPPORTED):
        # §3.1: NO (not BAD), listing every event the server supports
        code = "BADEVENT (" + " ".join(SUPPORTED) + ")"
        session.write(tagged(tag, "NO", "Unsupported NOTIFY event", code))
        return
    state = NotifyState.of(cmd)
    state.groups = tuple(
        EventGroup(g.filter, g.events, tuple(normalize(m) for m in g.mailboxes), g.fetch)
        for g in state.groups
    )
    session.notify = state
    await _look(session, state, speak=False, full=True)
    if cmd.status:  # §3.1: STATUS of every watched mailbox before the tagged OK
        for name, st in state.known.items():
            if session.view is not None and session.view.name == name:
                continue
            items = {"MESSAGES": st.messages, "UIDNEXT": st.uidnext}
            items |= {"UIDVALIDITY": st.uidvalidity, "UNSEEN": st.unseen}
            if "FlagChange" in state.events_for(name) or session.core.condstore:
                items["HIGHESTMODSEQ"] = st.highestmodseq
            session.write(status_response(name, items, session.core.utf8))
    await session._updates()  # §3.1: a NOTIFY SET implies NOOP
    session.write(tagged(tag, "OK", "NOTIFY completed"))


async def notify_read(session: ImapSession, timeout: float) -> bytes:
    """The client's next octets; meanwhile, what changed goes out as it happens."""
    read = asyncio.ensure_future(session.conn.read(timeout))
    try:
        while True:
            state = session.notify
            if state is not None and session.core.between_commands and not session.in_transaction:
                await deliver(session)
                await session.conn.flush(session.write_timeout)
            state = session.notify
            if state is None:
                return await read
            waiter = wait(session)
            both: set[asyncio.Future[Any]] = {read, waiter}
            done, _ = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if read in done:
                waiter.cancel()
                return read.result()
    finally:
        if not read.done():
            read.cancel()


def wait(session: ImapSession) -> asyncio.Future[bool]:
    """A future done when the watched account, or the owner of a watched shared
    mailbox, changes (IDLE waits on it too, §4)."""
    state = session.notify
    assert state is not None and session.user is not None
    store = session.ctx.store
    own = store.wait_for_account(session.user, state.counter, RESCAN)
    if not state.owners:
        return asyncio.ensure_future(own)
    waits = [own] + [store.wait_for_account(o, n, RESCAN) for o, n in state.owners.items()]

    async def any_of() -> bool:
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return any(t.result() for t in done)
        finally:
            for t in tasks:
                t.cancel()

    return asyncio.ensure_future(any_of())


async def deliver(session: ImapSession) -> None:
    """Send what changed since the last look (nothing if the feed did not move and the
    last full look is recent)."""
    state = session.notify
    if state is None:
        return
    try:
        await _look(session, state, speak=True, full=False)
    except StoreError as exc:  # the next look tries again
        session.ctx.log.error("imap.notify_failed", session=session.id, error=str(exc))


async def absorb(session: ImapSession, command: object) -> None:
    """After this session's own command: take its effects as known, untold (§5)."""
    state = session.notify
    if state is None or not isinstance(command, _OWN):
        return
    with contextlib.suppress(StoreError):
        await _look(session, state, speak=False, full=False, selected=False)


async def _look(
    session: ImapSession,
    state: NotifyState,
    *,
    speak: bool,
    full: bool,
    selected: bool = True,
) -> None:
    store = session.ctx.store
    user = session.user
    assert user is not None
    counter = store.account_counter(user)  # read before the queries
    owners = {o: store.account_counter(o) for o in state.owners}
    now = time.monotonic()
    quiet = counter == state.counter and owners == state.owners
    if not full and quiet and now - state.looked_at < RESCAN:
        return
    full = full or now - state.looked_at >= RESCAN
    state.counter, state.looked_at = counter, now
    if selected and speak:
        await _selected(session, state)
    out: list[bytes] = []
    boxes = {b.name for b in await store.list_mailboxes(user)}
    if state.wants("SubscriptionChange") or any(g.filter == "SUBSCRIBED" for g in state.groups):
        subscribed = set(await store.list_subscriptions(user))
        if speak and state.wants("SubscriptionChange"):
            out += _subscription_lines(session, state, subscribed, boxes)
        state.subscribed = subscribed
    fresh: dict[str, _Status] = {}
    old = dict(state.names)
    for i, name in enumerate(sorted(boxes)):
        watched = bool(state.events_for(name) & _MESSAGE_EVENTS)
        named = name not in old and state.wants("MailboxName")  # its UIDVALIDITY: renames
        if not (watched or named):
            continue
        moved = store.change_counter(user, name) != state.counters.get(name)
        if watched and not (full or moved) and name in state.known:
            fresh[name] = state.known[name]
            continue
        state.counters[name] = store.change_counter(user, name)
        try:
            fresh[name] = _Status.of(await store.mailbox_status(user, name))
        except MailboxError:  # deleted meanwhile: the next look says so
            continue
        if i % 32 == 31:
            await asyncio.sleep(0)  # many mailboxes: let other sessions run
    state.owners = await _shared(session, state, fresh, full, owners)
    if speak and state.wants("MailboxName"):
        out += _name_lines(session, state, old, boxes, fresh)
    if speak:
        out += _status_lines(session, state, fresh)
    state.known = {n: s for n, s in fresh.items() if state.events_for(n) & _MESSAGE_EVENTS}
    state.names = {n: fresh[n].uidvalidity if n in fresh else old.get(n, 0) for n in boxes}
    for name in set(state.counters) - boxes - set(fresh):
        del state.counters[name]
    for line in out:
        session.write(line)


async def _shared(
    session: ImapSession,
    state: NotifyState,
    fresh: dict[str, _Status],
    full: bool,
    before: dict[str, int],
) -> dict[str, int]:
    """The status of every shared mailbox a group watches and the user may read (``r``,
    RFC 4314), into ``fresh`` by its "Other Users/" name; their owners' account counters
    (``before``: read before the queries)."""
    store = session.ctx.store
    assert session.user is not None
    owners: dict[str, int] = {}
    if not any(g.filter in ("MAILBOXES", "SUBTREE", "SUBSCRIBED") for g in state.groups):
        return owners
    for owner, box, rights in await store.acl_shared(session.user):
        name = f"{OTHER_USERS}{owner}{DELIMITER}{box}"
        if "r" not in rights or not state.events_for(name) & _MESSAGE_EVENTS:
            continue
        owners.setdefault(owner, before.get(owner, store.account_counter(owner)))
        moved = store.change_counter(owner, box) != state.counters.get(name)
        if not (full or moved) and name in state.known:
            fresh[name] = state.known[name]
            continue
        state.counters[name] = store.change_counter(owner, box)
        try:
            fresh[name] = _Status.of(await store.mailbox_status(owner, box))
        except MailboxError:
            continue
    return owners


async def _selected(session: ImapSession, state: NotifyState) -> None:
    """The selected mailbox's changes now (§5.1-§5.3), if the client asked for them."""
    view = session.view
    if view is None or not state.selected & _MESSAGE_EVENTS:
        return
    if "FlagChange" not in state.selected:
        # flags were not asked for: they wait for the next command unless messages came
        # or went (the catch-up that announces those brings the flags along)
        now = await session.ctx.store.mailbox_state(view.account, view.name)
        if now.uidnext <= view.uidnext and now.exists == view.exists:
            return
    before = view.max_uid()
    await session._updates(allow_expunge=state.immediate)
    view = session.view
    if view is None or not state.fetch or "MessageNew" not in state.selected:
        return
    new = [u for u in view.uids if u > before]
    if not new:
        return
    # §5.2: the FETCH of what the client asked, after the EXISTS
    plan = FetchPlan.of(state.fetch, uid_command=False, condstore=session.core.condstore)
    facts = await ensure_facts(session.ctx.store, view, new) if plan.needs_facts else {}
    for uid in new:
        if uid in view.info:
            out = await render_message(session.ctx.store, view, uid, plan, facts.get(uid))
            await send_streams(session, out, 0)


def _status_lines(
    session: ImapSession, state: NotifyState, fresh: dict[str, _Status]
) -> list[bytes]:
    out: list[bytes] = []
    view = session.view
    selected = None
    if view is not None:
        own = view.account == session.user
        selected = view.name if own else f"{OTHER_USERS}{view.account}{DELIMITER}{view.name}"
    condstore = session.core.condstore
    for name, now in fresh.items():
        was = state.known.get(name)
        events = state.events_for(name)
        if was is None or name == selected or not events & _MESSAGE_EVENTS:
            continue
        items: dict[str, int] = {}
        if now.uidvalidity != was.uidvalidity:
            items = {"UIDVALIDITY": now.uidvalidity, "UIDNEXT": now.uidnext}
            items |= {"MESSAGES": now.messages, "UNSEEN": now.unseen}
        else:
            if now.uidnext != was.uidnext or now.messages != was.messages:
                items = {"MESSAGES": now.messages, "UIDNEXT": now.uidnext, "UNSEEN": now.unseen}
            if now.unseen != was.unseen and "FlagChange" in events:
                items["UNSEEN"] = now.unseen
        if now.highestmodseq != was.highestmodseq and "FlagChange" in events:
            items["UIDVALIDITY"] = now.uidvalidity  # §5.1: HIGHESTMODSEQ and UIDVALIDITY
            items["HIGHESTMODSEQ"] = now.highestmodseq
        elif items and condstore:
            items["HIGHESTMODSEQ"] = now.highestmodseq  # §5.2, §5.3
        if items:
            out.append(status_response(name, items, session.core.utf8))
    return out


def _name_lines(
    session: ImapSession,
    state: NotifyState,
    old: dict[str, int],
    boxes: set[str],
    fresh: dict[str, _Status],
) -> list[bytes]:
    """§5.4: LIST for new names, ``\\NonExistent`` for deleted ones, OLDNAME for a
    rename (a new name with the UIDVALIDITY of one that went away)."""
    utf8 = session.core.utf8
    out: list[bytes] = []
    gone = [n for n in old if n not in boxes]
    vanished = {old[n]: n for n in gone if old[n]}
    for name in sorted(n for n in boxes if n not in old):
        uidvalidity = fresh[name].uidvalidity if name in fresh else 0
        was = vanished.pop(uidvalidity, None) if uidvalidity else None
        if "MailboxName" not in state.events_for(name) and not (
            was is not None and "MailboxName" in state.events_for(was)
        ):
            continue
        extended = {"OLDNAME": [Raw(mailbox_name(was, utf8))]} if was is not None else None
        flags = ["\\Subscribed"] if name in state.subscribed else []
        out.append(list_response(flags, DELIMITER, name, utf8, extended))
    for name in sorted(vanished.values()) + sorted(n for n in gone if not old[n]):
        if "MailboxName" in state.events_for(name):
            out.append(list_response(["\\NonExistent"], DELIMITER, name, utf8))
    return out


def _subscription_lines(
    session: ImapSession, state: NotifyState, now: set[str], boxes: set[str]
) -> list[bytes]:
    """§5.5: LIST with ``\\Subscribed`` for a new subscription, without for a removed one."""
    out: list[bytes] = []
    # a SUBSCRIBED group hears of names that join or leave the subscriptions (§6.4)
    whole = any(g.filter == "SUBSCRIBED" and "SubscriptionChange" in g.events for g in state.groups)
    for name in sorted(now ^ state.subscribed):
        if not whole and "SubscriptionChange" not in state.events_for(name):
            continue
        flags = ["\\Subscribed"] if name in now else []
        if name not in boxes:
            flags.append("\\NonExistent")
        out.append(list_response(flags, DELIMITER, name, session.core.utf8))
    return out
