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
from collections import OrderedDict
from dataclasses import dataclass, field

from correo.jmap.mail import MailboxMark, email_id, mailbox_id, write_state
from correo.store.api import MailboxInfo, MailboxStatus, MailStore, MessageInfo, StoreError

__all__ = ["Box", "EmailRow", "ExpungeIndex", "MailView", "Row"]


@dataclass(slots=True)
class Box:
    info: MailboxInfo
    status: MailboxStatus

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


class ExpungeIndex:
    """What JMAP has listed, kept between requests and bounded.

    * (UIDVALIDITY, UID) -> digest for every message listed, so ``Email/changes`` can
      name the Email an expunge removed;
    * each mailbox's rows as of its (HIGHESTMODSEQ, UIDNEXT): a mailbox that has not
      changed since is not read again.
    """

    def __init__(self, most: int = 2_000_000, listed: int = 500_000) -> None:
        self.most = most
        self.listed_most = listed
        self._by_account: OrderedDict[str, dict[tuple[int, int], str]] = OrderedDict()
        self._total = 0
        self._listings: OrderedDict[tuple[str, int], tuple[int, int, list[Row]]] = OrderedDict()
        self._listed = 0

    def note(self, account: str, rows: list[Row]) -> None:
        index = self._by_account.setdefault(account, {})
        self._by_account.move_to_end(account)
        before = len(index)
        for row in rows:
            index[(row.box.status.uidvalidity, row.info.uid)] = row.digest
        self._total += len(index) - before
        while self._total > self.most and len(self._by_account) > 1:
            _, dropped = self._by_account.popitem(last=False)
            self._total -= len(dropped)

    def lookup(self, account: str, uidvalidity: int, uid: int) -> str | None:
        return self._by_account.get(account, {}).get((uidvalidity, uid))

    def listing(self, account: str, box: Box) -> list[Row] | None:
        """The rows listed of ``box`` when it has not changed since, else None."""
        key = (account, box.status.uidvalidity)
        kept = self._listings.get(key)
        if kept is None or kept[:2] != (box.status.highestmodseq, box.status.uidnext):
            return None
        self._listings.move_to_end(key)
        rows = kept[2]
        if rows and rows[0].box is not box:  # the same mailbox read anew: maybe renamed
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


class MailView:
    """One account's mailboxes (and, on demand, messages) as of now."""

    def __init__(self, store: MailStore, account: str, index: ExpungeIndex) -> None:
        self.store = store
        self.account = account
        self.index = index
        self._boxes: list[Box] | None = None
        self._emails: dict[str, EmailRow] | None = None

    async def boxes(self) -> list[Box]:
        if self._boxes is None:
            boxes = []
            for info in await self.store.list_mailboxes(self.account):
                try:
                    status = await self.store.mailbox_status(self.account, info.name)
                except StoreError:
                    continue  # deleted meanwhile
                boxes.append(Box(info, status))
            self._boxes = boxes
        return self._boxes

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

    async def emails(self) -> dict[str, EmailRow]:
        """Every Email of the account by digest, its rows in mailbox order."""
        if self._emails is None:
            emails: dict[str, EmailRow] = {}
            for box in await self.boxes():
                rows = self.index.listing(self.account, box)
                if rows is None:
                    try:
                        rows = await self._list(box)
                    except StoreError:
                        continue
                for count, row in enumerate(rows, 1):
                    if count % 2000 == 0:
                        await asyncio.sleep(0)  # others run while a big mailbox is read
                    key = row.digest[:24]
                    entry = emails.get(key)
                    if entry is None:
                        entry = emails[key] = EmailRow(key)
                    entry.rows.append(row)
            self._emails = emails
        return self._emails

    async def _list(self, box: Box) -> list[Row]:
        infos = await self.store.list_messages(self.account, box.name)
        digests = await self.store.message_digests(self.account, box.name)
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

    async def email(self, ident: str) -> EmailRow | None:
        from correo.jmap.mail import digest_of

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
