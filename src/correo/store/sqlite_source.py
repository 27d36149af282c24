"""The embedded store read as rows, for ``correo store copy`` (``correo.cli.storecopy``).

Read only (``mode=ro``): a server still running on the store goes on committing while a
copy reads it.  A mailbox is read inside one read transaction (:meth:`SqliteSource.
snapshot`), so its counters (UIDNEXT, HIGHESTMODSEQ) and its messages agree with each
other; whatever changes between two mailboxes, or after the copy, is picked up by running
the copy again.  Bodies are streamed from their rows or files in bounded chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SourceBody",
    "SourceMailbox",
    "SourceMessage",
    "SqliteSource",
    "read_table",
]

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SourceMailbox:
    id: int
    account: str
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    recent_uid: int


@dataclass(frozen=True, slots=True)
class SourceMessage:
    uid: int
    size: int
    internal_date: float
    flags: str
    modseq: int
    zone: int
    blob_id: int


@dataclass(frozen=True, slots=True)
class SourceBody:
    """A stored body: inline bytes, or a file under ``blobs/`` (``path``)."""

    blob_id: int
    size: int
    data: bytes | None
    path: Path | None
    #: (envelope, bodystructure, body, tree, sent_date), or None when never computed
    facts: Row | None


class SqliteSource:
    """Rows of the store under ``root`` (DATA/store), read without writing to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs"
        self._conn: sqlite3.Connection | None = None
        self.has_text = False
        self._tables: set[str] = set()

    def open(self) -> None:
        uri = f"file:{self.root / 'mail.db'}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        self._conn = conn
        self._tables = self.tables()
        text = self.root / "text.db"
        self.has_text = text.exists()
        if self.has_text:  # the SEARCH index: copied too, or searches scan every body
            conn.execute("ATTACH DATABASE ? AS text", (f"file:{text}?mode=ro",))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "open() first"
        return self._conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees the store at one instant (a read transaction)."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    # -- what there is ------------------------------------------------------------------

    def tables(self) -> set[str]:
        return {str(r[0]) for r in self._all("SELECT name FROM sqlite_master WHERE type='table'")}

    def columns(self, table: str) -> list[str]:
        return [str(r[1]) for r in self._all(f"PRAGMA table_info({table})")]

    def meta(self, key: str) -> int | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def counts(self) -> tuple[int, int]:
        """(messages, queued messages), for the progress bar."""
        (messages,) = self.conn.execute("SELECT count(*) FROM messages").fetchone()
        (queued,) = self.conn.execute("SELECT count(*) FROM queue").fetchone()
        return int(messages), int(queued)

    def accounts(self) -> list[tuple[str, float]]:
        return [(str(n), float(c)) for n, c in self._all("SELECT name, created FROM accounts")]

    def mailboxes(self, account: str | None = None) -> list[SourceMailbox]:
        sql = (
            "SELECT m.id, a.name, m.name, m.uidvalidity, m.uidnext, m.highestmodseq,"
            " m.special_use, m.recent_uid FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
        )
        rows = (
            self._all(sql + " ORDER BY a.name, m.name")
            if account is None
            else self._all(sql + " WHERE a.name = ? ORDER BY m.name", (account,))
        )
        return [_mailbox(r) for r in rows]

    def mailbox(self, mailbox_id: int) -> SourceMailbox | None:
        """One mailbox as it is now (read inside :meth:`snapshot`: with its messages)."""
        row = self.conn.execute(
            "SELECT m.id, a.name, m.name, m.uidvalidity, m.uidnext, m.highestmodseq,"
            " m.special_use, m.recent_uid FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
            " WHERE m.id = ?",
            (mailbox_id,),
        ).fetchone()
        return None if row is None else _mailbox(row)

    def subscriptions(self, account: str) -> list[str]:
        return [
            str(r[0])
            for r in self._all(
                "SELECT s.name FROM subscriptions s JOIN accounts a ON a.id = s.account_id"
                " WHERE a.name = ? ORDER BY s.name",
                (account,),
            )
        ]

    # -- messages, by pages of UIDs -----------------------------------------------------

    def messages(self, mailbox_id: int, after: int, limit: int) -> list[SourceMessage]:
        return [
            SourceMessage(
                int(r[0]), int(r[1]), float(r[2]), str(r[3]), int(r[4]), int(r[5]), int(r[6])
            )
            for r in self._all(
                "SELECT uid, size, internal_date, flags, modseq, zone, blob_id FROM messages"
                " WHERE mailbox_id = ? AND uid > ? ORDER BY uid LIMIT ?",
                (mailbox_id, after, limit),
            )
        ]

    def expunged(self, mailbox_id: int) -> Iterator[tuple[int, int]]:
        """(UID, MODSEQ) of every expunge remembered for QRESYNC, by UID, page by page."""
        after = 0
        while True:
            rows = self._all(
                "SELECT uid, modseq FROM expunged WHERE mailbox_id = ? AND uid > ?"
                " ORDER BY uid LIMIT 1000",
                (mailbox_id, after),
            )
            if not rows:
                return
            for uid, modseq in rows:
                yield int(uid), int(modseq)
            after = int(rows[-1][0])

    def urlauth_key(self, box: SourceMailbox) -> bytes | None:
        """The mailbox's URLAUTH access key (RFC 4467 §2.2), if one was made for it."""
        if "urlauth_keys" not in self._tables:
            return None
        row = self.conn.execute(
            "SELECT key FROM urlauth_keys WHERE mailbox_id = ? AND uidvalidity = ?",
            (box.id, box.uidvalidity),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def texts(self, box: SourceMailbox, after: int, limit: int) -> list[tuple[int, str]]:
        """(UID, indexed text) of the mailbox's messages in the SEARCH index, by UID."""
        if not self.has_text:
            return []
        return [
            (int(uid), str(text))
            for uid, text in self._all(
                "SELECT d.uid, b.text FROM text.docs d JOIN text.body b ON b.rowid = d.id"
                " WHERE d.mailbox_id = ? AND d.uidvalidity = ? AND d.uid > ?"
                " ORDER BY d.uid LIMIT ?",
                (box.id, box.uidvalidity, after, limit),
            )
        ]

    def body(self, blob_id: int) -> SourceBody | None:
        """A body's row; its bytes come from :meth:`chunks` (large ones stay on disk)."""
        row = self.conn.execute(
            "SELECT b.size, CASE WHEN b.path IS NULL THEN b.data END, b.path,"
            " f.envelope, f.bodystructure, f.body, f.tree, f.sent_date"
            " FROM blobs b LEFT JOIN blob_facts f ON f.blob_id = b.id WHERE b.id = ?",
            (blob_id,),
        ).fetchone()
        if row is None:
            return None
        data = None if row[2] is not None else bytes(row[1] or b"")
        path = None if row[2] is None else self.blob_dir / str(row[2])
        facts = None if row[3] is None else tuple(row[3:8])
        return SourceBody(blob_id, int(row[0]), data, path, facts)

    @staticmethod
    def chunks(body: SourceBody, size: int) -> Iterator[bytes]:
        """The body in pieces of exactly ``size`` bytes (the last one shorter).

        OSError (FileNotFoundError) when its file went away: the message was expunged
        after the snapshot began, and the next copy will not ask for it.
        """
        if body.data is not None:
            for i in range(0, len(body.data), size):
                yield body.data[i : i + size]
            return
        assert body.path is not None
        with open(body.path, "rb") as fh:
            while piece := fh.read(size):
                while len(piece) < size:  # a short read is not the end of the file
                    more = fh.read(size - len(piece))
                    if not more:
                        break
                    piece += more
                yield piece

    @classmethod
    def digest(cls, body: SourceBody) -> bytes:
        """SHA-256 of the body's bytes (a file is read once more to store it)."""
        sha = hashlib.sha256()
        for piece in cls.chunks(body, 1 << 20):
            sha.update(piece)
        return sha.digest()

    # -- the queue and the plain tables -------------------------------------------------

    def queue(self) -> list[Row]:
        """(id, blob_id, skip, sender, envid, ret, body, smtputf8, authenticated, created)."""
        return self._all(
            "SELECT id, blob_id, skip, sender, envid, ret, body, smtputf8, authenticated,"
            " created FROM queue ORDER BY id"
        )

    def queue_recipients(self, queue_id: int) -> list[Row]:
        """(address, notify, orcpt, status, attempts, next_attempt, last_error, warned)."""
        return self._all(
            "SELECT address, notify, orcpt, status, attempts, next_attempt, last_error, warned"
            " FROM queue_recipients WHERE queue_id = ? ORDER BY address",
            (queue_id,),
        )

    def rows(
        self, table: str, columns: Sequence[str], where: str = "", params: Sequence[Any] = ()
    ) -> list[Row]:
        """``columns`` of every row of a plain table (``where``: a condition on it)."""
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        return self._all(sql + (f" WHERE {where}" if where else ""), params)


def _mailbox(r: Row) -> SourceMailbox:
    return SourceMailbox(
        int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6], int(r[7])
    )


def read_table(path: Path, table: str) -> tuple[list[str], list[Row]]:
    """(columns, rows) of a small table of another SQLite file (the directory), read only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]
        return columns, conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    finally:
        conn.close()
