"""Writing a copy of an embedded store into PostgreSQL (``correo store copy``).

The copy keeps what IMAP clients remember: each mailbox's UIDVALIDITY, every message's
UID, MODSEQ, flags and INTERNALDATE, the mailbox's UIDNEXT and HIGHESTMODSEQ, and the
expunge history QRESYNC answers from; so a client that synchronised with the embedded
store finds the same mailbox afterwards and fetches nothing again.  Bodies go in by
SHA-256 as the store itself writes them (inline up to one chunk, else in chunks),
single-instance across mailboxes and the queue.

The target is made to mirror the source: a second run adds what is new, updates what
changed, removes what went, and writes nothing when nothing changed.  Work is committed
in batches, so a copy that is interrupted keeps what it committed and the next run goes
on from there.  ``meta.store_copy`` records which store the database is a copy of: a
database already holding other mail is refused, and so is a mailbox that moved on past
the source (a node already serving from the database).

Synchronous psycopg: this is a batch job on its own connection, not a server path.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import psycopg

from correo.store.postgres_base import CHUNK, drop_nul
from correo.store.sqlite_source import SourceBody, SourceMailbox, SourceMessage

__all__ = ["CopyError", "PgCopyTarget", "TargetMailbox", "coerce", "recipient_row"]

Row = tuple[Any, ...]
#: Advisory lock held while a copy runs: two copies into one database would interleave.
_COPY_LOCK: Final = 0x636F70790001
#: Target tables keyed by mailbox id that go with a mailbox (present in later schemas).
_MAILBOX_TABLES: Final = ("expunged", "urlauth_keys")


class CopyError(Exception):
    """The copy cannot go on; the message is meant for the administrator."""


TargetMailbox = tuple[int, int, int, int]  # (id, uidvalidity, uidnext, highestmodseq)


class PgCopyTarget:
    """One connection to the target database, in explicit transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._tables: set[str] = set()

    # -- connection ---------------------------------------------------------------------

    def open(self) -> None:
        """Connect, bring the schema up to date (creating it), take the copy lock."""
        try:
            asyncio.run(_migrate(self.url))
            conn = psycopg.connect(self.url, connect_timeout=10)
        except (psycopg.Error, RuntimeError) as exc:
            raise CopyError(f"cannot open the database: {exc}") from exc
        self._conn = conn
        row = self._one("SELECT pg_try_advisory_lock(%s)", (_COPY_LOCK,))
        conn.commit()
        if row is None or not row[0]:
            self.close()
            raise CopyError("another store copy into this database is running")
        self._tables = {
            str(r[0])
            for r in self._all(
                "SELECT table_name FROM information_schema.tables WHERE table_schema ="
                " current_schema()"
            )
        }
        conn.commit()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session: the advisory lock goes with it
            self._conn = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        assert self._conn is not None, "open() first"
        return self._conn

    def commit(self) -> None:
        self.conn.commit()

    def has_table(self, table: str) -> bool:
        return table in self._tables

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.conn.execute(sql.encode(), params).fetchone()
        return row

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self.conn.execute(sql.encode(), params).fetchall()
        return rows

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql.encode(), params).rowcount

    # -- whose copy this is -------------------------------------------------------------

    def claim(self, copy_id: int) -> None:
        """Refuse a database holding other mail; mark an empty one as this store's copy."""
        row = self._one("SELECT value FROM meta WHERE key = 'store_copy'")
        if row is not None and int(row[0]) != copy_id:
            raise CopyError("the database holds a copy of another store")
        if row is None:
            used = self._one(
                "SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM queue)"
            )
            if used is not None and int(used[0]):
                raise CopyError(
                    "the database already holds mail that is not a copy of this store:"
                    " copy into an empty database"
                )
            self._run("INSERT INTO meta (key, value) VALUES ('store_copy', %s)", (copy_id,))
        self.commit()

    def raise_uidvalidity(self, value: int) -> None:
        """New mailboxes made on the database get a UIDVALIDITY above every copied one."""
        self._run(
            "INSERT INTO meta (key, value) VALUES ('uidvalidity', %s) ON CONFLICT (key)"
            " DO UPDATE SET value = greatest(meta.value, EXCLUDED.value)",
            (value,),
        )

    # -- accounts and mailboxes ---------------------------------------------------------

    def accounts(self) -> dict[str, int]:
        return {str(n): int(i) for i, n in self._all("SELECT id, name FROM accounts")}

    def add_account(self, name: str, created: float) -> int:
        row = self._one(
            "INSERT INTO accounts (name, created) VALUES (%s, %s) RETURNING id", (name, created)
        )
        assert row is not None
        return int(row[0])

    def mailboxes(self) -> dict[tuple[str, str], TargetMailbox]:
        return {
            (str(a), str(n)): (int(i), int(v), int(u), int(h))
            for i, a, n, v, u, h in self._all(
                "SELECT m.id, a.name, m.name, m.uidvalidity, m.uidnext, m.highestmodseq"
                " FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
            )
        }

    def prepare_mailbox(
        self, src: SourceMailbox, account_id: int, found: TargetMailbox | None
    ) -> int:
        """The target mailbox, made or brought to the source's counters; its id.

        One with another UIDVALIDITY was deleted and made again in the source: it is
        replaced.  One past the source (a higher UIDNEXT or HIGHESTMODSEQ) has taken
        mail of its own: CopyError, nothing is overwritten.
        """
        if found is not None and found[1] != src.uidvalidity:
            self.drop_mailbox(found[0])
            found = None
        if found is not None and (found[2] > src.uidnext or found[3] > src.highestmodseq):
            raise CopyError(
                f"{src.account}/{src.name} in the database has changed since it was copied"
                " (is a node already using the database?): nothing was overwritten"
            )
        if found is None:
            row = self._one(
                "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highestmodseq,"
                " special_use, recent_uid) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    account_id,
                    src.name,
                    src.uidvalidity,
                    src.uidnext,
                    src.highestmodseq,
                    src.special_use,
                    src.recent_uid,
                ),
            )
            assert row is not None
            return int(row[0])
        self._run(
            "UPDATE mailboxes SET uidnext = %s, highestmodseq = %s, special_use = %s,"
            " recent_uid = %s WHERE id = %s AND (uidnext, highestmodseq, special_use,"
            " recent_uid) IS DISTINCT FROM (%s, %s, %s, %s)",
            (
                src.uidnext,
                src.highestmodseq,
                src.special_use,
                src.recent_uid,
                found[0],
                src.uidnext,
                src.highestmodseq,
                src.special_use,
                src.recent_uid,
            ),
        )
        return found[0]

    def drop_mailbox(self, mailbox_id: int) -> int:
        """Remove a mailbox the source no longer has, with its messages; how many."""
        rows = self._all(
            "DELETE FROM messages WHERE mailbox_id = %s RETURNING blob_id", (mailbox_id,)
        )
        self.release([int(r[0]) for r in rows])
        for table in _MAILBOX_TABLES:
            if self.has_table(table):
                self._run(f"DELETE FROM {table} WHERE mailbox_id = %s", (mailbox_id,))
        self._run("DELETE FROM mailboxes WHERE id = %s", (mailbox_id,))
        return len(rows)

    def drop_account(self, account_id: int) -> None:
        """An account with no mailbox left (removed from the source since a copy)."""
        self._run("DELETE FROM subscriptions WHERE account_id = %s", (account_id,))
        self._run("DELETE FROM accounts WHERE id = %s", (account_id,))

    def set_quota_limits(self, account_id: int, storage: int | None, messages: int | None) -> None:
        """An account's own quota limits (``postgres_quota.py``: NULL the default, -1 none)."""
        self._run(
            "INSERT INTO quotas (account_id, storage, messages) VALUES (%s, %s, %s)"
            " ON CONFLICT (account_id) DO UPDATE SET storage = EXCLUDED.storage,"
            " messages = EXCLUDED.messages",
            (account_id, storage, messages),
        )

    def set_subscriptions(self, account_id: int, names: Iterable[str]) -> None:
        wanted = set(names)
        have = {
            str(r[0])
            for r in self._all(
                "SELECT name FROM subscriptions WHERE account_id = %s", (account_id,)
            )
        }
        if have - wanted:
            self._run(
                "DELETE FROM subscriptions WHERE account_id = %s AND name = ANY(%s::text[])",
                (account_id, sorted(have - wanted)),
            )
        if wanted - have:
            self._run(
                "INSERT INTO subscriptions (account_id, name) SELECT %s, n"
                " FROM unnest(%s::text[]) AS n",
                (account_id, sorted(wanted - have)),
            )

    # -- messages -----------------------------------------------------------------------

    def messages(self, mailbox_id: int, after: int, upto: int | None) -> dict[int, tuple[int, str]]:
        """UID -> (MODSEQ, flags) of the target's messages with after < UID <= upto."""
        if upto is None:
            rows = self._all(
                "SELECT uid, modseq, flags FROM messages WHERE mailbox_id = %s AND uid > %s",
                (mailbox_id, after),
            )
        else:
            rows = self._all(
                "SELECT uid, modseq, flags FROM messages WHERE mailbox_id = %s"
                " AND uid > %s AND uid <= %s",
                (mailbox_id, after, upto),
            )
        return {int(u): (int(m), str(f)) for u, m, f in rows}

    def add_message(self, mailbox_id: int, msg: SourceMessage, blob_id: int) -> None:
        self._run(
            "INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, flags,"
            " modseq, zone) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                mailbox_id,
                msg.uid,
                blob_id,
                msg.size,
                msg.internal_date,
                msg.flags,
                msg.modseq,
                msg.zone,
            ),
        )

    def set_flags(self, mailbox_id: int, msg: SourceMessage) -> None:
        self._run(
            "UPDATE messages SET flags = %s, modseq = %s WHERE mailbox_id = %s AND uid = %s",
            (msg.flags, msg.modseq, mailbox_id, msg.uid),
        )

    def remove_messages(self, mailbox_id: int, uids: Sequence[int]) -> None:
        if not uids:
            return
        rows = self._all(
            "DELETE FROM messages WHERE mailbox_id = %s AND uid = ANY(%s::bigint[])"
            " RETURNING blob_id",
            (mailbox_id, list(uids)),
        )
        self.release([int(r[0]) for r in rows])

    def set_expunged(self, mailbox_id: int, source: Iterator[tuple[int, int]]) -> None:
        """The expunge history (RFC 7162 §3.2.5.2 VANISHED answers from it), mirrored."""
        have = {
            int(u): int(m)
            for u, m in self._all(
                "SELECT uid, modseq FROM expunged WHERE mailbox_id = %s", (mailbox_id,)
            )
        }
        changed: list[tuple[int, int]] = []
        for uid, modseq in source:
            if have.pop(uid, None) != modseq:
                changed.append((uid, modseq))
        if have:
            self._run(
                "DELETE FROM expunged WHERE mailbox_id = %s AND uid = ANY(%s::bigint[])",
                (mailbox_id, sorted(have)),
            )
        for i in range(0, len(changed), 5000):
            part = changed[i : i + 5000]
            self._run(
                "INSERT INTO expunged (mailbox_id, uid, modseq) SELECT %s, u, m"
                " FROM unnest(%s::bigint[], %s::bigint[]) AS t(u, m)"
                " ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
                (mailbox_id, [c[0] for c in part], [c[1] for c in part]),
            )

    def set_urlauth_key(self, mailbox_id: int, key: bytes | None) -> None:
        """URLAUTH URLs issued before the move stay valid: the same mailbox access key."""
        if not self.has_table("urlauth_keys"):
            return
        if key is None:
            self._run("DELETE FROM urlauth_keys WHERE mailbox_id = %s", (mailbox_id,))
            return
        self._run(
            "INSERT INTO urlauth_keys (mailbox_id, key) VALUES (%s, %s) ON CONFLICT (mailbox_id)"
            " DO UPDATE SET key = EXCLUDED.key WHERE urlauth_keys.key <> EXCLUDED.key",
            (mailbox_id, key),
        )

    def indexed(self, mailbox_id: int, after: int, upto: int | None) -> set[int]:
        """UIDs with SEARCH text in the target, after < UID <= upto."""
        bound = "" if upto is None else " AND uid <= %s"
        params = (mailbox_id, after) if upto is None else (mailbox_id, after, upto)
        rows = self._all(
            "SELECT uid FROM text_docs WHERE mailbox_id = %s AND uid > %s" + bound, params
        )
        return {int(r[0]) for r in rows}

    def add_texts(self, mailbox_id: int, items: Sequence[tuple[int, str]]) -> None:
        """The SEARCH index's text of copied messages (for messages that are there)."""
        if not items:
            return
        self._run(
            "INSERT INTO text_docs (mailbox_id, uid, text) SELECT %s, t.uid, t.text"
            " FROM unnest(%b::bigint[], %b::text[]) AS t(uid, text) WHERE EXISTS"
            " (SELECT 1 FROM messages m WHERE m.mailbox_id = %s AND m.uid = t.uid)"
            " ON CONFLICT DO NOTHING",
            (mailbox_id, [i[0] for i in items], [drop_nul(i[1]) for i in items], mailbox_id),
        )

    # -- bodies -------------------------------------------------------------------------

    def blob(
        self, digest: bytes, body: SourceBody, chunks: Callable[[int], Iterator[bytes]]
    ) -> int:
        """One more reference to the body with this SHA-256, storing it when new."""
        row = self._one(
            "UPDATE blobs SET refs = refs + 1 WHERE digest = %s RETURNING id", (digest,)
        )
        if row is None:
            if body.size <= CHUNK:
                data = b"".join(chunks(CHUNK))
                row = self._one(
                    "INSERT INTO blobs (digest, size, refs, data) VALUES (%s, %s, 1, %s)"
                    " RETURNING id",
                    (digest, body.size, data),
                )
                assert row is not None
            else:
                row = self._one(
                    "INSERT INTO blobs (digest, size, refs) VALUES (%s, %s, 1) RETURNING id",
                    (digest, body.size),
                )
                assert row is not None
                for seq, piece in enumerate(chunks(CHUNK)):  # exactly CHUNK each: seeks
                    self._run(
                        "INSERT INTO blob_chunks (blob_id, seq, data) VALUES (%s, %s, %s)",
                        (int(row[0]), seq, piece),
                    )
        blob_id = int(row[0])
        if body.facts is not None:
            self._run(
                "INSERT INTO blob_facts (blob_id, envelope, bodystructure, body, tree,"
                " sent_date) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (blob_id) DO NOTHING",
                (blob_id, *body.facts),
            )
        return blob_id

    def release(self, blob_ids: Sequence[int]) -> None:
        """One reference fewer per id; bodies nobody uses any more are deleted."""
        if not blob_ids:
            return
        counts = Counter(blob_ids)
        ids = sorted(counts)
        rows = self._all(
            "UPDATE blobs b SET refs = b.refs - t.n FROM unnest(%s::bigint[], %s::int[])"
            " AS t(id, n) WHERE b.id = t.id RETURNING b.id, b.refs",
            (ids, [counts[i] for i in ids]),
        )
        dead = [int(r[0]) for r in rows if r[1] <= 0]
        if dead:
            self._run("DELETE FROM blobs WHERE id = ANY(%s::bigint[])", (dead,))
            for table in ("blob_chunks", "blob_facts", "blob_digests"):
                self._run(f"DELETE FROM {table} WHERE blob_id = ANY(%s::bigint[])", (dead,))

    # -- the queue ----------------------------------------------------------------------

    def queue(self) -> dict[int, list[Row]]:
        """Queue id -> its recipients as the source lists them (see ``set_recipients``)."""
        out: dict[int, list[Row]] = {int(r[0]): [] for r in self._all("SELECT id FROM queue")}
        for row in self._all(
            "SELECT queue_id, address, notify, orcpt, status, attempts, next_attempt,"
            " last_error, warned FROM queue_recipients ORDER BY queue_id, address"
        ):
            out.setdefault(int(row[0]), []).append(recipient_row(row[1:]))
        return out

    def add_queued(self, row: Row, blob_id: int) -> None:
        """A queued message under its own id (ids show in logs and ``correo queue``)."""
        (queue_id, _blob, skip, sender, envid, ret, body, smtputf8, auth, created) = row
        self._run(
            "INSERT INTO queue (id, blob_id, skip, sender, envid, ret, body, smtputf8,"
            " authenticated, created) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (queue_id, blob_id, skip, sender, envid, ret, body, bool(smtputf8), auth, created),
        )

    def set_recipients(self, queue_id: int, recipients: Sequence[Row]) -> None:
        self._run("DELETE FROM queue_recipients WHERE queue_id = %s", (queue_id,))
        for r in recipients:
            self._run(
                "INSERT INTO queue_recipients (queue_id, address, notify, orcpt, status,"
                " attempts, next_attempt, last_error, warned)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (queue_id, *recipient_row(r)),
            )

    def remove_queued(self, queue_id: int) -> None:
        self._run("DELETE FROM queue_recipients WHERE queue_id = %s", (queue_id,))
        row = self._one("DELETE FROM queue WHERE id = %s RETURNING blob_id", (queue_id,))
        if row is not None:
            self.release([int(row[0])])

    def queue_ids_follow(self) -> None:
        """New queue ids continue after the copied ones."""
        self._run(
            "SELECT setval('queue_id_seq', greatest((SELECT max(id) FROM queue),"
            " (SELECT last_value FROM queue_id_seq)))"
        )

    # -- plain tables (Sieve, vacation, junk filter, certificates, directory) -----------

    def columns(self, table: str) -> dict[str, str]:
        """Column -> data type of a target table."""
        return {
            str(n): str(t)
            for n, t in self._all(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            )
        }

    def primary_key(self, table: str) -> list[str]:
        return [
            str(r[0])
            for r in self._all(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid ="
                " i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass"
                " AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                (table,),
            )
        ]

    def rows(
        self, table: str, columns: Sequence[str], where: str, params: Sequence[Any]
    ) -> list[Row]:
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        return self._all(sql + (f" WHERE {where}" if where else ""), params)

    def mirror(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        source: Iterable[Row],
        target: Iterable[Row],
    ) -> int:
        """Make the target's rows (one account's, or a whole small table) equal to the
        source's: insert and update by primary key, delete the ones gone; returns how
        many rows were written.  ``source`` rows are already in the target's types."""
        positions = [columns.index(k) for k in key]
        have = {tuple(r[p] for p in positions): tuple(r) for r in target}
        changed = []
        for row in source:
            pk = tuple(row[p] for p in positions)
            if have.pop(pk, None) != tuple(row):
                changed.append(row)
        for pk in have:
            where = " AND ".join(f"{k} = %s" for k in key)
            self._run(f"DELETE FROM {table} WHERE {where}", pk)
        if changed:
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
            conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            self.conn.cursor().executemany(
                (
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
                    f" ({', '.join(['%s'] * len(columns))}) ON CONFLICT ({', '.join(key)})"
                    f" {conflict}"
                ).encode(),
                changed,
            )
        return len(changed) + len(have)

    def directory_changed(self) -> None:
        """Tell serving nodes the directory's tables changed (they reload their snapshot),
        as ``correo.directory.postgres`` does for its own writes: delivered at commit."""
        from correo.directory.postgres import CHANNEL

        row = self._one(
            "UPDATE meta SET value = value + 1 WHERE key = 'directory_serial' RETURNING value"
        )
        self._run("SELECT pg_notify(%s, %s)", (CHANNEL, f"store-copy:{row[0] if row else 0}"))


def coerce(value: Any, data_type: str) -> Any:
    """An SQLite value in the PostgreSQL column's type (0/1 booleans, NUL-free text)."""
    if value is None:
        return None
    if data_type == "boolean":
        return bool(value)
    if data_type == "bytea":
        return bytes(value)
    if data_type == "text":
        return drop_nul(str(value))
    if data_type in ("integer", "bigint", "smallint"):
        return int(value)
    if data_type == "double precision":
        return float(value)
    return value


def recipient_row(row: Sequence[Any]) -> Row:
    """A queue recipient's columns, typed alike on both sides (compared between runs)."""
    address, notify, orcpt, status, attempts, next_attempt, last_error, warned = row
    return (
        str(address),
        notify,
        orcpt,
        str(status),
        int(attempts),
        float(next_attempt),
        str(last_error),
        bool(warned),
    )


async def _migrate(url: str) -> None:
    from correo.store.postgres_schema import migrate

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    try:
        await migrate(conn)
    finally:
        await conn.close()
