"""An account's mail as JMAP sees it, read through the store API (RFC 8621).

:class:`MailView` reads an account once per request: its mailboxes with their
UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, and (when a method needs them) every message
with its content digest, grouped into Emails.  Writes go through the same store API
IMAP uses, so an IMAP session sees a JMAP change at once (its IDLE is woken by the
store's change feed) and the reverse.

:class:`ExpungeIndex` remembers which Email each (mailbox, UID) held, for
``Email/changes`` to name the Emails an expunge removed (the store keeps only the UIDs).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from correo.jmap.mail import MailboxMark, digest_of, email_id, mailbox_id, write_state
from correo.jmap.threads import thread_of
from correo.store.api import (
    MailboxInfo,
    MailboxState,
    MailboxStatus,
    MailStore,
    MessageInfo,
    StoreError,
)

__all__ = ["Box", "EmailRow", "ExpungeIndex", "MailView", "Row", "Snapshot"]


def _header_of(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[: at + len(sep)]
    return raw


def _same(state: MailboxState, status: MailboxStatus) -> bool:
    return (state.uidvalidity, state.uidnext, state.highestmodseq, state.exists) == (
        status.uidvalidity,
        status.uidnext,
        status.highestmodseq,
        status.messages,
    )


def _uncounted(state: MailboxState) -> MailboxStatus:
    return MailboxStatus(
        messages=state.exists,
        uidnext=state.uidnext,
        uidvalidity=state.uidvalidity,
        unseen=0,
        deleted=0,
        size=0,
        highestmodseq=state.highestmodseq,
        recent=0,
    )


def _state_of(status: MailboxStatus) -> MailboxState:
    return MailboxState(status.uidvalidity, status.uidnext, status.highestmodseq, status.messages)


@dataclass(slots=True)
class Box:
    info: MailboxInfo
    status: MailboxStatus
    #: False while ``status`` holds the mailbox's marks and EXISTS only (from its
    #: indexed state): its unseen count is read when Mailbox/get asks for it
    counted: bool = True

    @property
    def id(self) -> str:
        return mailbox_id(self.status.uidvalidity)

    @property
    def name(self) -> str:
        return self.info.name

    def mark(self) -> MailboxMark:
        s = self.status
        return MailboxMark(s.uidvalidity, s.uidnext, s.highestmodseq, self.info.name)


@dataclass(frozen=True, slots=True)
class Row:
    """One message in one mailbox."""

    box: Box
    info: MessageInfo
    digest: str


@dataclass(slots=True)
class EmailRow:
    """One Email: the same octets in one or more mailboxes."""

    digest: str
    rows: list[Row] = field(default_factory=list)

    @property
    def id(self) -> str:
        return email_id(self.digest)

    @property
    def first(self) -> Row:
        return self.rows[0]


_THREAD_BATCH = 100  # header sections read (synchronously), then threaded off the loop
_THREAD_HEAD = 64 * 1024  # octets read for a message's Thread (a longer header is cut)
_BOXES_KEPT = 100_000  # mailboxes whose last STATUS is kept
_ORDERS_KEPT = 8  # query orders kept per account snapshot
_HEADS_KEPT = 50_000  # Emails whose parsed header properties are kept
_CATCH_UP_MOST = 500  # new messages a kept listing takes in by hashing them here
_CATCH_UP_OCTETS = 8 << 20  # and their octets at most (else the mailbox is listed again)
_CARRIED = 1000  # changed Emails past which kept query orders are sorted again
_SPLICED = 256  # changed UIDs past which a kept listing is rebuilt in one pass


@dataclass(slots=True)
class Snapshot:
    """An account's Emails as of its mailboxes' marks, and query results over them."""

    key: tuple[MailboxMark, ...]
    emails: dict[str, EmailRow]
    orders: OrderedDict[str, list[str]] = field(default_factory=OrderedDict)
    threads: dict[str, str] | None = None  # digest -> Thread id, once all are known
    listings: dict[int, list[Row]] = field(default_factory=dict)  # by UIDVALIDITY

    def order(self, key: str) -> list[str] | None:
        return self.orders.get(key)

    def keep_order(self, key: str, ids: list[str]) -> None:
        self.orders[key] = ids
        while len(self.orders) > _ORDERS_KEPT:
            self.orders.popitem(last=False)


class ExpungeIndex:
    """What JMAP has listed, kept between requests and bounded.

    * (UIDVALIDITY, UID) -> digest for every message listed, so ``Email/changes`` can
      name the Email an expunge removed;
    * each mailbox's rows as of its (HIGHESTMODSEQ, UIDNEXT): a mailbox that has not
      changed since is not read again;
    * each mailbox's STATUS counts and :class:`Box` as of (UIDVALIDITY, UIDNEXT,
      HIGHESTMODSEQ, EXISTS): every change moves one of them, so an unchanged mailbox
      costs one indexed read, not a count over its messages;
    * each account's Emails as of all its mailboxes' marks, with the orders queries
      asked for: an unchanged account answers Email/query from memory.
    """

    def __init__(self, most: int = 2_000_000, listed: int = 500_000) -> None:
        self.most = most
        self.listed_most = listed
        # account -> UIDVALIDITY -> UID -> digest (dicts of ints and strings: not walked by
        # the cycle collector, and no tuple made per message listed)
        self._by_account: OrderedDict[str, dict[int, dict[int, str]]] = OrderedDict()
        self._total = 0
        self._listings: OrderedDict[tuple[str, int], tuple[int, int, list[Row]]] = OrderedDict()
        self._listed = 0
        self._boxes: OrderedDict[tuple[str, str], tuple[MailboxState, Box]] = OrderedDict()
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        self._threads: OrderedDict[str, str] = OrderedDict()  # digest -> Thread id
        self._heads: OrderedDict[tuple[str, tuple[str, ...]], dict[str, Any]] = OrderedDict()
        self._recording: set[asyncio.Task[None]] = set()
        self.generations: dict[str, int] = {}  # account -> JMAP writes of this process

    def bump(self, account: str) -> None:
        """A JMAP method changed something of the account's (push looks at this)."""
        self.generations[account] = self.generations.get(account, 0) + 1

    def head(self, digest: str, props: tuple[str, ...]) -> dict[str, Any] | None:
        """The header properties parsed of a message before (a function of its octets)."""
        return self._heads.get((digest, props))

    def keep_head(self, digest: str, props: tuple[str, ...], values: dict[str, Any]) -> None:
        self._heads[(digest, props)] = values
        if len(self._heads) > _HEADS_KEPT:
            self._heads.popitem(last=False)

    def stale_listing(self, account: str, box: Box) -> tuple[int, int, list[Row]] | None:
        """The rows last listed of ``box`` under its UIDVALIDITY, however old."""
        return self._listings.get((account, box.status.uidvalidity))

    def record_later(
        self, store: MailStore, account: str, box: str, digests: dict[int, str]
    ) -> None:
        """Tell the store digests hashed here (Email/changes reads them after a restart)."""

        async def record() -> None:
            try:
                await store.record_digests(account, box, digests)
            except StoreError:
                pass  # listed again after a restart: message_digests records them then

        task = asyncio.get_running_loop().create_task(record())
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    def thread(self, digest: str) -> str | None:
        return self._threads.get(digest)

    def keep_thread(self, digest: str, thread: str) -> None:
        self._threads[digest] = thread
        if len(self._threads) > self.listed_most:
            self._threads.popitem(last=False)

    def box(self, account: str, info: MailboxInfo, state: MailboxState) -> Box | None:
        """The Box seen last for this mailbox when nothing in it changed since."""
        kept = self._boxes.get((account, info.name))
        if kept is None or kept[0] != state or kept[1].info != info:
            return None
        self._boxes.move_to_end((account, info.name))
        return kept[1]

    def keep_box(self, account: str, state: MailboxState, box: Box) -> None:
        self._boxes[(account, box.name)] = (state, box)
        self._boxes.move_to_end((account, box.name))
        while len(self._boxes) > _BOXES_KEPT:
            self._boxes.popitem(last=False)

    def snapshot(self, account: str, key: tuple[MailboxMark, ...] | None) -> Snapshot | None:
        """The account's snapshot as of ``key`` (None: the last one, however old)."""
        kept = self._snapshots.get(account)
        if kept is None or (key is not None and kept.key != key):
            return None
        self._snapshots.move_to_end(account)
        return kept

    def keep_snapshot(self, account: str, snapshot: Snapshot) -> None:
        self._snapshots[account] = snapshot
        self._snapshots.move_to_end(account)
        total = 0
        for kept in reversed(self._snapshots.values()):  # the newest first
            total += len(kept.emails)
        while total > self.listed_most and len(self._snapshots) > 1:
            _, dropped = self._snapshots.popitem(last=False)
            total -= len(dropped.emails)

    def note(self, account: str, rows: list[Row]) -> None:
        boxes = self._by_account.setdefault(account, {})
        self._by_account.move_to_end(account)
        index: dict[int, str] = {}
        last = None
        for row in rows:
            uidvalidity = row.box.status.uidvalidity
            if uidvalidity != last:
                index, last = boxes.setdefault(uidvalidity, {}), uidvalidity
            uid = row.info.uid
            if uid not in index:
                self._total += 1
            index[uid] = row.digest
        while self._total > self.most and len(self._by_account) > 1:
            _, dropped = self._by_account.popitem(last=False)
            self._total -= sum(len(index) for index in dropped.values())

    def lookup(self, account: str, uidvalidity: int, uid: int) -> str | None:
        return self._by_account.get(account, {}).get(uidvalidity, {}).get(uid)

    def listing(self, account: str, box: Box) -> list[Row] | None:
        """The rows listed of ``box`` when it has not changed since, else None."""
        key = (account, box.status.uidvalidity)
        kept = self._listings.get(key)
        if kept is None or kept[:2] != (box.status.highestmodseq, box.status.uidnext):
            return None
        self._listings.move_to_end(key)
        rows = kept[2]
        if rows and rows[0].box is not box and rows[0].box.info != box.info:  # renamed
            rows = [Row(box, r.info, r.digest) for r in rows]
            self._listings[key] = (kept[0], kept[1], rows)
        return rows

    def keep(self, account: str, box: Box, rows: list[Row]) -> None:
        key = (account, box.status.uidvalidity)
        old = self._listings.pop(key, None)
        if old is not None:
            self._listed -= len(old[2])
        self._listings[key] = (box.status.highestmodseq, box.status.uidnext, rows)
        self._listed += len(rows)
        while self._listed > self.listed_most and len(self._listings) > 1:
            _, (_, _, dropped) = self._listings.popitem(last=False)
            self._listed -= len(dropped)


async def _group(listings: dict[int, list[Row]]) -> dict[str, EmailRow]:
    """Every Email of the listings by digest, its rows in mailbox order."""
    emails: dict[str, EmailRow] = {}
    for rows in listings.values():
        for count, row in enumerate(rows, 1):
            if count % 2000 == 0:
                await asyncio.sleep(0)  # others run while a big mailbox is read
            key = row.digest[:24]
            entry = emails.get(key)
            if entry is None:
                entry = emails[key] = EmailRow(key)
            entry.rows.append(row)
    return emails


async def _regroup(
    previous: Snapshot,
    listings: dict[int, list[Row]],
    changed: set[str] | None = None,
    deltas: dict[int, tuple[list[Row], list[Row], list[Row]]] | None = None,
) -> dict[str, EmailRow] | None:
    """The Emails of ``listings`` made from ``previous``'s: only those whose rows came or
    went are made again (a catch-up keeps the rows that did not change).  A mailbox
    caught up from ``previous``'s own listing says what came and went (``deltas``), so
    a delivery costs O(changes); any other is compared row by row.  None when the
    mailboxes themselves differ (then :func:`_group`)."""
    if list(previous.listings) != list(listings):
        return None
    gone: set[int] = set()
    came: dict[str, list[Row]] = {}
    for uv, rows in listings.items():
        old = previous.listings[uv]
        if old is rows:
            continue
        delta = deltas.get(uv) if deltas is not None else None
        if delta is not None and delta[0] is old:
            for row in delta[1]:
                gone.add(id(row))
                came.setdefault(row.digest[:24], [])
            for row in delta[2]:
                came.setdefault(row.digest[:24], []).append(row)
            continue
        await asyncio.sleep(0)
        now = {id(r) for r in rows}
        before = {id(r) for r in old}
        for row in old:
            if id(row) not in now:
                gone.add(id(row))
                came.setdefault(row.digest[:24], [])
        for row in rows:
            if id(row) not in before:
                came.setdefault(row.digest[:24], []).append(row)
    if changed is not None:
        changed.update(came)
    emails = dict(previous.emails)
    place = {uv: i for i, uv in enumerate(listings)}
    for key, added in came.items():
        entry = emails.get(key)
        rows = [r for r in entry.rows if id(r) not in gone] if entry is not None else []
        rows += added
        if not rows:
            emails.pop(key, None)
            continue
        rows.sort(key=lambda r: (place[r.box.status.uidvalidity], r.info.uid))  # as _group
        emails[key] = EmailRow(key, rows)
    return emails


def _uid(row: Row) -> int:
    return row.info.uid


def _splice(
    old: list[Row], gone: set[int], changed: dict[int, MessageInfo]
) -> tuple[list[Row], list[MessageInfo], list[Row], list[Row]]:
    """``old`` (in UID order) with a few changes applied where a bisection finds them:
    a delivery costs a copy of the list, not a Python step per message.  Returns the
    rows, the new messages (not yet hashed), the rows dropped and the rows put in."""
    rows = old.copy()
    dropped: list[Row] = []
    replaced: list[Row] = []
    for uid in sorted(gone):
        i = bisect.bisect_left(rows, uid, key=_uid)
        if i < len(rows) and rows[i].info.uid == uid:
            dropped.append(rows.pop(i))
    fresh = []
    for uid, info in changed.items():
        if uid in gone:
            continue
        i = bisect.bisect_left(rows, uid, key=_uid)
        if i < len(rows) and rows[i].info.uid == uid:
            was = rows[i]
            rows[i] = Row(was.box, info, was.digest)
            dropped.append(was)
            replaced.append(rows[i])
        else:
            fresh.append(info)
    return rows, fresh, dropped, replaced


def _take_out(
    ids: list[str],
    changed: set[str],
    before: dict[str, EmailRow],
    sort_key: Callable[[str], tuple[Any, ...]],
) -> list[str] | None:
    """``ids`` (sorted on ``sort_key``) without the Emails ``changed``, each found by a
    bisection and a walk over its equals; None when one is not where its key says."""
    kept = ids.copy()
    for digest in changed:
        email = before.get(digest)
        if email is None:
            continue  # new: not in the order
        ident = email.id
        value = sort_key(ident)
        i = bisect.bisect_left(kept, value, key=sort_key)
        while i < len(kept) and kept[i] != ident and sort_key(kept[i]) == value:
            i += 1
        if i == len(kept) or kept[i] != ident:
            return None
        del kept[i]
    return kept


def carry_order(
    key: str,
    ids: list[str],
    emails: dict[str, EmailRow],
    changed: set[str],
    before: dict[str, EmailRow] | None = None,
) -> list[str] | None:
    """A query's order over the last snapshot, brought to this one: the Emails that
    changed taken out and put back where the sort places them (a delivery costs a
    bisection, not a sort of the mailbox).  With ``before`` (the Emails the order was
    made of) each is found by bisection too, else by a pass.  Only for a query without
    a filter or collapsed threads, sorted on receivedAt and size (either way) or id
    ascending; None for any other (it is sorted again)."""
    node, sort, collapse = json.loads(key)
    if node is not None or collapse or not sort:
        return None
    parts: list[tuple[str, bool]] = []
    for comparator in sort:
        prop, ascending = comparator.get("property"), comparator.get("isAscending", True)
        if prop not in ("receivedAt", "size", "id") or (prop == "id" and not ascending):
            return None
        parts.append((prop, bool(ascending)))

    def key_in(of: dict[str, EmailRow]) -> Callable[[str], tuple[Any, ...]]:
        def sort_key(ident: str) -> tuple[Any, ...]:
            first = of[ident[1:]].first.info
            out: list[Any] = []
            for prop, ascending in parts:
                if prop == "id":
                    out.append(ident)
                else:
                    value = first.internal_date if prop == "receivedAt" else first.size
                    out.append(value if ascending else -value)
            return tuple(out)

        return sort_key

    sort_key = key_in(emails)
    kept = None
    if before is not None:
        try:
            kept = _take_out(ids, changed, before, key_in(before))
        except KeyError:  # an id the order's own Emails lack: take them out by a pass
            kept = None
    if kept is None:
        kept = [i for i in ids if i[1:] not in changed]
    for digest in changed:
        if digest in emails:
            bisect.insort_right(kept, emails[digest].id, key=sort_key)
    return kept


class MailView:
    """One account's mailboxes (and, on demand, messages) as of now."""

    def __init__(self, store: MailStore, account: str, index: ExpungeIndex) -> None:
        self.store = store
        self.account = account
        self.index = index
        self._boxes: list[Box] | None = None
        self._emails: dict[str, EmailRow] | None = None
        # by UIDVALIDITY: (listing caught up from, rows dropped, rows put in)
        self._deltas: dict[int, tuple[list[Row], list[Row], list[Row]]] = {}

    async def boxes(self) -> list[Box]:
        if self._boxes is None:
            boxes = []
            for info in await self.store.list_mailboxes(self.account):
                try:
                    state = await self.store.mailbox_state(self.account, info.name)
                    box = self.index.box(self.account, info, state)
                    if box is None:  # Email methods need its marks, not its counts
                        box = Box(info, _uncounted(state), counted=False)
                        self.index.keep_box(self.account, state, box)
                except StoreError:
                    continue  # deleted meanwhile
                boxes.append(box)
            self._boxes = boxes
        return self._boxes

    async def counted_boxes(self) -> list[Box]:
        """:meth:`boxes` with their STATUS counts (unseen), read where not yet known."""
        out = []
        for box in await self.boxes():
            if not box.counted:
                try:
                    status = await self.store.mailbox_status(self.account, box.name)
                except StoreError:
                    continue  # deleted meanwhile
                if _same(_state_of(box.status), status):
                    box.status, box.counted = status, True  # the kept Box too
                else:  # it moved since the marks were read: this answer's own
                    marks = box.status
                    counted = replace(
                        status,
                        uidvalidity=marks.uidvalidity,
                        uidnext=marks.uidnext,
                        highestmodseq=marks.highestmodseq,
                        messages=marks.messages,
                    )
                    box = Box(box.info, counted)
            out.append(box)
        return out

    async def box_by_id(self, ident: str) -> Box | None:
        for box in await self.boxes():
            if box.id == ident:
                return box
        return None

    async def box_by_name(self, name: str) -> Box | None:
        for box in await self.boxes():
            if box.name == name:
                return box
        return None

    async def state(self) -> str:
        return write_state(b.mark() for b in await self.boxes())

    async def snapshot(self) -> Snapshot:
        """The account's Emails with the query orders kept for them (do not change)."""
        boxes = await self.boxes()
        key = tuple(b.mark() for b in boxes)
        kept = self.index.snapshot(self.account, key)
        if kept is None:
            self._emails = None
            self._deltas = {}
            listings = await self._listings()
            previous = self.index.snapshot(self.account, None)
            changed: set[str] = set()
            emails = None
            if previous is not None:
                emails = await _regroup(previous, listings, changed, self._deltas)
            self._deltas = {}
            kept = Snapshot(key, emails or await _group(listings), listings=listings)
            if emails is not None and previous is not None and len(changed) <= _CARRIED:
                for order_key, ids in previous.orders.items():
                    carried = carry_order(order_key, ids, kept.emails, changed, previous.emails)
                    if carried is not None:
                        kept.keep_order(order_key, carried)
            self.index.keep_snapshot(self.account, kept)
        self._emails = kept.emails
        return kept

    async def emails(self) -> dict[str, EmailRow]:
        """Every Email of the account by digest, its rows in mailbox order."""
        if self._emails is None:
            self._emails = (await self.snapshot()).emails
        return self._emails

    async def thread_ids(self, emails: Iterable[EmailRow]) -> dict[str, str]:
        """The Thread id of each Email (by digest), from its header section; each is
        read once and remembered (the id is a function of the message alone)."""
        out: dict[str, str] = {}
        missing: list[EmailRow] = []
        for email in emails:
            known = self.index.thread(email.digest)
            if known is None:
                missing.append(email)
            else:
                out[email.digest] = known
        for start in range(0, len(missing), _THREAD_BATCH):
            heads: list[tuple[str, bytes]] = []
            for email in missing[start : start + _THREAD_BATCH]:
                try:
                    heads.append((email.digest, await self.raw(email.first, _THREAD_HEAD)))
                except StoreError:
                    heads.append((email.digest, b""))  # expunged meanwhile

            def compute(items: list[tuple[str, bytes]] = heads) -> list[tuple[str, str]]:
                return [(d, thread_of(_header_of(raw), d)) for d, raw in items]

            for digest, thread in await asyncio.to_thread(compute):
                self.index.keep_thread(digest, thread)
                out[digest] = thread
        return out

    async def all_threads(self) -> dict[str, str]:
        """The Thread id of every Email of the account (kept with the snapshot)."""
        snapshot = await self.snapshot()
        if snapshot.threads is None:
            snapshot.threads = await self.thread_ids(list(snapshot.emails.values()))
        return snapshot.threads

    async def _listings(self) -> dict[int, list[Row]]:
        """Each mailbox's rows, by UIDVALIDITY, in mailbox order."""
        out: dict[int, list[Row]] = {}
        for box in await self.boxes():
            rows = self.index.listing(self.account, box)
            if rows is None:
                try:
                    rows = await self._catch_up(box) or await self._list(box)
                except StoreError:
                    continue
            out[box.status.uidvalidity] = rows
        return out

    async def _list(self, box: Box) -> list[Row]:
        # both are read at once (two reader threads): the first listing of a mailbox
        infos, digests = await asyncio.gather(
            self.store.list_messages(self.account, box.name),
            self.store.message_digests(self.account, box.name),
        )
        rows = []
        for count, info in enumerate(infos, 1):
            if count % 2000 == 0:
                await asyncio.sleep(0)
            digest = digests.get(info.uid)
            if digest is not None:  # None: arrived between the two reads, next time
                rows.append(Row(box, info, digest))
        self.index.note(self.account, rows)
        self.index.keep(self.account, box, rows)
        return rows

    async def _catch_up(self, box: Box) -> list[Row] | None:
        """The kept listing of ``box`` brought up to its mark from the changes since
        (RFC 7162 CONDSTORE/QRESYNC's MODSEQ): a delivery costs the new message's
        octets, not a new listing of the mailbox.  None when a full listing is due."""
        kept = self.index.stale_listing(self.account, box)
        if kept is None or kept[0] > box.status.highestmodseq:
            return None
        modseq, _, old = kept
        changes = await self.store.changes_since(self.account, box.name, modseq)
        if changes.highestmodseq != box.status.highestmodseq:
            return None  # moved again meanwhile: list it whole
        gone = set(changes.expunged)
        changed = {info.uid: info for info in changes.messages}
        delta: tuple[list[Row], list[Row]] | None = None
        if len(gone) + len(changed) <= _SPLICED:
            rows, fresh, dropped, replaced = _splice(old, gone, changed)
            delta = (dropped, replaced)
        else:
            rows = []
            for count, row in enumerate(old, 1):
                if count % 5000 == 0:
                    await asyncio.sleep(0)
                uid = row.info.uid
                if uid in gone:
                    continue
                info = changed.pop(uid, None)
                rows.append(row if info is None else Row(row.box, info, row.digest))
            fresh = [info for uid, info in changed.items() if uid not in gone]
        if len(fresh) > _CATCH_UP_MOST or sum(i.size for i in fresh) > _CATCH_UP_OCTETS:
            return None
        added = []
        for info in fresh:
            digest = hashlib.sha256()
            digest.update(await self.raw(Row(box, info, ""), _CATCH_UP_OCTETS))
            added.append(Row(box, info, digest.hexdigest()))
        if added:
            for row in sorted(added, key=_uid):  # new UIDs come last: an append each
                if rows and row.info.uid < rows[-1].info.uid:
                    bisect.insort_right(rows, row, key=_uid)
                else:
                    rows.append(row)
            self.index.note(self.account, added)
            recorded = {r.info.uid: r.digest for r in added}
            self.index.record_later(self.store, self.account, box.name, recorded)
        if rows and rows[0].box.info != box.info:  # renamed
            rows = [Row(box, r.info, r.digest) for r in rows]
        elif delta is not None:  # what came and went, for the snapshot (no pass over rows)
            self._deltas[box.status.uidvalidity] = (old, delta[0], delta[1] + added)
        self.index.keep(self.account, box, rows)
        return rows

    async def email(self, ident: str) -> EmailRow | None:
        digest = digest_of(ident)
        return None if digest is None else (await self.emails()).get(digest)

    def forget(self) -> None:
        """After a write: read again on next use."""
        self._boxes = None
        self._emails = None

    async def raw(self, row: Row, limit: int) -> bytes:
        """The message's octets (at most ``limit``)."""
        inline = await self.store.read_inline(self.account, row.box.name, row.info.uid)
        if inline is not None:
            return inline[:limit]
        parts = []
        async for chunk in self.store.read_message(
            self.account, row.box.name, row.info.uid, end=limit
        ):
            parts.append(chunk)
        return b"".join(parts)
