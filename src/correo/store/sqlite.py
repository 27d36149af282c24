"""The embedded mail store: SQLite (WAL) for metadata and small bodies, files for large ones.

Layout under the store folder::

    mail.db        accounts, mailboxes, messages, blobs ≤ spool memory limit, queue
    blobs/xx/…     bodies larger than the spool's memory limit (one file each)
    tmp/           spool files of messages being received

Why bodies in the database: a 5 KB message inserted in the same transaction as its
metadata costs no extra fsync — the batch's one WAL fsync covers both — whereas one
file per message costs a file fsync plus a directory fsync each, which no batching
across sessions can share.  Large bodies stay files so they stream and never bloat
the WAL.  One body is shared by every local copy (and the queue) through a
reference count.  See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from correo.store.api import (
    INBOX,
    Delivered,
    DeliveryTarget,
    Envelope,
    MailboxState,
    MessageFacts,
    MessageInfo,
    QueuedMessage,
    QueuedRecipient,
    QueueEntry,
    QueueRecipientState,
    QueueSummary,
    RecipientUpdate,
    Spool,
    StoreError,
    StoreFullError,
    local_zone,
)
from correo.store.committer import AfterCommit, GroupCommitter
from correo.store.spool import FileSpool
from correo.store.sqlite_accounts import AccountOps
from correo.store.sqlite_digests import DIGEST_SCHEMA, DigestOps  # idempotent imports
from correo.store.sqlite_mailboxes import MailboxOps, _forget_text, normalize_flags
from correo.store.sqlite_mda import MDA_SCHEMA, MdaOps  # Sieve, vacation, junk
from correo.store.sqlite_tls import TLS_SCHEMA, TlsOps  # ACME certificates (docs/tls.md)

__all__ = ["SqliteStore"]

_SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes (
    id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1, subscribed INTEGER NOT NULL DEFAULT 1,
    special_use TEXT, recent_uid INTEGER NOT NULL DEFAULT 1, UNIQUE (account_id, name));
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY, size INTEGER NOT NULL, refs INTEGER NOT NULL,
    data BLOB, path TEXT, envelope BLOB, bodystructure BLOB, body BLOB, tree BLOB,
    sent_date REAL);
CREATE TABLE IF NOT EXISTS blob_facts (
    blob_id INTEGER PRIMARY KEY, envelope BLOB NOT NULL, bodystructure BLOB, body BLOB,
    tree BLOB, sent_date REAL);
CREATE TABLE IF NOT EXISTS messages (
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, blob_id INTEGER NOT NULL,
    size INTEGER NOT NULL, internal_date REAL NOT NULL, flags TEXT NOT NULL DEFAULT '',
    modseq INTEGER NOT NULL, zone INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    account_id INTEGER NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expunged (
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY, blob_id INTEGER NOT NULL, skip INTEGER NOT NULL,
    sender TEXT NOT NULL, envid TEXT, ret TEXT, body TEXT, smtputf8 INTEGER NOT NULL,
    authenticated TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS queue_recipients (
    queue_id INTEGER NOT NULL, address TEXT NOT NULL, notify TEXT, orcpt TEXT,
    status TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL, last_error TEXT NOT NULL DEFAULT '',
    warned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue_id, address)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_due ON queue_recipients (status, next_attempt);
CREATE TABLE IF NOT EXISTS urlauth_keys (
    mailbox_id INTEGER PRIMARY KEY, uidvalidity INTEGER NOT NULL, key BLOB NOT NULL);
"""
# SEARCH TEXT/BODY index, in its own file (text.db) written by its own thread: a trigram
# insert costs ~60 ns per character and must not delay the mail commits. A document
# is one message copy, keyed by (mailbox, UIDVALIDITY, UID), which is never reused (a
# blob id can be: SQLite hands out a freed highest rowid again). The text is stored
# (it is the small word-deduplicated form, see correo.delivery.textindex) so that an
# expunge can delete its row and a COPY can duplicate it without re-reading the mail.
# The input is casefolded already, hence case_sensitive (no second folding pass).
_TEXT_VERSION = 2
_TEXT_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, mailbox_id INTEGER NOT NULL,
    uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL, UNIQUE (mailbox_id, uidvalidity, uid));
CREATE VIRTUAL TABLE IF NOT EXISTS body USING fts5(
    text, detail='none', tokenize='trigram case_sensitive 1');
"""


_READER_MMAP = 1 << 30


def _connect(path: Path, *, writer: bool, durable: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: in WAL mode every COMMIT fsyncs the WAL; NORMAL would not survive a power cut.
    # The text index is rebuilt from the mail when lost, so it needs no fsync.
    conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    if writer:
        conn.execute("PRAGMA wal_autocheckpoint=4000")
    else:
        conn.execute("PRAGMA query_only=1")
        # Readers map the file: an inline body (tens of KB of overflow pages) is then read
        # without a pread() per page, ~2x faster for FETCH BODY[]. Address space only; the
        # pages are the kernel's page cache, shared and reclaimable.
        conn.execute(f"PRAGMA mmap_size={_READER_MMAP}")
        conn.execute("ATTACH DATABASE ? AS text", (str(path.with_name("text.db")),))
    return conn


class SqliteStore(MailboxOps, MdaOps, DigestOps, AccountOps, TlsOps):
    """:class:`correo.store.api.MailStore` on SQLite plus files."""

    def __init__(
        self, root: Path, *, spool_memory: int = 256 * 1024, recover: bool = False
    ) -> None:
        self.root = root
        self.recover = recover
        self.db_path = root / "mail.db"
        self.blob_dir = root / "blobs"
        self.tmp_dir = root / "tmp"
        self.spool_memory = spool_memory
        self._committer = GroupCommitter(
            lambda: _connect(self.db_path, writer=True),
            on_begin=self._check_foreign_writes,
            on_rollback=self._forget_mailbox_ids,
        )
        self._data_version = -1  # writer thread: PRAGMA data_version at the last batch
        self.text_path = root / "text.db"
        self._text_committer = GroupCommitter(self._connect_text)
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="correo-store-read")
        self._local = threading.local()
        self._mailbox_ids: dict[tuple[str, str], int] = {}  # writer-thread cache
        self._waiters: dict[tuple[str, str], set[asyncio.Future[None]]] = {}
        # Bumped by the writer thread after each commit that touched a mailbox: lets a
        # session skip its change-feed query when nothing moved (see change_counter).
        self._versions: dict[tuple[str, str], int] = {}
        # the same per account, mailbox list and subscriptions included (NOTIFY)
        self._account_versions: dict[str, int] = {}
        self._account_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock_fd = -1

    # -- life cycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Create or open the store; with ``recover`` also take the owner lock and sweep."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._prepare)
        self._committer.start()
        self._text_committer.start()

    def _prepare(self) -> None:
        for d in (self.root, self.blob_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.db_path, writer=True)
        try:
            conn.executescript(_SCHEMA)
            conn.executescript(MDA_SCHEMA)  # Sieve scripts, vacation memory, junk tokens
            conn.executescript(DIGEST_SCHEMA)  # digests that make imports idempotent
            conn.executescript(TLS_SCHEMA)  # certificates obtained by ACME
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version < 2:
                _add_late_columns(conn)
                _move_facts(conn)
            if version < 3:
                _subscriptions_and_zones(conn)
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            referenced = {
                row[0] for row in conn.execute("SELECT path FROM blobs WHERE path IS NOT NULL")
            }
        finally:
            conn.close()
        text = _connect(self.text_path, writer=True, durable=False)
        try:
            (text_version,) = text.execute("PRAGMA user_version").fetchone()
            if text_version < _TEXT_VERSION:  # derived data: rebuilt by the indexer
                text.executescript("DROP TABLE IF EXISTS docs; DROP TABLE IF EXISTS body;")
            text.executescript(_TEXT_SCHEMA)
            text.execute(f"PRAGMA user_version={_TEXT_VERSION}")
        finally:
            text.close()
        if self.recover:
            self._lock_owner()
            self._sweep(referenced)

    def _lock_owner(self) -> None:
        """One serving process per store: a second one would sweep the first one's spool."""
        fd = os.open(self.root / "server.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"another correo server is already using {self.root}") from None
        self._lock_fd = fd

    def _sweep(self, referenced: set[str]) -> None:
        """Crash recovery, only by the process that owns the store (the server)."""
        # Spool files of interrupted sessions were never acknowledged: drop them.
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)
        # Blob files renamed into place by a commit that then never happened.
        for shard in self.blob_dir.iterdir():
            for blob in shard.iterdir():
                if f"{shard.name}/{blob.name}" not in referenced:
                    blob.unlink(missing_ok=True)

    async def close(self) -> None:
        await asyncio.to_thread(self._committer.stop)
        await asyncio.to_thread(self._text_committer.stop)
        self._readers.shutdown(wait=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- helpers --------------------------------------------------------------------

    def _connect_text(self) -> sqlite3.Connection:
        """The text index's writer, run at the lowest CPU priority (Linux: per thread).

        Indexing is deferrable work: under load it must not take CPU from sessions;
        messages not indexed yet are still found, by scanning.
        """
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (OSError, AttributeError):
            pass
        return _connect(self.text_path, writer=True, durable=False)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.db_path, writer=False)
            self._local.conn = conn
        return conn

    async def _read(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, fn, *args)

    def _read_now(self, fn: Any, *args: Any) -> Any:
        """A small indexed read on the calling (event-loop) thread.

        A WAL reader never waits for the writer, and a thread-pool round trip costs more
        than the query itself for reads of a few rows; large or file reads use _read.
        """
        return fn(*args)

    async def _write(self, op: Any) -> Any:
        """Run ``op`` in the next group commit; a database or disk failure is a StoreError."""
        try:
            return await self._committer.submit(op)
        except (sqlite3.Error, OSError) as exc:
            raise store_error(exc) from exc

    def _forget_mailbox_ids(self) -> None:
        """Writer thread, after a rollback: a cached id may name a row never committed."""
        self._mailbox_ids = {}

    def _check_foreign_writes(self, conn: sqlite3.Connection) -> None:
        """Writer thread, each batch: another process (``correo user del``) may have
        removed or renamed accounts, so ids cached before its commit are dropped."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        if version != self._data_version:
            self._data_version = version
            self._mailbox_ids = {}

    def change_counter(self, account: str, mailbox: str) -> int:
        """How many commits of this process touched the mailbox (not other processes')."""
        return self._versions.get((account, mailbox), 0)

    def _notify_later(self, keys: list[tuple[str, str]]) -> AfterCommit:
        loop = self._loop
        versions = self._versions
        accounts = self._account_versions

        def action() -> None:
            for key in keys:
                versions[key] = versions.get(key, 0) + 1
            for account in {k[0] for k in keys}:
                accounts[account] = accounts.get(account, 0) + 1
            if loop is not None and keys:
                loop.call_soon_threadsafe(self._wake, keys)

        return action

    def _wake(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            for future in self._waiters.pop(key, ()):
                if not future.done():
                    future.set_result(None)
        for account in {k[0] for k in keys}:
            for future in self._account_waiters.pop(account, ()):
                if not future.done():
                    future.set_result(None)

    def account_counter(self, account: str) -> int:
        """How many commits of this process touched the account's mailboxes or names."""
        return self._account_versions.get(account, 0)

    async def wait_for_account(self, account: str, counter: int, timeout: float) -> bool:
        if counter != self._account_versions.get(account, 0):
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._account_waiters.setdefault(account, set()).add(future)
        timer = loop.call_later(timeout, _expire, future)  # no wait_for: many wait at once
        try:
            await future
            return True
        except TimeoutError:
            return False
        finally:
            timer.cancel()
            waiters = self._account_waiters.get(account)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    self._account_waiters.pop(account, None)

    def _account_id(self, conn: sqlite3.Connection, account: str, create: bool) -> int | None:
        row = conn.execute("SELECT id FROM accounts WHERE name=?", (account,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        cur = conn.execute(
            "INSERT INTO accounts (name, created) VALUES (?, ?)", (account, time.time())
        )
        return int(cur.lastrowid or 0)

    def _next_uidvalidity(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key='uidvalidity'").fetchone()
        value = max(int(time.time()), (int(row[0]) + 1) if row else 0)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('uidvalidity', ?) "
            "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (value,),
        )
        return value

    def _mailbox_id(self, conn: sqlite3.Connection, account: str, mailbox: str) -> int:
        """Writer thread: the mailbox id, creating the account and INBOX on first use."""
        key = (account, mailbox)
        cached = self._mailbox_ids.get(key)
        if cached is not None:
            return cached
        account_id = self._account_id(conn, account, create=True)
        row = conn.execute(
            "SELECT id FROM mailboxes WHERE account_id=? AND name=?", (account_id, mailbox)
        ).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (?, ?, ?)",
                (account_id, mailbox, self._next_uidvalidity(conn)),
            )
            mailbox_id = int(cur.lastrowid or 0)
            conn.execute(  # created by the server (INBOX, a delivery target): subscribed
                "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                (account_id, mailbox),
            )
            # Not cached: a rolled-back savepoint would leave a stale id behind.
            return mailbox_id
        mailbox_id = int(row[0])
        self._mailbox_ids[key] = mailbox_id
        return mailbox_id

    def _find_mailbox(self, conn: sqlite3.Connection, account: str, mailbox: str) -> int | None:
        row = conn.execute(
            "SELECT m.id FROM mailboxes m JOIN accounts a ON a.id = m.account_id "
            "WHERE a.name=? AND m.name=?",
            (account, mailbox),
        ).fetchone()
        return None if row is None else int(row[0])

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

        placed: list[Path] = []  # a body file renamed into blobs/, until it is committed

        def op(conn: sqlite3.Connection) -> tuple[Delivered, list[AfterCommit]]:
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
                    _fsync_dir(self.blob_dir)
                os.rename(spool.path, shard_dir / spool.name)
                spool.path = None  # now owned by the store
                placed.append(shard_dir / spool.name)
                _fsync_dir(shard_dir)
                path = f"{shard}/{spool.name}"
            refs = len(targets) + (1 if queued else 0)
            cur = conn.execute(
                "INSERT INTO blobs (size, refs, data, path) VALUES (?, ?, ?, ?)",
                (spool.size, refs, data, path),
            )
            blob_id = cur.lastrowid
            if facts is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO blob_facts (blob_id, envelope, bodystructure, body,"
                    " tree, sent_date) VALUES (?, ?, ?, ?, ?, ?)",
                    (blob_id, *_facts_row(facts)),
                )
            uids: list[tuple[DeliveryTarget, int]] = []
            touched: list[tuple[str, str]] = []
            for target in targets:
                mailbox_id = self._mailbox_id(conn, target.account, target.mailbox)
                uid, modseq = conn.execute(
                    "UPDATE mailboxes SET uidnext=uidnext+1, highestmodseq=highestmodseq+1 "
                    "WHERE id=? RETURNING uidnext-1, highestmodseq",
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
            return Delivered(tuple(uids), queue_id), [self._notify_later(touched)]

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

        result: list[MessageInfo] = self._read_now(read)
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
        # an inline body yields only the range asked for (a header: its first pages)
        cut = "substr(b.data, ?)" if end is None else "substr(b.data, ?, ?)"
        bounds = (start + 1,) if end is None else (start + 1, max(0, end - start))

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
        def read() -> MailboxState:
            conn = self._reader()
            row = conn.execute(
                "SELECT m.id, m.uidvalidity, m.uidnext, m.highestmodseq FROM mailboxes m "
                "JOIN accounts a ON a.id = m.account_id WHERE a.name=? AND m.name=?",
                (account, mailbox),
            ).fetchone()
            if row is None:
                raise StoreError(f"mailbox {mailbox} of {account} does not exist")
            (count,) = conn.execute(
                "SELECT count(*) FROM messages WHERE mailbox_id=?", (row[0],)
            ).fetchone()
            return MailboxState(row[1], row[2], row[3], count)

        state: MailboxState = self._read_now(read)
        return state

    async def wait_for_change(
        self, account: str, mailbox: str, modseq: int, timeout: float, counter: int | None = None
    ) -> bool:
        key = (account, mailbox)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(key, set()).add(future)
        # a bare timer, not asyncio.wait_for: thousands of idle sessions wait here at once
        timer = loop.call_later(timeout, _expire, future)
        try:
            if counter is None or counter != self._versions.get(key, 0):
                state = await self.mailbox_state(account, mailbox)
                if state.highestmodseq > modseq:
                    return True
            await future
            return True
        except TimeoutError:
            return False
        finally:
            timer.cancel()
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    self._waiters.pop(key, None)

    async def queue_list(self) -> list[QueueEntry]:
        def read() -> list[QueueEntry]:
            conn = self._reader()
            entries = []
            for qid, sender, size, skip, created in conn.execute(
                "SELECT q.id, q.sender, b.size, q.skip, q.created FROM queue q "
                "JOIN blobs b ON b.id = q.blob_id ORDER BY q.id"
            ):
                rcpts = tuple(
                    (a, s, e)
                    for a, s, e in conn.execute(
                        "SELECT address, status, last_error FROM queue_recipients "
                        "WHERE queue_id=? ORDER BY address",
                        (qid,),
                    )
                )
                entries.append(QueueEntry(qid, sender, size - skip, created, rcpts))
            return entries

        result: list[QueueEntry] = await self._read(read)
        return result

    # -- outbound queue ---------------------------------------------------------------

    def _queued_message(self, conn: sqlite3.Connection, row: Any) -> QueuedMessage:
        qid, sender, size, skip, created, envid, ret, body, smtputf8, auth = row
        recipients = tuple(
            QueueRecipientState(a, n, o, s, at, na, e, bool(w))
            for a, n, o, s, at, na, e, w in conn.execute(
                "SELECT address, notify, orcpt, status, attempts, next_attempt, last_error, warned"
                " FROM queue_recipients WHERE queue_id=? ORDER BY address",
                (qid,),
            )
        )
        return QueuedMessage(
            qid, sender, size - skip, created, envid, ret, body, bool(smtputf8), auth, recipients
        )

    _QUEUE_COLUMNS = (
        "q.id, q.sender, b.size, q.skip, q.created, q.envid, q.ret, q.body, q.smtputf8,"
        " q.authenticated FROM queue q JOIN blobs b ON b.id = q.blob_id"
    )

    async def queue_due(
        self, now: float, limit: int = 100, exclude: Collection[int] = ()
    ) -> list[QueuedMessage]:
        skip = sorted(set(exclude))

        def read() -> list[QueuedMessage]:
            conn = self._reader()
            ids: list[int] = []
            # Over-fetch by the excluded count, then drop them in Python: a NOT IN list of
            # hundreds of parameters would hit SQLite's variable limit.
            excluded = set(skip)
            for (qid,) in conn.execute(
                "SELECT queue_id FROM queue_recipients WHERE status='queued'"
                " AND next_attempt <= ? GROUP BY queue_id ORDER BY min(next_attempt), queue_id"
                " LIMIT ?",
                (now, limit + len(skip)),
            ):
                if qid not in excluded:
                    ids.append(qid)
                    if len(ids) >= limit:
                        break
            out = []
            for qid in ids:
                row = conn.execute(f"SELECT {self._QUEUE_COLUMNS} WHERE q.id=?", (qid,)).fetchone()
                if row is not None:
                    out.append(self._queued_message(conn, row))
            return out

        result: list[QueuedMessage] = await self._read(read)
        return result

    async def queue_get(self, queue_id: int) -> QueuedMessage | None:
        def read() -> QueuedMessage | None:
            conn = self._reader()
            row = conn.execute(f"SELECT {self._QUEUE_COLUMNS} WHERE q.id=?", (queue_id,)).fetchone()
            return None if row is None else self._queued_message(conn, row)

        result: QueuedMessage | None = await self._read(read)
        return result

    async def queue_read(self, queue_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        def locate() -> tuple[bytes | None, str | None, int]:
            row = (
                self._reader()
                .execute(
                    "SELECT b.data, b.path, q.skip FROM queue q JOIN blobs b ON b.id = q.blob_id"
                    " WHERE q.id=?",
                    (queue_id,),
                )
                .fetchone()
            )
            if row is None:
                raise StoreError(f"queue entry {queue_id} does not exist")
            return row[0], row[1], int(row[2])

        data, path, skip = await self._read(locate)
        async for chunk in self._blob_chunks(data, path, skip, chunk_size):
            yield chunk

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

    def _drop_queue_entry(self, conn: sqlite3.Connection, queue_id: int) -> list[str]:
        row = conn.execute("DELETE FROM queue WHERE id=? RETURNING blob_id", (queue_id,)).fetchone()
        conn.execute("DELETE FROM queue_recipients WHERE queue_id=?", (queue_id,))
        return [] if row is None else self._release_blobs(conn, [row[0]])

    async def queue_update(self, queue_id: int, updates: Sequence[RecipientUpdate]) -> bool:
        def op(conn: sqlite3.Connection) -> tuple[bool, list[AfterCommit]]:
            for u in updates:
                conn.execute(
                    "UPDATE queue_recipients SET status=?, next_attempt=?, last_error=?,"
                    " attempts=attempts+?, warned=COALESCE(?, warned)"
                    " WHERE queue_id=? AND address=?",
                    (
                        u.status,
                        u.next_attempt,
                        u.last_error,
                        int(u.counted),
                        None if u.warned is None else int(u.warned),
                        queue_id,
                        u.address,
                    ),
                )
            (pending,) = conn.execute(
                "SELECT count(*) FROM queue_recipients WHERE queue_id=? AND status='queued'",
                (queue_id,),
            ).fetchone()
            if pending:
                return False, []
            return True, [self._unlink_later(self._drop_queue_entry(conn, queue_id))]

        done: bool = await self._write(op)
        return done

    async def queue_delete(self, queue_id: int) -> bool:
        def op(conn: sqlite3.Connection) -> tuple[bool, list[AfterCommit]]:
            exists = conn.execute("SELECT 1 FROM queue WHERE id=?", (queue_id,)).fetchone()
            if exists is None:
                return False, []
            return True, [self._unlink_later(self._drop_queue_entry(conn, queue_id))]

        deleted: bool = await self._write(op)
        return deleted

    async def queue_retry(self, queue_id: int | None = None, now: float | None = None) -> int:
        when = time.time() if now is None else now

        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            if queue_id is None:
                cur = conn.execute(
                    "UPDATE queue_recipients SET next_attempt=? WHERE status='queued'", (when,)
                )
            else:
                cur = conn.execute(
                    "UPDATE queue_recipients SET next_attempt=? WHERE status='queued'"
                    " AND queue_id=?",
                    (when, queue_id),
                )
            return cur.rowcount, []

        count: int = await self._write(op)
        return count

    async def queue_next_due(self) -> float | None:
        def read() -> float | None:
            (value,) = (
                self._reader()
                .execute("SELECT min(next_attempt) FROM queue_recipients WHERE status='queued'")
                .fetchone()
            )
            return None if value is None else float(value)

        result: float | None = await self._read(read)
        return result

    async def queue_summary(self, cap: int = 1_000_000) -> QueueSummary:
        def read() -> QueueSummary:
            conn = self._reader()
            (messages,) = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM queue LIMIT ?)", (cap,)
            ).fetchone()
            (recipients,) = conn.execute(  # the queue_due index
                "SELECT count(*) FROM (SELECT 1 FROM queue_recipients"
                " WHERE status='queued' LIMIT ?)",
                (cap,),
            ).fetchone()
            # ids grow with time: the first row is the oldest, found without a scan
            row = conn.execute("SELECT created FROM queue ORDER BY id LIMIT 1").fetchone()
            return QueueSummary(int(messages), int(recipients), None if row is None else row[0])

        result: QueueSummary = await self._read(read)
        return result

    def observe_commits(self, observer: Callable[[float, int], None] | None) -> None:
        self._committer.observer = observer

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(batches, writes) committed so far: writes/batches is the group-commit factor."""
        return self._committer.batches, self._committer.writes


def store_error(exc: sqlite3.Error | OSError) -> StoreError:
    """The StoreError for a failed write: StoreFullError when the disk is full."""
    if isinstance(exc, OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        full = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
    if full:
        return StoreFullError(f"disk full: {exc}")
    return StoreError(f"store write failed: {exc}")


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


#: Columns schema 1 gained before its stores were versioned: (table, column, type).
_LATE_COLUMNS = (
    ("mailboxes", "recent_uid", "INTEGER NOT NULL DEFAULT 1"),
    ("blobs", "envelope", "BLOB"),
    ("blobs", "bodystructure", "BLOB"),
    ("blobs", "body", "BLOB"),
    ("blobs", "tree", "BLOB"),
    ("blobs", "sent_date", "REAL"),
    ("queue_recipients", "warned", "INTEGER NOT NULL DEFAULT 0"),
)


def _add_late_columns(conn: sqlite3.Connection) -> None:
    """The first schema 1 stores lack columns that ``CREATE TABLE IF NOT EXISTS`` never
    adds to a table that exists: add them before anything reads them."""
    for table, column, kind in _LATE_COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _move_facts(conn: sqlite3.Connection) -> None:
    """Schema 1 kept facts after the inline body: reading them walked its overflow pages."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR IGNORE INTO blob_facts SELECT id, envelope, bodystructure, body, tree,"
            " sent_date FROM blobs WHERE envelope IS NOT NULL"
        )
        conn.execute(
            "UPDATE blobs SET envelope=NULL, bodystructure=NULL, body=NULL, tree=NULL,"
            " sent_date=NULL WHERE envelope IS NOT NULL"
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _subscriptions_and_zones(conn: sqlite3.Connection) -> None:
    """Schema 2 kept subscriptions on the mailbox row and INTERNALDATE in UTC only.

    RFC 9051 §6.3.7: a subscription outlives its mailbox, so it gets its own table;
    RFC 9051 §2.3.3: INTERNALDATE keeps its zone, a new column (0 = +0000 for old rows).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
        if "zone" not in columns:
            conn.execute("ALTER TABLE messages ADD COLUMN zone INTEGER NOT NULL DEFAULT 0")
        conn.execute(
            "INSERT OR IGNORE INTO subscriptions (account_id, name)"
            " SELECT account_id, name FROM mailboxes WHERE subscribed=1"
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _facts_row(facts: MessageFacts) -> tuple[object, ...]:
    return (facts.envelope, facts.bodystructure, facts.body, facts.tree, facts.sent_date)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
