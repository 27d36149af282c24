"""The SQLite store's files: schema, migrations, connections and write-error mapping.

Shared by :class:`correo.store.sqlite.SqliteStore` and its mixins, so that each of
them stays small; nothing here holds state.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from correo.store.api import MessageFacts, StoreError, StoreFullError

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "TEXT_SCHEMA",
    "TEXT_VERSION",
    "connect",
    "facts_row",
    "fsync_dir",
    "migrate",
    "rows_for_uids",
    "store_error",
]

SCHEMA_VERSION = 3
SCHEMA = """
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
-- changes since a MODSEQ (RFC 7162 QRESYNC, JMAP's catch-up) read only those rows
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged (mailbox_id, modseq);
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
TEXT_VERSION = 3  # 3: the parts' headers are in the text too (SEARCH TEXT)
TEXT_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, mailbox_id INTEGER NOT NULL,
    uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL, UNIQUE (mailbox_id, uidvalidity, uid));
CREATE VIRTUAL TABLE IF NOT EXISTS body USING fts5(
    text, detail='none', tokenize='trigram case_sensitive 1');
"""


_READER_MMAP = 1 << 30


def connect(path: Path, *, writer: bool, durable: bool = True) -> sqlite3.Connection:
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


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a mail.db of any earlier schema to SCHEMA_VERSION (the tables exist)."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version < 2:
        _add_late_columns(conn)
        _move_facts(conn)
    if version < 3:
        _subscriptions_and_zones(conn)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def store_error(exc: sqlite3.Error | OSError) -> StoreError:
    """The StoreError for a failed write: StoreFullError when the disk is full."""
    if isinstance(exc, OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        full = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
    if full:
        return StoreFullError(f"disk full: {exc}")
    return StoreError(f"store write failed: {exc}")


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


def facts_row(facts: MessageFacts) -> tuple[object, ...]:
    return (facts.envelope, facts.bodystructure, facts.body, facts.tree, facts.sent_date)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_UID_CHUNK = 500  # UIDs per statement (SQLite's bound on parameters is far above)


def rows_for_uids(
    conn: sqlite3.Connection, account: str, mailbox: str, uids: Sequence[int], select: str
) -> Iterator[Any]:
    """Rows of ``select`` for a mailbox's UIDs, a bounded chunk of UIDs per statement.

    ``select`` takes the mailbox id as its first parameter and ``{marks}`` where the UID
    placeholders go; an unknown mailbox yields nothing.
    """
    row = conn.execute(
        "SELECT m.id FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
        " WHERE a.name = ? AND m.name = ?",
        (account, mailbox),
    ).fetchone()
    if row is None:
        return
    wanted = list(uids)
    for start in range(0, len(wanted), _UID_CHUNK):
        chunk = wanted[start : start + _UID_CHUNK]
        yield from conn.execute(select.format(marks=",".join("?" * len(chunk))), (row[0], *chunk))
