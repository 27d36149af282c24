"""The mail store on PostgreSQL: several correo nodes share one database.

Everything a node keeps about mail is in the database — accounts, mailboxes, messages
and their bodies, the queue, Sieve scripts, vacation memory, junk counts, the text
index — so nodes are interchangeable.  Only message spool files (a message still being
received) are local, in ``ROOT/tmp``.

Driver: psycopg 3 with its async API (``AsyncConnectionPool``).  Every query is awaited
on the event loop, so a session waiting for the database costs a coroutine, not a
thread, and no thread pool bounds how many wait at once (the embedded store needs its
reader threads because SQLite's API is blocking).

What makes it safe for several nodes at once:

* UIDs and MODSEQs are allocated by ``UPDATE mailboxes … RETURNING`` in the writing
  transaction: the row lock is held until commit, so two nodes delivering into one
  mailbox never reuse a UID, and a higher UID never becomes visible before a lower one.
* Writes are batched per node (``postgres_commit.py``): one transaction and one WAL
  flush (``synchronous_commit`` on) per batch, mailbox rows locked in id order.
* Bodies are single-instance by SHA-256, inline up to 256 KiB, else chunked and streamed
  both ways (``postgres_base.py``), so a 100 MB message never sits whole in memory.
* Changes are announced with LISTEN/NOTIFY carrying mailbox ids (``postgres_feed.py``).

Durability contract as in ``api.py``: an awaited write has been committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from correo.store.api import (
    INBOX,
    Delivered,
    DeliveryTarget,
    Envelope,
    MailboxState,
    MessageFacts,
    MessageInfo,
    QueuedRecipient,
    Quota,
    QuotaExceededError,
    Spool,
    StoreError,
    local_zone,
)
from correo.store.bodycache import DiskBodyCache
from correo.store.exists import exists_memo
from correo.store.postgres_acl import PgAclOps
from correo.store.postgres_across import PgAcrossOps
from correo.store.postgres_base import CHUNK, Conn
from correo.store.postgres_bodies import PgBodyOps
from correo.store.postgres_commit import PgAfterCommit, PgCommitter, PgOutcome, store_error
from correo.store.postgres_expunged import PgExpungedOps
from correo.store.postgres_feed import ChangeFeed
from correo.store.postgres_group import GroupedDelivery, PgGroupOps, quota_fits
from correo.store.postgres_health import RECONNECT_GIVE_UP, PgHealth, connection_lost
from correo.store.postgres_mailboxes import PgMailboxOps
from correo.store.postgres_mda import PgMdaOps
from correo.store.postgres_metadata import PgMetadataOps
from correo.store.postgres_queue import PgQueueOps
from correo.store.postgres_quota import PgQuotaOps
from correo.store.postgres_records import PgRecordOps
from correo.store.postgres_reports import PgReportOps
from correo.store.postgres_savedate import PgSaveDateOps
from correo.store.postgres_schema import migrate
from correo.store.postgres_tls import PgTlsOps
from correo.store.postgres_webhooks import PgWebhookOps
from correo.store.postgres_websessions import PgWebSessionOps
from correo.store.spool import FileSpool
from correo.store.sqlite_mailboxes import normalize_flags

__all__ = ["PostgresStore"]

#: Per-account user data keyed by the account's name (removed or set aside with it).
_ACCOUNT_TABLES = ("sieve_scripts", "vacation_seen", "junk_totals", "junk_tokens", "records",
                   "record_counters", "annotations", "acl")  # fmt: skip
#: Staged chunks older than this are a crashed delivery's, never linked: swept on start.
_STAGING_HORIZON = 3600.0
#: Seconds to open a connection before the attempt counts as failed.
_CONNECT_TIMEOUT = 10


class PostgresStore(
    PgMailboxOps,
    PgQueueOps,
    PgMdaOps,
    PgTlsOps,
    PgWebhookOps,
    PgWebSessionOps,
    PgRecordOps,
    PgExpungedOps,
    PgReportOps,
    PgQuotaOps,
    PgMetadataOps,
    PgAclOps,
    PgAcrossOps,
    PgSaveDateOps,
    PgBodyOps,
    PgGroupOps,
):
    """:class:`correo.store.api.MailStore` on PostgreSQL (``url``: a libpq URI).

    ``root`` is the node's local folder for spool files.  ``recover`` (the server):
    take the folder's owner lock and sweep what a crash left there and in the staging
    table.  The password may come from the URL, ``PGPASSWORD`` or ``~/.pgpass``.
    ``body_cache_mb`` (0: none) bounds the node's body cache in ``body_cache_dir``
    (default ``root/../cache/bodies``), used only by the serving process (``recover``).
    """

    def __init__(
        self,
        url: str,
        root: Path,
        *,
        spool_memory: int = 256 * 1024,
        recover: bool = False,
        pool_size: int = 16,
        listen: bool = True,
        body_cache_mb: int = 0,
        body_cache_dir: Path | None = None,
    ) -> None:
        self.url = url
        self.root = root
        self.tmp_dir = root / "tmp"
        self.spool_memory = spool_memory
        self.recover = recover
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size),
            kwargs=_connect_options(url),
            open=False,
            timeout=30.0,
            name="correo-store",
            reconnect_timeout=RECONNECT_GIVE_UP,  # then made again by the next request
        )
        self._health = PgHealth(self._pool)
        self._committer = PgCommitter(self._pool, self._health)
        self.feed = ChangeFeed(url, listen=listen)
        self._quota_copies = {}
        self.feed.on_change = self._forget_quota
        self.node = self.feed.node
        self.lease_owner = self.node  # until open() reads the folder's stable name
        self._lock_fd = -1
        self._names = {}
        if body_cache_mb > 0 and recover:  # one process per folder: the server's
            folder = body_cache_dir or root.parent / "cache" / "bodies"
            self._disk_bodies = DiskBodyCache(folder, body_cache_mb << 20)
            self.feed.on_remote = self._forget_boxes

    # -- life cycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate the schema (creating it in an empty database), start."""
        await asyncio.to_thread(self._prepare_local)
        try:
            # One connection first: a wrong address or password fails at once, with
            # libpq's own message, instead of after the pool's retries.
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=10
            )
        except psycopg.Error as exc:
            self._unlock()
            raise StoreError(f"cannot connect to the database: {exc}") from exc
        try:
            await migrate(conn)
            if self.recover:
                await self._sweep_staged(conn)
            await self._pool.open(wait=True, timeout=30.0)
        except (psycopg.Error, RuntimeError) as exc:
            await self._pool.close()
            self._unlock()
            raise StoreError(f"cannot open the database: {exc}") from exc
        finally:
            await conn.close()
        self._committer.start()
        await self.feed.start()
        if self._disk_bodies is not None:
            await self._disk_bodies.open(await self._database_identity())

    async def _database_identity(self) -> str:
        """A random number the database keeps for good, and the database's oid: a node's
        body cache filled from another database, or from this one before it was made
        again from a dump (``pg_restore`` into a new database), is emptied."""
        row = await self._fetchone(
            "WITH new AS (INSERT INTO meta (key, value) VALUES ('body_cache', %s)"
            " ON CONFLICT (key) DO NOTHING RETURNING value)"
            " SELECT value, (SELECT oid FROM pg_database WHERE datname = current_database())"
            " FROM new UNION ALL SELECT value, (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) FROM meta WHERE key = 'body_cache'",
            (secrets.randbits(62),),
        )
        assert row is not None
        return f"{row[0]}-{row[1]}"

    def _prepare_local(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        name_file = self.root / "node-id"
        try:
            self.lease_owner = name_file.read_text().strip() or self.lease_owner
        except FileNotFoundError:
            name_file.write_text(self.lease_owner + "\n")
        if not self.recover:
            return
        fd = os.open(self.root / "server.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"another correo server is already using {self.root}") from None
        self._lock_fd = fd
        # Spool files of interrupted sessions were never acknowledged: drop them.
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)

    async def _sweep_staged(self, conn: Conn) -> None:
        """Chunks staged by a delivery that never committed (a crash, a lost connection),
        and queue leases this node held when it stopped: its runner starts afresh."""
        async with conn.transaction():
            await conn.execute(
                "UPDATE queue_recipients SET lease_until = 0, lease_owner = NULL"
                " WHERE lease_owner = %s",
                (self.lease_owner,),
            )
            await conn.execute(
                "WITH gone AS (DELETE FROM blob_staging WHERE created < %s RETURNING blob_id)"
                " DELETE FROM blob_chunks WHERE blob_id IN (SELECT blob_id FROM gone)",
                (time.time() - _STAGING_HORIZON,),
            )

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def close(self) -> None:
        if self._disk_bodies is not None:
            await self._disk_bodies.close()
        await self._committer.stop()
        await self.feed.close()
        await self._release_hot()
        await self._pool.close()
        self._unlock()

    def observe_commits(self, observer: Callable[[float, int], None] | None) -> None:
        self._committer.observer = observer

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(batches, writes) committed so far: writes/batches is the group-commit factor."""
        return self._committer.batches, self._committer.writes

    # -- writing --------------------------------------------------------------------

    def new_spool(self) -> Spool:
        return FileSpool(self.tmp_dir, self.spool_memory)

    async def _spool_chunks(self, spool: FileSpool) -> AsyncIterator[bytes]:
        """The spool's bytes in CHUNK pieces; a spilled file is read off the loop."""
        if spool.in_memory:
            for i in range(0, len(spool.buffer), CHUNK):
                yield bytes(spool.buffer[i : i + CHUNK])
            return
        assert spool.path is not None
        fh = await asyncio.to_thread(open, spool.path, "rb")
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                yield chunk
        finally:
            fh.close()

    async def _stage(self, spool: FileSpool) -> tuple[int, bytes]:
        """Write a large body's chunks before the delivery; returns (blob id, SHA-256).

        Its own transaction with ``synchronous_commit`` off: the delivery's commit flushes
        the WAL up to its own record, which comes after these, so they are durable by
        the time anything refers to them.
        """
        digest = hashlib.sha256()
        async with (
            self._pool.connection(timeout=self._health.wait) as conn,
            conn.transaction(),
        ):
            await conn.execute("SET LOCAL synchronous_commit TO OFF")
            row = await self._one(conn, "SELECT nextval('blobs_id_seq')")
            assert row is not None
            blob_id = int(row[0])
            await conn.execute(
                "INSERT INTO blob_staging (blob_id, created) VALUES (%s, %s)",
                (blob_id, time.time()),
            )
            seq = 0
            async for chunk in self._spool_chunks(spool):
                digest.update(chunk)
                await conn.execute(
                    "INSERT INTO blob_chunks (blob_id, seq, data) VALUES (%s, %s, %s)",
                    (blob_id, seq, chunk),
                )
                seq += 1
        return blob_id, digest.digest()

    async def _unstage(self, blob_id: int) -> None:
        """Drop the chunks of a delivery that failed (best effort: start-up sweeps)."""
        try:
            async with self._pool.connection() as conn:
                # Only while still staged: a commit whose reply was lost may have linked it.
                await conn.execute(
                    "WITH gone AS (DELETE FROM blob_staging WHERE blob_id = %s RETURNING blob_id)"
                    " DELETE FROM blob_chunks WHERE blob_id IN (SELECT blob_id FROM gone)",
                    (blob_id,),
                )
        except psycopg.Error:
            pass

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
            raise TypeError("PostgresStore.deliver needs a spool from its own new_spool()")
        if not targets and not queued:
            raise ValueError("deliver() needs at least one target or queued recipient")
        now = time.time() if internal_date is None else internal_date
        zone = local_zone(now) if internal_zone is None else internal_zone
        size = spool.size
        all_targets, all_queued = targets, queued
        staged: int | None = None
        data: bytes | None = None
        try:
            if size <= CHUNK:
                data = b"".join([c async for c in self._spool_chunks(spool)])
                digest = hashlib.sha256(data).digest()
            else:
                staged, digest = await self._stage(spool)
        except psycopg.Error as exc:
            spool.discard()
            if connection_lost(exc):
                await self._health.lost()
            raise store_error(exc) from exc
        except OSError as exc:  # the spool file could not be read
            spool.discard()
            raise StoreError(f"could not store message: {exc}") from exc

        def quick_outcome(
            quick: tuple[list[tuple[int, int, int]], list[str], dict[str, Quota]],
        ) -> tuple[Delivered, list[PgAfterCommit]]:
            placed, crossed, after = quick
            touched = [
                (q[0], (t.account, t.mailbox)) for q, t in zip(placed, all_targets, strict=True)
            ]
            uids = tuple((t, q[1]) for q, t in zip(placed, all_targets, strict=True))
            kept = [(q[0], q[1], q[2]) for q in placed]  # (mailbox id, UID, UIDVALIDITY)
            return Delivered(uids, validities=tuple(q[2] for q in placed)), [
                lambda: self.feed.committed(touched),
                self._keep_new(kept, data),
                self._quota_warn_later(crossed),
                lambda: self._kept_quotas(after),  # after the feed dropped them
            ]

        async def solo(conn: Conn) -> Callable[[], Awaitable[PgOutcome | None]]:
            """The one statement sent (alone in the committer's pipeline, postgres_commit.py,
            or first in a batch's op); the function returned reads its outcome."""
            cur = await self._send_at_once(conn, all_targets, digest, size, data, facts, now, zone)

            async def finish() -> PgOutcome | None:
                quick = self._at_once_result(all_targets, size, await cur.fetchall())
                return None if quick is None else quick_outcome(quick)

            return finish

        async def op(conn: Conn) -> tuple[Delivered, list[PgAfterCommit]]:
            if staged is None and not all_queued:  # one statement, quota check included
                got = await (await solo(conn))()
                if got is not None:
                    return got
            # Quota first (postgres_quota.py): the accounts' rows stay locked to commit.
            targets, refused, crossed = await self._quota_admit(
                conn, all_targets, size, quota_fallback
            )
            over = tuple(refused.items())
            if refused and quota_fallback is None:  # raised below, outside the batch
                return Delivered((), None, over), []
            queued = [q for q in all_queued if q.owner not in refused]
            for account in refused:
                queued += (quota_fallback or {}).get(account, ())
            if not targets and not queued:
                return Delivered((), None, over), []
            refs = len(targets) + (1 if queued else 0)
            warn = self._quota_warn_later(crossed)
            # UIDs first (the batch locked these rows already, in id order), then the body.
            allocated: list[tuple[int, int, int, int]] = []  # mailbox id, uid, modseq, validity
            for target in targets:
                row = await self._one(
                    conn,
                    "UPDATE mailboxes m SET uidnext = m.uidnext + 1,"
                    " highestmodseq = m.highestmodseq + 1 FROM accounts a"
                    " WHERE a.id = m.account_id AND a.name = %s AND m.name = %s"
                    " RETURNING m.id, m.uidnext - 1, m.highestmodseq, m.uidvalidity",
                    (target.account, target.mailbox),
                )
                if row is None:  # first delivery to this account or mailbox
                    mailbox_id = await self._mailbox_id(conn, target.account, target.mailbox)
                    row = await self._one(
                        conn,
                        "UPDATE mailboxes SET uidnext = uidnext + 1,"
                        " highestmodseq = highestmodseq + 1 WHERE id = %s"
                        " RETURNING id, uidnext - 1, highestmodseq, uidvalidity",
                        (mailbox_id,),
                    )
                    assert row is not None
                allocated.append((int(row[0]), int(row[1]), int(row[2]), int(row[3])))
            blob_id = await self._link_blob(conn, digest, size, refs, data, staged)
            if facts is not None:
                await conn.execute(
                    "INSERT INTO blob_facts (blob_id, envelope, bodystructure, body, tree,"
                    " sent_date) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (blob_id) DO UPDATE"
                    " SET envelope = EXCLUDED.envelope, bodystructure = EXCLUDED.bodystructure,"
                    " body = EXCLUDED.body, tree = EXCLUDED.tree, sent_date = EXCLUDED.sent_date",
                    (blob_id, *_facts_row(facts)),
                )
            if allocated:
                await conn.execute(
                    "INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, flags,"
                    " modseq, zone) SELECT t.mailbox_id, t.uid, %s, %s, %s, t.flags, t.modseq, %s"
                    " FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[])"
                    " AS t(mailbox_id, uid, flags, modseq)",
                    (
                        blob_id,
                        size,
                        now,
                        zone,
                        [a[0] for a in allocated],
                        [a[1] for a in allocated],
                        [" ".join(normalize_flags(t.flags)) for t in targets],
                        [a[2] for a in allocated],
                    ),
                )
            queue_id: int | None = None
            if queued:
                queue_id = await self._insert_queue(
                    conn, blob_id, queue_skip, envelope, now, queued
                )
            touched = [
                (a[0], (t.account, t.mailbox)) for a, t in zip(allocated, targets, strict=True)
            ]
            uids = tuple((t, a[1]) for t, a in zip(targets, allocated, strict=True))
            kept = [(a[0], a[1], a[3]) for a in allocated]  # (mailbox id, UID, UIDVALIDITY)
            validities = tuple(a[3] for a in allocated)
            return Delivered(uids, queue_id, over, validities), [
                lambda: self.feed.committed(touched),
                warn,
                self._keep_new(kept, data),
            ]

        try:
            group = None
            alone = None
            if staged is None and data is not None and not all_queued:  # postgres_group.py
                grouped = GroupedDelivery(targets, digest, size, data, facts, now, zone)
                group = (self._deliver_group, grouped)
                alone = solo if len(targets) == 1 else None
            result: Delivered = await self._committer.submit(
                op,
                [(t.account, t.mailbox) for t in targets],
                guarded=False,
                group=group,
                solo=alone,
            )
        except Exception:
            # Not on cancellation: the write may still commit, and needs its chunks.
            if staged is not None:
                await self._unstage(staged)
            raise
        finally:
            spool.discard()
        if not result.uids and result.queue_id is None:  # all refused over quota
            if staged is not None:
                await self._unstage(staged)
            if quota_fallback is None:
                account, permanent = result.over_quota[0]
                raise QuotaExceededError(account, permanent)
        return result

    async def _send_at_once(
        self,
        conn: Conn,
        targets: Sequence[DeliveryTarget],
        digest: bytes,
        size: int,
        data: bytes | None,
        facts: MessageFacts | None,
        now: float,
        zone: int,
    ) -> psycopg.AsyncCursor[Any]:
        """The common delivery in one statement (one round trip): existing mailboxes, a
        small body, nothing queued, every account within its quota (its row locked and
        checked in the statement).  Sent here; ``_at_once_result`` reads its rows (in a
        pipeline: after its Sync): (mailbox id, UID, UIDVALIDITY) per target, the accounts
        whose usage crossed 90 % and each account's quota after it, or None when a
        mailbox is missing (or named twice) or an account's quota needs a closer look:
        the caller then goes step by step.  UIDs
        taken meanwhile by the other targets are left unused: a gap, which IMAP allows.
        """
        default_storage, default_messages = self._quota_default
        return await conn.execute(
            _AT_ONCE,
            (
                [t.account for t in targets],
                [t.mailbox for t in targets],
                [" ".join(normalize_flags(t.flags)) for t in targets],
                [t.quota for t in targets],
                size,
                default_storage,
                default_messages,
                digest,
                size,
                len(targets),
                data,
                len(targets),
                *(_facts_row(facts) if facts is not None else (b"", None, None, None, None)),
                facts is not None,
                size,
                now,
                zone,
            ),
        )

    def _at_once_result(
        self, targets: Sequence[DeliveryTarget], size: int, rows: list[Any]
    ) -> tuple[list[tuple[int, int, int]], list[str], dict[str, Quota]] | None:
        if len(rows) != len(targets) or rows[0][2] is None:
            return None
        copies: dict[str, int] = {}
        before: dict[str, Quota] = {}
        for t, r in zip(targets, rows, strict=True):
            if t.quota:
                copies[t.account] = copies.get(t.account, 0) + 1
                before[t.account] = self._quota_of(r[3:7])
        crossed = [a for a, n in copies.items() if before[a].crossed(size * n, n)]
        after = {
            a: dataclasses.replace(
                q,
                used_storage=q.used_storage + size * copies[a],
                used_messages=q.used_messages + copies[a],
            )
            for a, q in before.items()
        }
        return [(int(r[0]), int(r[1]), int(r[7])) for r in rows], crossed, after

    def _kept_quotas(self, quotas: dict[str, Quota]) -> None:
        """What a delivery left in the rows it locked: fresh copies for the pre-check."""
        for account, quota in quotas.items():
            self._keep_quota(account, quota)

    async def _link_blob(
        self,
        conn: Conn,
        digest: bytes,
        size: int,
        refs: int,
        data: bytes | None,
        staged: int | None,
    ) -> int:
        """The body's row: a new one, or more references to an identical one."""
        if staged is None:
            row = await self._one(
                conn,
                "INSERT INTO blobs (digest, size, refs, data) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (digest) DO UPDATE SET refs = blobs.refs + EXCLUDED.refs"
                " RETURNING id",
                (digest, size, refs, data),
            )
            assert row is not None
            return int(row[0])
        row = await self._one(
            conn,
            "INSERT INTO blobs (id, digest, size, refs) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (digest) DO UPDATE SET refs = blobs.refs + EXCLUDED.refs"
            " RETURNING id",
            (staged, digest, size, refs),
        )
        assert row is not None
        if (
            await self._one(
                conn, "DELETE FROM blob_staging WHERE blob_id = %s RETURNING 1", (staged,)
            )
            is None
        ):
            raise StoreError("the staged message body is gone")  # swept: never link it
        if int(row[0]) != staged:  # the same body was stored before: ours is not needed
            await conn.execute("DELETE FROM blob_chunks WHERE blob_id = %s", (staged,))
        return int(row[0])

    async def create_account(self, account: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await self._mailbox_id(conn, account, INBOX)
            return None, []

        await self._write(op)

    async def delete_account(self, account: str) -> None:
        """Remove the account's mailboxes, messages (bodies no other copy uses),
        subscriptions, Sieve scripts, vacation memory and junk-filter counts, at once."""

        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            for table in _ACCOUNT_TABLES:
                await conn.execute(f"DELETE FROM {table} WHERE account = %s", (account,))
            await conn.execute("DELETE FROM acl WHERE identifier = %s", (account,))  # its grants
            account_id = await self._account_id(conn, account, create=False)
            if account_id is None:
                return None, []
            boxes = await self._all(
                conn,
                "SELECT id, name FROM mailboxes WHERE account_id = %s ORDER BY id FOR UPDATE",
                (account_id,),
            )
            ids = [int(r[0]) for r in boxes]
            rows = await self._all(
                conn,
                "DELETE FROM messages WHERE mailbox_id = ANY(%s::bigint[]) RETURNING blob_id",
                (ids,),
            )
            await self._release_blobs(conn, [int(r[0]) for r in rows])
            await conn.execute("DELETE FROM expunged WHERE mailbox_id = ANY(%s::bigint[])", (ids,))
            await conn.execute(
                "DELETE FROM urlauth_keys WHERE mailbox_id = ANY(%s::bigint[])", (ids,)
            )
            await conn.execute("DELETE FROM mailboxes WHERE account_id = %s", (account_id,))
            await conn.execute("DELETE FROM subscriptions WHERE account_id = %s", (account_id,))
            await conn.execute("DELETE FROM accounts WHERE id = %s", (account_id,))
            touched = [(int(r[0]), (account, str(r[1]))) for r in boxes]
            return None, [lambda: self.feed.committed(touched), lambda: self._forget_boxes(account)]

        await self._write(op)

    async def set_aside_account(self, account: str) -> str | None:
        """Move everything of the account to a new tombstone name, in one transaction.

        Returns that name (the address, a space and a deletion stamp: never a login
        name), or None when the store held nothing under ``account``.
        """
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tombstone = f"{account} (deleted {stamp} {secrets.token_hex(3)})"

        async def op(conn: Conn) -> tuple[str | None, list[PgAfterCommit]]:
            account_id = await self._account_id(conn, account, create=False)
            moved = 0
            for table in _ACCOUNT_TABLES:
                cur = await conn.execute(
                    f"UPDATE {table} SET account = %s WHERE account = %s", (tombstone, account)
                )
                moved += cur.rowcount
            await conn.execute("DELETE FROM acl WHERE identifier = %s", (account,))  # its grants
            if account_id is None and not moved:
                return None, []
            if account_id is None:  # scripts or filter data only: listed all the same
                await self._account_id(conn, tombstone, create=True)
            else:
                await conn.execute(
                    "UPDATE accounts SET name = %s WHERE id = %s", (tombstone, account_id)
                )
            # other nodes forget its mailbox names too (a new account may take the name)
            return tombstone, [
                lambda: self._forget_boxes(account),
                lambda: self.feed.account_committed(account),
            ]

        result: str | None = await self._write(op)
        return result

    async def kept_accounts(self) -> list[tuple[str, int]]:
        """Tombstone names with their message counts, by name."""
        rows = await self._fetchall(
            "SELECT a.name, count(m.uid) FROM accounts a"
            " LEFT JOIN mailboxes x ON x.account_id = a.id"
            " LEFT JOIN messages m ON m.mailbox_id = x.id"
            " WHERE strpos(a.name, ' ') > 0 GROUP BY a.id ORDER BY a.name"
        )
        return [(str(name), int(count)) for name, count in rows]

    async def expunge(self, account: str, mailbox: str, uids: Sequence[int]) -> int:
        wanted = sorted(set(uids))

        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            mailbox_id = await self._find_mailbox(conn, account, mailbox)
            if mailbox_id is None or not wanted:
                return 0, []
            modseq = await self._new_modseq(conn, mailbox_id)
            rows = await self._all(
                conn,
                "DELETE FROM messages WHERE mailbox_id = %s AND uid = ANY(%s::bigint[])"
                " RETURNING uid, blob_id",
                (mailbox_id, wanted),
            )
            if rows:
                await conn.execute(
                    "INSERT INTO expunged (mailbox_id, uid, modseq) SELECT %s, u, %s"
                    " FROM unnest(%s::bigint[]) AS u ON CONFLICT (mailbox_id, uid)"
                    " DO UPDATE SET modseq = EXCLUDED.modseq",
                    (mailbox_id, modseq, [int(r[0]) for r in rows]),
                )
                await self._release_blobs(conn, [int(r[1]) for r in rows])
            touched = [(mailbox_id, (account, mailbox))]
            return len(rows), [lambda: self.feed.committed(touched)]

        removed: int = await self._write(op, [(account, mailbox)], guarded=False)
        return removed

    # -- reading --------------------------------------------------------------------

    async def list_messages(self, account: str, mailbox: str = INBOX) -> list[MessageInfo]:
        rows = await self._fetchall(
            "SELECT m.uid, m.size, m.internal_date, m.flags, m.modseq, m.zone FROM messages m"
            " JOIN mailboxes x ON x.id = m.mailbox_id JOIN accounts a ON a.id = x.account_id"
            " WHERE a.name = %s AND x.name = %s ORDER BY m.uid",
            (account, mailbox),
        )
        return [
            MessageInfo(int(uid), int(size), float(date), tuple(flags.split()), int(ms), int(z))
            for uid, size, date, flags, ms, z in rows
        ]

    async def mailbox_state(self, account: str, mailbox: str = INBOX) -> MailboxState:
        epoch = self._names_epoch
        row = await self._mailbox_row(
            account,
            mailbox,
            "m.uidvalidity, m.uidnext, m.highestmodseq",
        )
        if row is None:
            raise StoreError(f"mailbox {mailbox} of {account} does not exist")
        marks = (int(row[0]), int(row[1]), int(row[2]), int(row[3]))
        self._learn_box(account, mailbox, marks[0], marks[1], epoch)
        memo = exists_memo(self)
        count = memo.get(marks)  # counted under the same marks: unchanged (exists.py)
        if count is None:
            counted = await self._fetchone(
                "SELECT count(*) FROM messages WHERE mailbox_id = %s", (marks[0],)
            )
            count = int(counted[0]) if counted is not None else 0
            memo.put(marks, count)
        return MailboxState(marks[1], marks[2], marks[3], count)

    def change_counter(self, account: str, mailbox: str) -> int:
        """Commits to the mailbox this process made or heard of (NOTIFY from other nodes)."""
        return self.feed.versions.get((account, mailbox), 0)

    async def wait_for_change(
        self, account: str, mailbox: str, modseq: int, timeout: float, counter: int | None = None
    ) -> bool:
        key = (account, mailbox)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.feed.waiters.setdefault(key, set()).add(future)
        # a bare timer, not asyncio.wait_for: thousands of idle sessions wait here at once
        timer = loop.call_later(timeout, _expire, future)
        try:
            if counter is None or counter != self.feed.versions.get(key, 0):
                state = await self.mailbox_state(account, mailbox)
                if state.highestmodseq > modseq:
                    return True
            await future
            return True
        except TimeoutError:
            return False
        finally:
            timer.cancel()
            waiters = self.feed.waiters.get(key)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    self.feed.waiters.pop(key, None)


# Data-modifying CTEs all run, so the body and the messages are written only when every
# target mailbox was found (and updated) by ``alloc``.
_AT_ONCE = f"""
WITH t AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bool[]) WITH ORDINALITY
        AS t(account, name, flags, counted, ord)
), want AS (
    SELECT account, count(*) AS n FROM t WHERE counted GROUP BY account
), {quota_fits("%s::bigint * want.n")}, alloc AS (
    UPDATE mailboxes m SET uidnext = m.uidnext + 1, highestmodseq = m.highestmodseq + 1
    FROM accounts a, t WHERE a.id = m.account_id AND a.name = t.account AND m.name = t.name
        AND (SELECT ok FROM fits)
    RETURNING m.id, m.uidnext - 1 AS uid, m.highestmodseq AS modseq, t.ord, t.flags,
        t.account, m.uidvalidity
), blob AS (
    INSERT INTO blobs (digest, size, refs, data)
    SELECT %s::bytea, %s::bigint, %s::int, %s::bytea WHERE (SELECT count(*) FROM alloc) = %s
    ON CONFLICT (digest) DO UPDATE SET refs = blobs.refs + EXCLUDED.refs RETURNING id
), facts AS (
    INSERT INTO blob_facts (blob_id, envelope, bodystructure, body, tree, sent_date)
    SELECT id, %s::bytea, %s::bytea, %s::bytea, %s::bytea, %s::float8 FROM blob WHERE %s::bool
    ON CONFLICT (blob_id) DO UPDATE
    SET envelope = EXCLUDED.envelope, bodystructure = EXCLUDED.bodystructure,
        body = EXCLUDED.body, tree = EXCLUDED.tree, sent_date = EXCLUDED.sent_date
), msgs AS (
    INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, flags, modseq, zone)
    SELECT alloc.id, alloc.uid, blob.id, %s::bigint, %s::float8, alloc.flags, alloc.modseq,
        %s::int
    FROM alloc, blob
)
SELECT alloc.id, alloc.uid, (SELECT id FROM blob), q.storage, q.messages, q.used_storage,
    q.used_messages, alloc.uidvalidity
FROM alloc LEFT JOIN q ON q.name = alloc.account ORDER BY alloc.ord
"""


def _connect_options(url: str) -> dict[str, Any]:
    """Pool connections in autocommit, and never waiting forever to connect: a database
    host that drops packets would otherwise hold each reconnection attempt for as long as
    TCP retries (``connect_timeout`` in the URL wins)."""
    options: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in conninfo_to_dict(url):
        options["connect_timeout"] = _CONNECT_TIMEOUT
    return options


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _facts_row(facts: MessageFacts) -> tuple[Any, ...]:
    return (facts.envelope, facts.bodystructure, facts.body, facts.tree, facts.sent_date)
