"""A session's view of its selected mailbox: sequence numbers, flags, pending changes.

IMAP sequence numbers are per session: a message expunged by another session keeps
its number here until this session may be told (RFC 9051 §7.5.1: never during FETCH,
STORE or SEARCH by sequence number). The view catches up from the store's change
feed and turns the difference into untagged responses.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING

from correo.server.imap.shared import SharedMailboxes, Snapshot
from correo.store.api import Changes, MessageInfo

if TYPE_CHECKING:
    from correo.server.imap.context import Contexts

__all__ = ["MAX_KEYWORDS", "SYSTEM_FLAGS", "MailboxView", "format_uids"]

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
#: Distinct keywords one mailbox may hold: every FLAGS and PERMANENTFLAGS reply lists
#: them all, so without a bound a client could make those replies grow without end.
MAX_KEYWORDS = 256


class MailboxView:
    """One session's selected mailbox, sharing the message list until it must differ.

    ``uids`` and ``info`` start as a :class:`~correo.server.imap.shared.Snapshot`'s and
    are copied (``_own``) only when this session changes them itself or holds back an
    expunge; after a full catch-up the view adopts the shared snapshot again, so idle
    sessions on one mailbox cost no more than their own few fields.
    """

    def __init__(
        self,
        account: str,
        name: str,
        *,
        read_only: bool,
        uidvalidity: int,
        uidnext: int,
        highestmodseq: int,
        messages: Iterable[MessageInfo] | Snapshot,
        first_recent: int,
        shared: SharedMailboxes | None = None,
    ) -> None:
        self.account = account
        self.name = name
        self.read_only = read_only
        self.uidvalidity = uidvalidity
        self.uidnext = uidnext
        self.highestmodseq = highestmodseq
        self.first_recent = first_recent
        # UID ranges at or above first_recent that another session got as \Recent
        self.others_recent: list[tuple[int, int]] = []
        self.shared = shared
        # the snapshot this view reads (None: its own copy); holding it keeps it shared
        self._snap: Snapshot | None = None
        if isinstance(messages, Snapshot):
            self.uids, self.info = messages.uids, messages.info
            self._snap = messages
        else:
            self.uids = []
            self.info = {}
            for m in messages:
                self.uids.append(m.uid)
                self.info[m.uid] = m
        self.keywords: set[str] = {f for m in self.info.values() for f in m.flags}
        self.keywords.difference_update(SYSTEM_FLAGS)
        self.pending_expunge: set[int] = set()
        self.saved: list[int] = []  # SEARCHRES "$" (RFC 5182), as UIDs
        #: The UID :func:`~correo.server.imap.bodies.read_one` is asked for next if the
        #: session walks the mailbox one FETCH at a time (0: none expected).
        self.walk_next = 0
        self.rev2 = False  # IMAP4rev2 has no \Recent (RFC 9051 §2.3.2)
        self.uidonly = False  # RFC 9586: UIDFETCH and VANISHED, never a message number
        self.contexts: Contexts | None = None  # RFC 5267 §4.3 updating searches

    def _own(self) -> None:
        """Copy the shared list before this session changes it."""
        if self._snap is not None:
            self.uids = list(self.uids)
            self.info = dict(self.info)
            self._snap = None

    def share(self) -> None:
        """Point at the shared snapshot for this view's MODSEQ (publishing ours if none).

        Only valid when the view holds exactly the store's state at ``highestmodseq``:
        after a catch-up that applied every change and held back no expunge.
        """
        if self.shared is None or self.pending_expunge:
            return
        snap = self.shared.snapshot(self.account, self.name, self.uidvalidity, self.highestmodseq)
        if snap is None:
            self._own()  # the published lists must never change under their readers
            snap = self.shared.publish(
                self.account,
                self.name,
                self.uidvalidity,
                Snapshot(self.uids, self.info, self.highestmodseq),
            )
        if len(snap.uids) == len(self.uids):
            self.uids, self.info, self._snap = snap.uids, snap.info, snap

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def recent(self) -> int:
        count = len(self.uids) - bisect.bisect_left(self.uids, self.first_recent)
        for lo, hi in self.others_recent:
            count -= bisect.bisect_right(self.uids, hi) - bisect.bisect_left(self.uids, lo)
        return count

    def is_recent(self, uid: int) -> bool:
        return uid >= self.first_recent and not any(
            lo <= uid <= hi for lo, hi in self.others_recent
        )

    def not_recent(self, lo: int, hi: int) -> None:
        """UIDs ``lo``..``hi`` arrived and were claimed by another session: not \\Recent
        here (RFC 3501 §2.3.2). Ranges come in rising order; adjacent ones merge."""
        lo = max(lo, self.first_recent)
        if lo > hi:
            return
        if self.others_recent and self.others_recent[-1][1] + 1 >= lo:
            self.others_recent[-1] = (self.others_recent[-1][0], hi)
        else:
            self.others_recent.append((lo, hi))

    def seq(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def uids_for_seq_ranges(self, ranges: list[tuple[int, int]]) -> list[int]:
        out: list[int] = []
        n = len(self.uids)
        for lo, hi in ranges:
            if lo > n:
                continue
            out.extend(self.uids[lo - 1 : min(hi, n)])
        return out

    def uids_for_uid_ranges(self, ranges: list[tuple[int, int]]) -> list[int]:
        out: list[int] = []
        for lo, hi in ranges:
            i = bisect.bisect_left(self.uids, lo)
            j = bisect.bisect_right(self.uids, hi)
            out.extend(self.uids[i:j])
        return out

    def flags_responses(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` listing system flags and known keywords."""
        names = " ".join((*SYSTEM_FLAGS, *sorted(self.keywords)))
        out = [b"* FLAGS (%s)\r\n" % names.encode()]
        if self.read_only:
            out.append(b"* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n")
        else:
            star = b" \\*" if len(self.keywords) < MAX_KEYWORDS else b""  # §7.1: new ones?
            out.append(b"* OK [PERMANENTFLAGS (%s%s)] Flags permitted\r\n" % (names.encode(), star))
        return out

    def new_keywords(self, infos: Iterable[MessageInfo]) -> list[bytes]:
        """RFC 9051 §7.3.5: announce keywords before a FETCH FLAGS uses them."""
        fresh = {f for m in infos for f in m.flags if f not in self.keywords}
        fresh.difference_update(SYSTEM_FLAGS)
        if not fresh:
            return []
        self.keywords |= fresh
        return self.flags_responses()

    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def update_flags(self, infos: Iterable[MessageInfo]) -> None:
        """This session's own STORE: its view changes now; HIGHESTMODSEQ does not move,
        so the next catch-up still sees what other sessions changed in between."""
        self._own()
        for m in infos:
            if m.uid in self.info:
                self.info[m.uid] = m

    def catch_up(
        self, changes: Changes, *, allow_expunge: bool, qresync: bool, condstore: bool
    ) -> list[bytes]:
        """Apply changes from the store; returns untagged responses to send, in order."""
        gone = {u for u in changes.expunged if u in self.info} | self.pending_expunge
        if self.shared is not None and (allow_expunge or not gone):
            highest = max(self.highestmodseq, changes.highestmodseq)
            snap = self.shared.snapshot(self.account, self.name, self.uidvalidity, highest)
            if snap is not None:
                out = self._adopt(snap, changes, sorted(gone), qresync, condstore)
                if out is not None:
                    return out
        out = []
        if changes.expunged or changes.messages:
            self._own()
        self.pending_expunge = gone
        if allow_expunge and self.pending_expunge:
            out += self._announce_expunges(qresync)
        new: list[MessageInfo] = []
        known_max = self.max_uid()
        out += self.new_keywords(changes.messages)
        for m in changes.messages:
            if m.uid in self.info:
                old = self.info[m.uid]
                self.info[m.uid] = m
                if old.flags != m.flags and m.uid not in self.pending_expunge:
                    seq = self.seq(m.uid)
                    assert seq is not None
                    out.append(self._flags_fetch(seq, m, qresync, condstore))
            elif m.uid > known_max:
                new.append(m)
        if new:
            for m in new:
                self.uids.append(m.uid)
                self.info[m.uid] = m
            out += self._grown()
        self.highestmodseq = max(self.highestmodseq, changes.highestmodseq)
        self.share()
        return out

    def _adopt(
        self, snap: Snapshot, changes: Changes, gone: list[int], qresync: bool, condstore: bool
    ) -> list[bytes] | None:
        """Catch up by pointing at ``snap``: the same responses as applying ``changes``
        to this view, without copying it (the fan-out of one new message to idle sessions).
        """
        known_max = self.max_uid()
        added = sum(1 for m in changes.messages if m.uid > known_max)
        if len(snap.uids) != len(self.uids) - len(gone) + added:
            return None  # not the state these changes lead to: take the slow path
        out = self._expunge_lines(gone, qresync)
        out += self.new_keywords(changes.messages)
        old_info, new_uids, dropped = self.info, snap.uids, set(gone)
        for m in changes.messages:
            old = old_info.get(m.uid)
            if old is not None and m.uid not in dropped and old.flags != m.flags:
                seq = bisect.bisect_left(new_uids, m.uid) + 1
                out.append(self._flags_fetch(seq, m, qresync, condstore))
        self.uids, self.info, self._snap = snap.uids, snap.info, snap
        self.pending_expunge = set()
        self.highestmodseq = snap.highestmodseq
        if added:
            out += self._grown()
        return out

    def _grown(self) -> list[bytes]:
        self.uidnext = max(self.uidnext, self.uids[-1] + 1)
        out = [b"* %d EXISTS\r\n" % len(self.uids)]
        if not self.rev2:
            out.append(b"* %d RECENT\r\n" % self.recent)  # RFC 3501 §7.3.2
        return out

    def fetch_head(self, seq: int, uid: int) -> bytes:
        """``* n FETCH (``, or ``* uid UIDFETCH (`` under UIDONLY (RFC 9586 §3.3)."""
        return b"* %d UIDFETCH (" % uid if self.uidonly else b"* %d FETCH (" % seq

    def _flags_fetch(self, seq: int, m: MessageInfo, qresync: bool, condstore: bool) -> bytes:
        flags = self._flag_bytes(m)
        extra = b" MODSEQ (%d)" % m.modseq if condstore else b""
        if self.uidonly:
            return b"* %d UIDFETCH (FLAGS %s%s)\r\n" % (m.uid, flags, extra)
        # RFC 7162 §3.1: once CONDSTORE is enabled, every untagged FETCH has UID and MODSEQ
        uid_part = b" UID %d" % m.uid if qresync or condstore else b""
        return b"* %d FETCH (FLAGS %s%s%s)\r\n" % (seq, flags, uid_part, extra)

    def _announce_expunges(self, qresync: bool) -> list[bytes]:
        gone = sorted(self.pending_expunge)
        self.pending_expunge.clear()
        out = self._expunge_lines(gone, qresync)
        for uid in gone:
            self._remove(uid)
        return out

    def _expunge_lines(self, gone: list[int], qresync: bool) -> list[bytes]:
        """EXPUNGE (or VANISHED) for sorted ``gone``, numbered by the view before removal."""
        if not gone:
            return []
        # RFC 5267 §4.3.4: REMOVEFROM before the EXPUNGE, numbered as the client knows
        out = self.contexts.before_expunge(self, gone) if self.contexts is not None else []
        if qresync or self.uidonly:
            # RFC 7162 §3.2.10, RFC 9586 §3.2: VANISHED (UIDs) instead of EXPUNGE.
            return [*out, b"* VANISHED " + format_uids(gone).encode() + b"\r\n"]
        # highest first: removing a higher number leaves the lower ones valid
        seqs = (self.seq(uid) for uid in reversed(gone))
        return out + [b"* %d EXPUNGE\r\n" % seq for seq in seqs if seq is not None]

    def expunged_now(self, uids: Iterable[int], qresync: bool) -> list[bytes]:
        """This session's own EXPUNGE: announce at once (RFC 9051 §6.4.3)."""
        self._own()
        self.pending_expunge.update(u for u in uids if u in self.info)
        return self._announce_expunges(qresync)

    def _remove(self, uid: int) -> None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            del self.uids[i]
        self.info.pop(uid, None)

    def flag_list(self, uid: int) -> bytes:
        return self._flag_bytes(self.info[uid])

    def _flag_bytes(self, m: MessageInfo) -> bytes:
        flags = list(m.flags)
        if not self.rev2 and self.is_recent(m.uid):
            flags.append("\\Recent")
        return ("(" + " ".join(flags) + ")").encode()


def format_uids(uids: Iterable[int]) -> str:
    """``1:3,7,9:10`` from sorted UIDs."""
    parts: list[str] = []
    start = prev = -2
    for uid in sorted(uids):
        if uid == prev + 1:
            prev = uid
            continue
        if start > 0:
            parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    if start > 0:
        parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts)
