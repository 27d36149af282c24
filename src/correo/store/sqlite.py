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
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from correo.store.api import StoreError
from correo.store.committer import AfterCommit, GroupCommitter
from correo.store.sqlite_accounts import AccountOps
from correo.store.sqlite_acl import ACL_SCHEMA, AclOps  # RFC 4314
from correo.store.sqlite_across import AcrossOps  # COPY/MOVE between accounts
from correo.store.sqlite_base import (
    SCHEMA,
    SCHEMA_VERSION,
    TEXT_SCHEMA,
    TEXT_VERSION,
    connect,
    migrate,
    store_error,
)
from correo.store.sqlite_bodies import BodyOps  # many small bodies in one read
from correo.store.sqlite_digests import DIGEST_SCHEMA, DigestOps  # idempotent imports
from correo.store.sqlite_expunged import EXPUNGED_SCHEMA, ExpungedOps  # JMAP Email/changes
from correo.store.sqlite_feed import FeedOps  # other processes' account changes
from correo.store.sqlite_mailboxes import MailboxOps
from correo.store.sqlite_mda import MDA_SCHEMA, MdaOps  # Sieve, vacation, junk
from correo.store.sqlite_messages import MessageOps  # deliver, expunge, bodies
from correo.store.sqlite_metadata import METADATA_SCHEMA, MetadataOps  # RFC 5464
from correo.store.sqlite_queue import QueueOps  # the outbound queue
from correo.store.sqlite_quota import QuotaOps, prepare_quotas  # RFC 9208 quotas
from correo.store.sqlite_records import RECORD_SCHEMA, RecordOps  # JMAP identities, sends
from correo.store.sqlite_reports import REPORTS_SCHEMA, ReportOps  # DMARC/TLS reports
from correo.store.sqlite_savedate import SaveDateOps, prepare_save_dates  # RFC 8514
from correo.store.sqlite_tls import TLS_SCHEMA, TlsOps  # ACME certificates (docs/tls.md)
from correo.store.sqlite_webhooks import WEBHOOK_SCHEMA, WebhookOps  # docs/webhooks.md
from correo.store.sqlite_websessions import WEB_SESSION_SCHEMA, WebSessionOps  # webmail

__all__ = ["SqliteStore"]

_SCHEMA_VERSION = SCHEMA_VERSION  # the schema this release writes (upgrade tests)


class SqliteStore(
    MessageOps,
    QueueOps,
    MailboxOps,
    MdaOps,
    DigestOps,
    AccountOps,
    TlsOps,
    WebSessionOps,
    RecordOps,
    ExpungedOps,
    ReportOps,
    QuotaOps,
    WebhookOps,
    MetadataOps,
    AclOps,
    AcrossOps,
    SaveDateOps,
    BodyOps,
    FeedOps,
):
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
            lambda: connect(self.db_path, writer=True),
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
        conn = connect(self.db_path, writer=True)
        try:
            conn.executescript(SCHEMA)
            conn.executescript(MDA_SCHEMA)  # Sieve scripts, vacation memory, junk tokens
            conn.executescript(DIGEST_SCHEMA)  # digests that make imports idempotent
            conn.executescript(TLS_SCHEMA)  # certificates obtained by ACME
            conn.executescript(WEBHOOK_SCHEMA)  # webhook calls waiting to be made
            conn.executescript(REPORTS_SCHEMA)  # DMARC and TLS reports
            conn.executescript(WEB_SESSION_SCHEMA)  # webmail logins
            conn.executescript(RECORD_SCHEMA)  # sending identities and submissions
            conn.executescript(EXPUNGED_SCHEMA)  # what expunged messages were (JMAP)
            conn.executescript(METADATA_SCHEMA)  # IMAP METADATA entries
            conn.executescript(ACL_SCHEMA)  # access control lists of mailboxes
            migrate(conn)
            prepare_quotas(conn)  # usage counted by triggers (sqlite_quota.py)
            prepare_save_dates(conn)  # SAVEDATE stamped by a trigger
            referenced = {
                row[0] for row in conn.execute("SELECT path FROM blobs WHERE path IS NOT NULL")
            }
        finally:
            conn.close()
        text = connect(self.text_path, writer=True, durable=False)
        try:
            (text_version,) = text.execute("PRAGMA user_version").fetchone()
            if text_version < TEXT_VERSION:  # derived data: rebuilt by the indexer
                text.executescript("DROP TABLE IF EXISTS docs; DROP TABLE IF EXISTS body;")
            text.executescript(TEXT_SCHEMA)
            text.execute(f"PRAGMA user_version={TEXT_VERSION}")
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
        self._feed_stop()
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
        return connect(self.text_path, writer=True, durable=False)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.db_path, writer=False)
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
        """How many commits of this process touched the account's mailboxes or names, or
        its Sieve scripts, quota limits and records (those of other processes too, once
        the account feed saw them: ``sqlite_feed.py``)."""
        if self._feed_seen < 0:
            self._feed_baseline()
        return self._account_versions.get(account, 0)

    async def wait_for_account(self, account: str, counter: int, timeout: float) -> bool:
        if counter != self._account_versions.get(account, 0):
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._account_waiters.setdefault(account, set()).add(future)
        self._feed_watch()  # other processes' writes (the CLI) wake it too
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

    def observe_commits(self, observer: Callable[[float, int], None] | None) -> None:
        self._committer.observer = observer

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(batches, writes) committed so far: writes/batches is the group-commit factor."""
        return self._committer.batches, self._committer.writes


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
