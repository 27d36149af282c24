"""What IMAP sessions on one mailbox share: its message list and its recent changes.

Ten thousand clients idling on one INBOX must not keep ten thousand copies of its
message list, nor ask the store ten thousand times what a new message changed. A
:class:`Snapshot` is the mailbox's messages at one HIGHESTMODSEQ, immutable once
published; every session whose view has caught up to that MODSEQ points at the same
one (its view copies on write only while it holds changes it may not announce yet).
The change feed is read once per mailbox, MODSEQ and commit, not once per session.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from correo.store.api import Changes, MailStore, MessageInfo

__all__ = ["SharedMailboxes", "Snapshot"]

_CHANGES_KEPT = 64  # recent change-feed answers remembered, across all mailboxes
_CHANGES_TTL = 1.0  # seconds: writes by other processes are not counted (see _updates)
_RECENT_KEPT = 10_000  # mailboxes whose last \\Recent claim is remembered


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
    _changes: OrderedDict[ChangesKey, tuple[float, Changes]] = field(default_factory=OrderedDict)
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
        """
        key = (account, mailbox, modseq, counter)
        now = time.monotonic()
        hit = self._changes.get(key)
        if hit is not None and now - hit[0] < _CHANGES_TTL:
            return hit[1]
        changes = await store.changes_since(account, mailbox, modseq)
        self._changes[key] = (now, changes)
        self._changes.move_to_end(key)
        while len(self._changes) > _CHANGES_KEPT:
            self._changes.popitem(last=False)
        return changes
