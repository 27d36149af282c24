"""Messages of :class:`correo.store.sqlite.SqliteStore`: delivery (one transaction for
every local copy and the queue entry), expunge, and reading bodies inline or from files.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from correo.store.api import (
    INBOX,
    Delivered,
    DeliveryTarget,
    Envelope,
    MailboxState,
    MessageFacts,
    MessageInfo,
    QueuedRecipient,
    Spool,
    StoreError,
    local_zone,
)
from correo.store.exists import exists_memo
from correo.store.spool import FileSpool
from correo.store.sqlite_base import facts_row, fsync_dir, store_error
from correo.store.sqlite_mailboxes import _forget_text, normalize_flags

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit, WriteOp

__all__ = ["MessageOps"]


class MessageOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:
        tmp_dir: Path
        blob_dir: Path
        spool_memory: int

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        def _read_now(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _find_mailbox(
            self, conn: sqlite3.Connection, account: str, mailbox: str
        ) -> int | None: ...
        def _mailbox_id(self, conn: sqlite3.Connection, account: str, mailbox: str) -> int: ...
        def _notify_later(self, keys: list[tuple[str, str]]) -> AfterCommit: ...
        def _quota_admit(
            self,
            conn: sqlite3.Connection,
            targets: Sequence[DeliveryTarget],
            size: int,
            fallback: Mapping[str, Sequence[QueuedRecipient]] | None,
        ) -> tuple[list[DeliveryTarget], dict[str, bool], list[str]]: ...
        def _quota_warn_later(self, accounts: Sequence[str]) -> AfterCommit: ...
        def _text_later(self, op: WriteOp) -> AfterCommit: ...

    # -- writing --------------------------------------------------------------------

    def new_spool(self) -> Spool:
        return FileSpool(self.tmp_dir, self.spool_memory)

    async def deliver(
        self,
        spool: Spool,
        envelope: Envelope,
        targets: Sequence[DeliveryTarget],
        queued: Sequence[QueuedRecipient] = (),
        *,
        queue_skip: int = 0,
        facts: MessageFacts | None = None,
        internal_date: float | None = None,
        internal_zone: int | None = None,
        quota_fallback: Mapping[str, Sequence[QueuedRecipient]] | None = None,
    ) -> Delivered:
        if not isinstance(spool, FileSpool):
            raise TypeError("SqliteStore.deliver needs a spool from its own new_spool()")
        if not targets and not queued:
            raise ValueError("deliver() needs at least one target or queued recipient")
        if spool.failed is not None:  # a write to it failed: the message is incomplete
            spool.discard()
            raise store_error(spool.failed)
        now = time.time() if internal_date is None else internal_date
        zone = local_zone(now) if internal_zone is None else internal_zone
        # Recorded with the body, so the first JMAP listing hashes nothing (sqlite_digests.py).
        digest = spool.digest()

        placed: list[Path] = []  # a body file renamed into blobs/, until it is committed
        all_targets, all_queued = targets, queued

        def op(conn: sqlite3.Connection) -> tuple[Delivered, list[AfterCommit]]:
            # Quota first, in this transaction (sqlite_quota.py): refused accounts are
            # left out before anything is written.
            targets, refused, crossed = self._quota_admit(
                conn, all_targets, spool.size, quota_fallback
            )
            queued = [q for q in all_queued if q.owner not in refused]
            for account in refused:
                queued += (quota_fallback or {}).get(account, ())
            over = tuple(refused.items())
            if not targets and not queued:
                return Delivered((), None, over), []
            path: str | None = None
            data: bytearray | None = None
            if spool.in_memory:
                data = spool.buffer
            else:
                assert spool.path is not None
                spool.sync_and_close()
                shard = spool.name[:2]
                shard_dir = self.blob_dir / shard
                if not shard_dir.exists():
                    shard_dir.mkdir(exist_ok=True)
                    fsync_dir(self.blob_dir)
                os.rename(spool.path, shard_dir / spool.name)
                spool.path = None  # now owned by the store
                placed.append(shard_dir / spool.name)
                fsync_dir(shard_dir)
                path = f"{shard}/{spool.name}"
            refs = len(targets) + (1 if queued else 0)
            cur = conn.execute(
                "INSERT INTO blobs (size, refs, data, path) VALUES (?, ?, ?, ?)",
                (spool.size, refs, data, path),
            )
            blob_id = cur.lastrowid
            conn.execute(
                "INSERT OR REPLACE INTO blob_digests (blob_id, digest) VALUES (?, ?)",
                (blob_id, digest),
            )
            if facts is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO blob_facts (blob_id, envelope, bodystructure, body,"
                    " tree, sent_date) VALUES (?, ?, ?, ?, ?, ?)",
                    (blob_id, *facts_row(facts)),
                )
            uids: list[tuple[DeliveryTarget, int]] = []
            validities: list[int] = []
            touched: list[tuple[str, str]] = []
            for target in targets:
                mailbox_id = self._mailbox_id(conn, target.account, target.mailbox)
                uid, modseq, validity = conn.execute(
                    "UPDATE mailboxes SET uidnext=uidnext+1, highestmodseq=highestmodseq+1 "
                    "WHERE id=? RETURNING uidnext-1, highestmodseq, uidvalidity",
                    (mailbox_id,),
                ).fetchone()
                conn.execute(
                    "INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, flags,"
                    " modseq, zone) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        mailbox_id,
                        uid,
                        blob_id,
                        spool.size,
                        now,
                        " ".join(normalize_flags(target.flags)),
                        modseq,
                        zone,
                    ),
                )
                uids.append((target, int(uid)))
                validities.append(int(validity))
                touched.append((target.account, target.mailbox))
            queue_id: int | None = None
            if queued:
                qcur = conn.execute(
                    "INSERT INTO queue (blob_id, skip, sender, envid, ret, body, smtputf8,"
                    " authenticated, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        blob_id,
                        queue_skip,
                        envelope.sender,
                        envelope.envid,
                        envelope.ret,
                        envelope.body,
                        int(envelope.smtputf8),
                        envelope.authenticated,
                        now,
                    ),
                )
                queue_id = int(qcur.lastrowid or 0)
                conn.executemany(
                    "INSERT OR IGNORE INTO queue_recipients (queue_id, address, notify, orcpt,"
                    " next_attempt) VALUES (?, ?, ?, ?, ?)",
                    [(queue_id, r.address, r.notify, r.orcpt, now) for r in queued],
                )
            return Delivered(tuple(uids), queue_id, over, tuple(validities)), [
                self._notify_later(touched),
                self._quota_warn_later(crossed),
            ]

        try:
            result: Delivered = await self._write(op)
        except StoreError:  # disk full, I/O error: nothing was stored
            for orphan in placed:  # no row points to it: remove it now, not at restart
                orphan.unlink(missing_ok=True)
            raise
        finally:
            spool.discard()
        return result

    async def create_account(self, account: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            self._mailbox_id(conn, account, INBOX)
            return None, []

        await self._write(op)

    def _release_blobs(self, conn: sqlite3.Connection, blob_ids: list[int]) -> list[str]:
        """Drop one reference from each blob; returns files to unlink after commit."""
        freed: list[str] = []
        for blob_id in blob_ids:
            row = conn.execute(
                "UPDATE blobs SET refs=refs-1 WHERE id=? RETURNING refs, path", (blob_id,)
            ).fetchone()
            if row is not None and row[0] <= 0:
                conn.execute("DELETE FROM blobs WHERE id=?", (blob_id,))
                conn.execute("DELETE FROM blob_facts WHERE blob_id=?", (blob_id,))
                if row[1]:
                    freed.append(row[1])
        return freed

    def _unlink_later(self, paths: list[str]) -> AfterCommit:
        def action() -> None:
            for rel in paths:
                (self.blob_dir / rel).unlink(missing_ok=True)

        return action

    async def expunge(self, account: str, mailbox: str, uids: Sequence[int]) -> int:
        wanted = sorted(set(uids))

        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            mailbox_id = self._find_mailbox(conn, account, mailbox)
            if mailbox_id is None or not wanted:
                return 0, []
            (modseq,) = conn.execute(
                "UPDATE mailboxes SET highestmodseq=highestmodseq+1 WHERE id=? "
                "RETURNING highestmodseq",
                (mailbox_id,),
            ).fetchone()
            blob_ids: list[int] = []
            removed = 0
            for uid in wanted:
                row = conn.execute(
                    "DELETE FROM messages WHERE mailbox_id=? AND uid=? RETURNING blob_id",
                    (mailbox_id, uid),
                ).fetchone()
                if row is None:
                    continue
                removed += 1
                blob_ids.append(row[0])
                conn.execute(
                    "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                    (mailbox_id, uid, modseq),
                )
            freed = self._release_blobs(conn, blob_ids)
            forget = self._text_later(_forget_text(mailbox_id, wanted))  # the text index row
            return removed, [
                self._unlink_later(freed),
                self._notify_later([(account, mailbox)]),
                forget,
            ]

        removed: int = await self._write(op)
        return removed

    # -- reading --------------------------------------------------------------------

    async def list_messages(self, account: str, mailbox: str = INBOX) -> list[MessageInfo]:
        def read() -> list[MessageInfo]:
            conn = self._reader()
            mailbox_id = self._find_mailbox(conn, account, mailbox)
            if mailbox_id is None:
                return []
            return [
                MessageInfo(uid, size, date, tuple(flags.split()), modseq, zone)
                for uid, size, date, flags, modseq, zone in conn.execute(
                    "SELECT uid, size, internal_date, flags, modseq, zone FROM messages "
                    "WHERE mailbox_id=? ORDER BY uid",
                    (mailbox_id,),
                )
            ]

        result: list[MessageInfo] = await self._read(read)  # a row per message: off the loop
        return result

    async def read_message(
        self,
        account: str,
        mailbox: str,
        uid: int,
        chunk_size: int = 65536,
        start: int = 0,
        end: int | None = None,
    ) -> AsyncIterator[bytes]:
        # an inline body yields only the range asked for (a header: its first pages);
        # all of it (RETR, BODY[]) without substr(), which would copy it once more
        bounds: tuple[int, ...] = ()
        if start == 0 and end is None:
            cut = "b.data"
        elif end is None:
            cut, bounds = "substr(b.data, ?)", (start + 1,)
        else:
            cut, bounds = "substr(b.data, ?, ?)", (start + 1, max(0, end - start))

        def locate() -> tuple[bytes | None, str | None]:
            conn = self._reader()
            row = conn.execute(
                f"SELECT {cut}, b.path FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id"
                " JOIN accounts a ON a.id = x.account_id JOIN blobs b ON b.id = m.blob_id"
                " WHERE a.name=? AND x.name=? AND m.uid=?",
                (*bounds, account, mailbox, uid),
            ).fetchone()
            if row is None:
                raise StoreError(f"message {uid} of {account}/{mailbox} does not exist")
            if row[0] is None and row[1] is None:
                return b"", None  # an empty inline body
            return row[0], row[1]

        data, path = self._read_now(locate)
        if data is not None:
            start, end = 0, None  # already cut to the range
        async for chunk in self._blob_chunks(data, path, start, chunk_size, end):
            yield chunk

    async def read_inline(self, account: str, mailbox: str, uid: int) -> bytes | None:
        def locate() -> bytes | None:
            # the body only if it is inline: a file-backed one is never loaded whole here
            row = (
                self._reader()
                .execute(
                    "SELECT CASE WHEN b.path IS NULL THEN b.data END, b.id FROM messages m"
                    " JOIN mailboxes x ON x.id = m.mailbox_id"
                    " JOIN accounts a ON a.id = x.account_id JOIN blobs b ON b.id = m.blob_id"
                    " WHERE a.name=? AND x.name=? AND m.uid=?",
                    (account, mailbox, uid),
                )
                .fetchone()
            )
            if row is None:
                raise StoreError(f"message {uid} of {account}/{mailbox} does not exist")
            data: bytes | None = row[0]
            return data

        result: bytes | None = self._read_now(locate)
        return result

    async def mailbox_state(self, account: str, mailbox: str = INBOX) -> MailboxState:
        memo = exists_memo(self)

        def read() -> MailboxState:
            conn = self._reader()
            row = conn.execute(
                "SELECT m.id, m.uidvalidity, m.uidnext, m.highestmodseq FROM mailboxes m "
                "JOIN accounts a ON a.id = m.account_id WHERE a.name=? AND m.name=?",
                (account, mailbox),
            ).fetchone()
            if row is None:
                raise StoreError(f"mailbox {mailbox} of {account} does not exist")
            count = memo.get(row)  # counted under the same marks: unchanged (exists.py)
            if count is None:
                (count,) = conn.execute(
                    "SELECT count(*) FROM messages WHERE mailbox_id=?", (row[0],)
                ).fetchone()
                memo.put(row, count)
            return MailboxState(row[1], row[2], row[3], count)

        state: MailboxState = self._read_now(read)
        return state

    async def _blob_chunks(
        self,
        data: bytes | None,
        path: str | None,
        skip: int,
        chunk_size: int,
        end: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Bytes ``skip``..``end`` of a body, inline or from its file, in chunks."""
        if data is not None:
            stop = len(data) if end is None else min(end, len(data))
            for start in range(skip, stop, chunk_size):
                yield data[start : min(start + chunk_size, stop)]
            return
        assert path is not None
        try:
            fh = await asyncio.to_thread(open, self.blob_dir / path, "rb")
        except FileNotFoundError as exc:
            raise StoreError(f"message body {path} is missing") from exc
        try:
            if skip:
                await self._read(fh.seek, skip)
            left = -1 if end is None else max(0, end - skip)
            while left != 0:
                size = chunk_size if left < 0 else min(chunk_size, left)
                chunk = await self._read(fh.read, size)
                if not chunk:
                    break
                if left > 0:
                    left -= len(chunk)
                yield chunk
        finally:
            fh.close()
