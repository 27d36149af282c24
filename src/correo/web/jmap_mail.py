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
    """(UIDVALIDITY, UID) -> digest for the messages JMAP has listed, bounded."""

    def __init__(self, most: int = 2_000_000) -> None:
        self.most = most
        self._by_account: OrderedDict[str, dict[tuple[int, int], str]] = OrderedDict()

    def note(self, account: str, rows: list[Row]) -> None:
        index = self._by_account.setdefault(account, {})
        self._by_account.move_to_end(account)
        for row in rows:
            index[(row.box.status.uidvalidity, row.info.uid)] = row.digest
        total = sum(len(v) for v in self._by_account.values())
        while total > self.most and len(self._by_account) > 1:
            _, dropped = self._by_account.popitem(last=False)
            total -= len(dropped)

    def lookup(self, account: str, uidvalidity: int, uid: int) -> str | None:
        return self._by_account.get(account, {}).get((uidvalidity, uid))


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
            listed: list[Row] = []
            for box in await self.boxes():
                try:
                    infos = await self.store.list_messages(self.account, box.name)
                    digests = await self.store.message_digests(self.account, box.name)
                except StoreError:
                    continue
                for info in infos:
                    digest = digests.get(info.uid)
                    if digest is None:
                        continue  # arrived between the two reads: next time
                    row = Row(box, info, digest)
                    listed.append(row)
                    emails.setdefault(digest[:24], EmailRow(digest[:24])).rows.append(row)
            self.index.note(self.account, listed)
            self._emails = emails
        return self._emails

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
