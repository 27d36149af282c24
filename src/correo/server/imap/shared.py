"""What IMAP sessions on one mailbox share: its message list and its recent changes.

Ten thousand clients idling on one INBOX must not keep ten thousand copies of its
message list, nor ask the store ten thousand times what a new message changed. A
:class:`Snapshot` is the mailbox's messages at one HIGHESTMODSEQ, immutable once
published; every session whose view has caught up to that MODSEQ points at the same
one (its view copies on write only while it holds changes it may not announce yet).
The change feed is read once per mailbox, MODSEQ and commit, not once per session,
even when ten thousand sessions ask at the same moment (the first one's query is
shared while it runs).

Sessions idling on one mailbox wait on one :class:`_Watch` (one store wait per
mailbox, not one per session); when it fires, they are woken :data:`WAKE_BATCH` per
turn of the event loop, so the loop never runs every session's catch-up in one go
(each turn stays short; RFC 2177 sessions by the ten thousand).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from correo.store.api import Changes, MailStore, MessageInfo, StoreError

__all__ = ["WAKE_BATCH", "SharedMailboxes", "Snapshot"]

_CHANGES_KEPT = 64  # recent change-feed answers remembered, across all mailboxes
_CHANGES_TTL = 1.0  # seconds: writes by other processes are not counted (see _updates)
_RECENT_KEPT = 10_000  # mailboxes whose last \\Recent claim is remembered
#: Idle sessions woken per turn of the event loop when their mailbox changes: each one
#: then catches up and writes its few lines (~50-100 µs), so a turn stays well within
#: the 100 ms the loop may be held.
WAKE_BATCH = 200


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Snapshot:
    """A mailbox's messages at ``highestmodseq``; never mutated once made."""

    uids: list[int]
    info: dict[int, MessageInfo]
    highestmodseq: int


SnapshotKey = tuple[str, str, int, int]  # account, mailbox, UIDVALIDITY, HIGHESTMODSEQ
ChangesKey = tuple[str, str, int, int]  # account, mailbox, since MODSEQ, change counter


@dataclass
class SharedMailboxes:
    """Per server: snapshots in use (weakly held) and a short memory of change feeds."""

    snapshots: weakref.WeakValueDictionary[SnapshotKey, Snapshot] = field(
        default_factory=weakref.WeakValueDictionary
    )
    _changes: OrderedDict[ChangesKey, _Look] = field(default_factory=OrderedDict)
    _watches: dict[tuple[str, str], _Watch] = field(default_factory=dict)
    _recent: OrderedDict[tuple[str, str, int], int] = field(default_factory=OrderedDict)

    def claims_recent(self, account: str, mailbox: str, uidvalidity: int, uid: int) -> bool:
        """True for the first session here to see ``uid`` arrive: it asks the store to
        make it \\Recent (RFC 3501 §2.3.2: one session gets it); the others need not ask."""
        key = (account, mailbox, uidvalidity)
        if self._recent.get(key, 0) >= uid:
            return False
        self._recent[key] = uid
        self._recent.move_to_end(key)
        if len(self._recent) > _RECENT_KEPT:
            self._recent.popitem(last=False)
        return True

    def snapshot(
        self, account: str, mailbox: str, uidvalidity: int, highestmodseq: int
    ) -> Snapshot | None:
        return self.snapshots.get((account, mailbox, uidvalidity, highestmodseq))

    def publish(self, account: str, mailbox: str, uidvalidity: int, snap: Snapshot) -> Snapshot:
        """Share ``snap`` unless an equal one is already shared; returns the shared one."""
        key = (account, mailbox, uidvalidity, snap.highestmodseq)
        return self.snapshots.setdefault(key, snap)

    async def changes_since(
        self, store: MailStore, account: str, mailbox: str, modseq: int, counter: int
    ) -> Changes:
        """``store.changes_since``, asked once for all sessions at the same point.

        The answer is reused while this process has committed nothing to the mailbox
        (``counter``) and for at most a second, so writers in other processes are seen.
        Sessions that ask while the query runs wait for that one query, and are
        answered in batches.
        """
        key = (account, mailbox, modseq, counter)
        now = time.monotonic()
        hit = self._changes.get(key)
        if hit is None or now - hit.at >= _CHANGES_TTL:
            hit = self._changes[key] = _Look(now, store.changes_since(account, mailbox, modseq))
            self._changes.move_to_end(key)
            while len(self._changes) > _CHANGES_KEPT:
                self._changes.popitem(last=False)
            hit.query.add_done_callback(lambda q: self._answered(key, hit))
        if not hit.query.done():
            # woken with the others in batches (_release), not all in one turn
            turn = asyncio.get_running_loop().create_future()
            hit.waiters.append(turn)
            await turn
        return hit.query.result()

    def _answered(self, key: ChangesKey, look: _Look) -> None:
        failed = look.query.cancelled() or look.query.exception() is not None
        if failed and self._changes.get(key) is look:
            del self._changes[key]  # a failed look is not remembered
        if look.waiters:
            asyncio.get_running_loop().create_task(_release(look.waiters))

    def wait_for_change(
        self,
        store: MailStore,
        account: str,
        mailbox: str,
        counter: int,
        future: asyncio.Future[None],
    ) -> None:
        """Settle ``future`` when this process commits to the mailbox after ``counter``
        (:meth:`MailStore.change_counter`), or when the store wait fails; at once if
        the counter moved already.

        Every session idling on the mailbox shares one store wait; the caller bounds
        its own wait (writers in other processes are not announced).
        """
        if counter != store.change_counter(account, mailbox):
            if not future.done():
                future.set_result(None)  # already moved: look now
            return
        key = (account, mailbox)
        watch = self._watches.get(key)
        if watch is None or watch.counter != counter:
            watch = self._watches[key] = _Watch(counter)
            watch.task = asyncio.get_running_loop().create_task(self._watch(store, key, watch))
        watch.waiters.add(future)
        future.add_done_callback(watch.waiters.discard)  # a session that stopped waiting

    async def _watch(self, store: MailStore, key: tuple[str, str], watch: _Watch) -> None:
        """One store wait for every idle session on a mailbox, then wake them in batches."""
        try:
            while watch.waiters:
                # the store answers at once when the counter moved; otherwise it is woken
                # by the commit (modseq is not looked at while the counter is unchanged)
                moved = await store.wait_for_change(
                    key[0], key[1], 0, _WATCH_TIMEOUT, counter=watch.counter
                )
                if moved or store.change_counter(*key) != watch.counter:
                    break
                watch.waiters = {f for f in watch.waiters if not f.done()}
        except (StoreError, OSError):
            pass  # the sessions look themselves, and retry
        finally:
            if self._watches.get(key) is watch:
                del self._watches[key]
        pending = deque(f for f in watch.waiters if not f.done())
        watch.waiters = set()
        await _release(pending)


async def _release(pending: deque[asyncio.Future[None]]) -> None:
    """Settle ``pending`` :data:`WAKE_BATCH` per turn of the event loop."""
    while pending:
        for _ in range(min(WAKE_BATCH, len(pending))):
            future = pending.popleft()
            if not future.done():
                future.set_result(None)
        if pending:
            await asyncio.sleep(0)  # the next batch in the next turn of the loop


class _Look:
    """One change-feed query shared by the sessions that ask for the same point."""

    __slots__ = ("at", "query", "waiters")

    def __init__(self, at: float, query: Coroutine[Any, Any, Changes]) -> None:
        self.at = at
        self.query: asyncio.Future[Changes] = asyncio.ensure_future(query)
        self.waiters: deque[asyncio.Future[None]] = deque()


_WATCH_TIMEOUT = 60.0  # seconds of one store wait; sessions time out on their own


@dataclass(eq=False)
class _Watch:
    """One mailbox's shared wait: the change counter it waits past, its sessions."""

    counter: int
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
