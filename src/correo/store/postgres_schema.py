"""The PostgreSQL store's schema, as numbered migrations applied on open.

``schema_version`` records every migration applied; :func:`migrate` runs the missing
ones in order, in one transaction, under an advisory lock, so nodes starting together
never race (the second waits, then finds nothing left to do).  Migration 1 creates
everything; later ones change it, and each is tested from the schema before it.

Layout, and how it differs from the embedded store (``sqlite.py``):

* ``blobs`` holds one row per distinct body, keyed by its SHA-256 (single instance
  across every copy, delivery and the queue, with a reference count).  A body up to one
  chunk (256 KiB) is inline in ``blobs.data``: one indexed read serves it; a larger one
  lives in ``blob_chunks`` so it streams in bounded pieces both ways.  Its chunks are
  written before the delivery's transaction under an id marked in ``blob_staging``;
  the delivery links them (or drops them for an identical body already stored), and
  a server starting up sweeps staged chunks a crash left behind.
* Mailbox ids come from a sequence and are never reused, so the text index and the
  change feed can name a mailbox by id alone (SQLite needs UIDVALIDITY to tell a reused
  rowid apart).
* ``text_docs`` (SEARCH TEXT/BODY) references ``messages`` and is deleted with it.
  Searches scan a mailbox's rows with ``strpos``; an operator whose users search much
  can add a trigram GIN index (``pg_trgm``, :func:`set_search_index`), which costs
  every delivery about 0.5 ms of database CPU (bench/README.md).
* ``queue_recipients`` carries a lease (``lease_until``, ``lease_owner``): a node
  takes due work with ``FOR UPDATE SKIP LOCKED`` so one recipient is attempted by one
  node at a time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from correo.store.postgres_acl import ACL_MIGRATION
from correo.store.postgres_expunged import EXPUNGED_MIGRATION
from correo.store.postgres_metadata import METADATA_MIGRATION
from correo.store.postgres_quota import QUOTA_MIGRATION
from correo.store.postgres_records import RECORD_SCHEMA
from correo.store.postgres_savedate import SAVEDATE_MIGRATION

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = [
    "LATEST",
    "MIGRATIONS",
    "SEARCH_INDEX",
    "SearchIndexError",
    "migrate",
    "search_index",
    "set_search_index",
]

#: An arbitrary, fixed advisory-lock key: "correo" in ASCII.
_LOCK_KEY: Final = 0x636F7272656F

_V1: Final = """
CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE accounts (
    id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, created double precision NOT NULL);
CREATE TABLE mailboxes (
    id bigserial PRIMARY KEY, account_id bigint NOT NULL, name text NOT NULL,
    uidvalidity bigint NOT NULL, uidnext bigint NOT NULL DEFAULT 1,
    highestmodseq bigint NOT NULL DEFAULT 1, special_use text,
    recent_uid bigint NOT NULL DEFAULT 1, UNIQUE (account_id, name));
CREATE TABLE blobs (
    id bigserial PRIMARY KEY, digest bytea NOT NULL UNIQUE, size bigint NOT NULL,
    refs integer NOT NULL, data bytea);
CREATE TABLE blob_staging (blob_id bigint PRIMARY KEY, created double precision NOT NULL);
CREATE TABLE blob_chunks (
    blob_id bigint NOT NULL, seq integer NOT NULL, data bytea NOT NULL,
    PRIMARY KEY (blob_id, seq));
CREATE TABLE blob_facts (
    blob_id bigint PRIMARY KEY, envelope bytea NOT NULL, bodystructure bytea, body bytea,
    tree bytea, sent_date double precision);
CREATE TABLE blob_digests (blob_id bigint PRIMARY KEY, digest text NOT NULL);
CREATE TABLE messages (
    mailbox_id bigint NOT NULL, uid bigint NOT NULL, blob_id bigint NOT NULL,
    size bigint NOT NULL, internal_date double precision NOT NULL,
    flags text NOT NULL DEFAULT '', modseq bigint NOT NULL, zone integer NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, uid));
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_blob ON messages (blob_id);
CREATE TABLE subscriptions (
    account_id bigint NOT NULL, name text NOT NULL, PRIMARY KEY (account_id, name));
CREATE TABLE expunged (
    mailbox_id bigint NOT NULL, uid bigint NOT NULL, modseq bigint NOT NULL,
    PRIMARY KEY (mailbox_id, uid));
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
CREATE TABLE queue (
    id bigserial PRIMARY KEY, blob_id bigint NOT NULL, skip integer NOT NULL,
    sender text NOT NULL, envid text, ret text, body text, smtputf8 boolean NOT NULL,
    authenticated text, created double precision NOT NULL);
CREATE TABLE queue_recipients (
    queue_id bigint NOT NULL, address text NOT NULL, notify text, orcpt text,
    status text NOT NULL DEFAULT 'queued', attempts integer NOT NULL DEFAULT 0,
    next_attempt double precision NOT NULL, last_error text NOT NULL DEFAULT '',
    warned boolean NOT NULL DEFAULT false,
    lease_until double precision NOT NULL DEFAULT 0, lease_owner text,
    PRIMARY KEY (queue_id, address));
CREATE INDEX queue_due ON queue_recipients (status, next_attempt);
CREATE TABLE text_docs (
    mailbox_id bigint NOT NULL, uid bigint NOT NULL, text text NOT NULL,
    PRIMARY KEY (mailbox_id, uid),
    FOREIGN KEY (mailbox_id, uid) REFERENCES messages ON DELETE CASCADE);
CREATE TABLE sieve_scripts (
    account text NOT NULL, name text NOT NULL, script text NOT NULL,
    active boolean NOT NULL DEFAULT false, updated double precision NOT NULL,
    PRIMARY KEY (account, name));
CREATE TABLE vacation_seen (
    account text NOT NULL, handle text NOT NULL, sender text NOT NULL,
    sent double precision NOT NULL, PRIMARY KEY (account, handle, sender));
CREATE TABLE junk_totals (
    account text PRIMARY KEY, spam integer NOT NULL DEFAULT 0, ham integer NOT NULL DEFAULT 0);
CREATE TABLE junk_tokens (
    account text NOT NULL, token text NOT NULL, spam integer NOT NULL DEFAULT 0,
    ham integer NOT NULL DEFAULT 0, seen double precision NOT NULL,
    PRIMARY KEY (account, token));
"""

#: Certificates obtained by ACME and the ACME account keys (docs/tls.md).
_V2: Final = """
CREATE TABLE tls_certificates (
    name text PRIMARY KEY, names text NOT NULL, chain bytea NOT NULL, key bytea NOT NULL,
    updated double precision NOT NULL, renew_at double precision NOT NULL,
    failures integer NOT NULL, last_error text NOT NULL);
"""

#: URLAUTH mailbox access keys (RFC 4467 §2.2), removed with their mailbox.
_V3: Final = """
CREATE TABLE urlauth_keys (mailbox_id bigint PRIMARY KEY, key bytea NOT NULL);
"""

#: The directory (``correo.directory.postgres``): domains, users and aliases as in the
#: embedded DATA/directory.db, DKIM keys, and the failed-login counters every node shares.
#: ``meta.directory_serial`` moves with every directory write (nodes reload on a change).
_V4: Final = """
CREATE TABLE domains (name text PRIMARY KEY);
CREATE TABLE users (
    address text PRIMARY KEY, domain text NOT NULL REFERENCES domains (name),
    password_hash text NOT NULL);
CREATE INDEX users_domain ON users (domain);
CREATE TABLE aliases (
    alias text PRIMARY KEY, domain text NOT NULL REFERENCES domains (name),
    target text NOT NULL);
CREATE INDEX aliases_domain ON aliases (domain);
CREATE TABLE dkim_keys (
    domain text NOT NULL, selector text NOT NULL, pem bytea NOT NULL,
    created double precision NOT NULL, retired boolean NOT NULL DEFAULT false,
    PRIMARY KEY (domain, selector));
CREATE TABLE login_failures (
    key text PRIMARY KEY, failures integer NOT NULL, pending integer NOT NULL,
    last double precision NOT NULL, locked_until double precision NOT NULL);
CREATE INDEX login_failures_last ON login_failures (last);
INSERT INTO meta (key, value) VALUES ('directory_serial', 1) ON CONFLICT (key) DO NOTHING;
"""

#: The webmail's logins (``correo.web.session_auth``), keyed by a digest of the secret.
_V5: Final = """
CREATE TABLE web_sessions (
    key text PRIMARY KEY, account text NOT NULL, expires double precision NOT NULL);
CREATE INDEX web_sessions_expires ON web_sessions (expires);
"""

#: DMARC and TLS reports: received ones, tallies for ours, the daily job's lease.
_V6: Final = """
CREATE TABLE reports_received (
    id bigserial PRIMARY KEY, kind text NOT NULL, org text NOT NULL, report_id text NOT NULL,
    domain text NOT NULL, begin_at double precision NOT NULL, end_at double precision NOT NULL,
    received double precision NOT NULL, data text NOT NULL, UNIQUE (kind, org, report_id));
CREATE TABLE report_tallies (
    kind text NOT NULL, domain text NOT NULL, key text NOT NULL, count bigint NOT NULL,
    first double precision NOT NULL, last double precision NOT NULL,
    PRIMARY KEY (kind, domain, key));
CREATE TABLE report_jobs (
    name text PRIMARY KEY, done double precision NOT NULL, owner text NOT NULL,
    lease_until double precision NOT NULL);
"""

#: JMAP sending identities and submissions (``postgres_records.py``).
_V7: Final = RECORD_SCHEMA

#: Webhook calls waiting to be made (``correo.webhooks``, docs/webhooks.md), leased to
#: one node per attempt as the mail queue's recipients are, and the link-signing key.
_V_WEBHOOKS: Final = """
CREATE TABLE webhook_calls (
    id bigserial PRIMARY KEY, key text NOT NULL, url text NOT NULL, event text NOT NULL,
    payload bytea NOT NULL, created double precision NOT NULL,
    attempts integer NOT NULL DEFAULT 0, next_attempt double precision NOT NULL,
    last_error text NOT NULL DEFAULT '', lease_until double precision NOT NULL DEFAULT 0,
    lease_owner text);
CREATE INDEX webhook_calls_due ON webhook_calls (next_attempt);
CREATE TABLE webhook_keys (name text PRIMARY KEY, key bytea NOT NULL);
"""

#: The directory's web admin flag (``correo user admin ADDRESS on|off``).
_V_WEB_ADMIN: Final = "ALTER TABLE users ADD COLUMN admin boolean NOT NULL DEFAULT false;"

#: The directory's SCRAM verifiers (RFC 5802 §3), "" until the password is set or used.
_V_SCRAM: Final = "ALTER TABLE users ADD COLUMN scram text NOT NULL DEFAULT '';"

#: The SEARCH text now holds every part's header (TEXT, as Dovecot reads it): the rows
#: are derived data, dropped here and written again by the search-time backfill.
_V_TEXT_PARTS: Final = "TRUNCATE text_docs;"

#: Bodies written from now on are compressed with lz4 instead of pglz (PostgreSQL 14+
#: built with lz4): on a 50 KB text body the database spends 0.25 ms compressing instead
#: of 1.3 ms (every delivery, APPEND and COPY of a new body) and a FETCH reads it back a
#: little faster, for about twice pglz's disk on text (bench/README.md). Rows written
#: before keep pglz and read as before. Optional: an older or lz4-less server keeps pglz.
_V_LZ4: Final = (
    "ALTER TABLE blobs ALTER COLUMN data SET COMPRESSION lz4;"
    " ALTER TABLE blob_chunks ALTER COLUMN data SET COMPRESSION lz4",
)

#: The trigram index migration 1 made where pg_trgm was available: each delivery paid
#: 0.5-0.8 ms of database CPU for it (correo on PostgreSQL 2.0x correo on SQLite, 1.4x
#: without), while SEARCH TEXT/BODY without it scans with ``strpos`` (0.55-0.7 s per
#: 10,000 messages; bench/README.md). ``correo store search-index on`` makes it again.
_V_NO_TRIGRAMS: Final = "DROP INDEX IF EXISTS text_docs_trgm;"

#: Flag changes as heap-only tuple (HOT) updates: with no index on ``modseq`` and half of
#: each page left free, an UPDATE of a message's flags and MODSEQ writes the new row
#: version beside the old one and touches no index. ``STORE 1:* +FLAGS`` on 5,000
#: messages took 40-60 ms of database time with the index (a new entry in every index
#: for every row), 10-12 ms without (bench/README.md). ``changes_since``, the one reader
#: of ``modseq``, walks the mailbox's rows by the primary key instead: about 1 ms per
#: 10,000 messages, asked at most once a second per mailbox and point, shared by the
#: node's sessions. The fill factor applies to pages written from now on.
_V_HOT_FLAGS: Final = (
    "DROP INDEX IF EXISTS messages_modseq; ALTER TABLE messages SET (fillfactor = 50);"
)

#: version -> (required statements, optional statements)
MIGRATIONS: Final[dict[int, tuple[str, tuple[str, ...]]]] = {
    1: (_V1, ()),
    2: (_V2, ()),
    3: (_V3, ()),
    4: (_V4, ()),
    5: (_V5, ()),
    6: (_V6, ()),
    7: (_V7, ()),
    8: (EXPUNGED_MIGRATION, ()),  # what expunged messages were, for JMAP Email/changes
    20: (_V_WEBHOOKS, ()),  # a table set of its own
    21: (QUOTA_MIGRATION, ()),  # quotas and the triggers that keep usage (RFC 9208)
    30: (METADATA_MIGRATION, ()),  # IMAP METADATA entries (RFC 5464)
    31: (SAVEDATE_MIGRATION, ()),  # when each message was saved (RFC 8514)
    36: (ACL_MIGRATION, ()),  # access control lists of mailboxes (RFC 4314)
    37: (_V_TEXT_PARTS, ()),  # the SEARCH text holds the parts' headers: indexed again
    40: (_V_WEB_ADMIN, ()),  # the web admin flag of users
    45: (_V_SCRAM, ()),  # SCRAM verifiers of users
    47: ("SELECT 1", _V_LZ4),  # new bodies compressed with lz4 where the server has it
    48: (_V_NO_TRIGRAMS, ()),  # SEARCH TEXT scans; the trigram index is the operator's
    49: (_V_HOT_FLAGS, ()),  # flag changes update no index (HOT)
}
LATEST: Final = max(MIGRATIONS)


async def migrate(conn: AsyncConnection[object]) -> int:
    """Apply missing migrations (``conn`` in autocommit); returns the highest before.

    Raises RuntimeError for a database written by a newer correo: running old code on
    it could corrupt what it does not understand.
    """
    import psycopg

    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, applied double precision NOT NULL)"
        )
        cur = await conn.execute("SELECT version FROM schema_version")
        applied = {int(row[0]) for row in await cur.fetchall()}  # type: ignore[index]
        current = max(applied, default=0)
        unknown = applied - MIGRATIONS.keys()
        if unknown:
            raise RuntimeError(
                f"the database has schema version {max(unknown)}; this correo knows {LATEST}:"
                " upgrade correo"
            )
        # Every migration not applied yet, in order: one merged after a later number (a
        # table of its own) is still applied where the later one already is.
        for version in sorted(MIGRATIONS.keys() - applied):
            required, optional = MIGRATIONS[version]
            await conn.execute(required.encode())
            for statement in optional:
                try:
                    async with conn.transaction():  # a savepoint: failure is not fatal
                        await conn.execute(statement.encode())
                except psycopg.Error:
                    break
            await conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (%s, %s)",
                (version, time.time()),
            )
    return current


#: The optional trigram index of SEARCH TEXT/BODY (``correo store search-index``).
SEARCH_INDEX: Final = "text_docs_trgm"


class SearchIndexError(Exception):
    """The trigram index cannot be made here; the message is one line for the operator."""


async def search_index(conn: AsyncConnection[object]) -> str:
    """``on``, ``off``, or ``invalid`` (a concurrent build that failed or is running)."""
    cur = await conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (SEARCH_INDEX,)
    )
    row = await cur.fetchone()
    if row is None:
        return "off"
    return "on" if row[0] else "invalid"  # type: ignore[index]


async def set_search_index(conn: AsyncConnection[object], on: bool) -> str:
    """Create or drop the trigram index without a long lock (``conn`` in autocommit).

    CONCURRENTLY lets deliveries and flag changes go on while the index is built or
    dropped; a build that failed leaves an invalid index, dropped before trying again.
    Nodes notice the change within a minute (``postgres_mailboxes._INDEX_RECHECK``).
    Returns the state after.
    """
    import psycopg

    state = await search_index(conn)
    if state == "invalid" or (state == "on" and not on):
        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SEARCH_INDEX}".encode())
        state = "off"
    if on and state == "off":
        try:
            await conn.execute(b"CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SearchIndexError(
                f"cannot use pg_trgm ({first}): install PostgreSQL's contrib extensions"
                " (e.g. the postgresql-contrib package) or have a superuser run"
                " CREATE EXTENSION pg_trgm in this database"
            ) from None
        await conn.execute(
            f"CREATE INDEX CONCURRENTLY {SEARCH_INDEX} ON text_docs"
            " USING gin (text gin_trgm_ops)".encode()
        )
        state = await search_index(conn)
    return state
