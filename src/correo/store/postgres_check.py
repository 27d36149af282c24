"""Checking the PostgreSQL store's bodies and references (``correo verify``).

One read-only REPEATABLE READ transaction gives a consistent view while the nodes go on
serving.  Bodies are single-instance by SHA-256 (``blobs.digest``): each one, inline or
in chunks, is read back a piece at a time (never whole) and hashed again.  The
database's own page checks are PostgreSQL's business (``amcheck``, data checksums).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import psycopg

from correo.store.checks import Findings
from correo.store.postgres_base import CHUNK

__all__ = ["check_database"]

_BATCH = 256

Advance = Callable[[int], None]

_WHERE = "JOIN mailboxes x ON x.id = m.mailbox_id JOIN accounts a ON a.id = x.account_id"


def check_database(url: str, findings: Findings, advance: Advance) -> int:
    """Check every body against its digest, and the references; returns bodies checked."""
    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        findings.problem("database unreachable", f"cannot connect to the database: {exc}")
        return 0
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            _check_references(conn, findings)
            return _check_bodies(conn, findings, advance)
    except psycopg.Error as exc:
        findings.problem("database error", str(exc).strip())
        return 0
    finally:
        conn.close()


def _rows(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    return conn.execute(sql, params, binary=True).fetchall()


def _check_references(conn: psycopg.Connection[Any], findings: Findings) -> None:
    for account, mailbox, uid, blob_id in _rows(
        conn,
        f"SELECT a.name, x.name, m.uid, m.blob_id FROM messages m {_WHERE}"
        " WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = m.blob_id)",
    ):
        findings.problem(
            "message without body", f"{account} {mailbox} UID {uid}: body {blob_id} is missing"
        )
    for queue_id, blob_id in _rows(
        conn,
        "SELECT q.id, q.blob_id FROM queue q"
        " WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = q.blob_id)",
    ):
        findings.problem("queued without body", f"queue {queue_id}: body {blob_id} is missing")
    for blob_id, refs, used in _rows(
        conn,
        "WITH r AS (SELECT blob_id, count(*) AS n FROM"
        " (SELECT blob_id FROM messages UNION ALL SELECT blob_id FROM queue) u GROUP BY blob_id)"
        " SELECT b.id, b.refs, coalesce(r.n, 0) FROM blobs b LEFT JOIN r ON r.blob_id = b.id"
        " WHERE b.refs <> coalesce(r.n, 0)",
    ):
        findings.problem(
            "reference count",
            f"body {blob_id} counts {refs} reference(s) but {used} message(s) use it",
        )
    for account, mailbox, uid, uidnext in _rows(
        conn,
        f"SELECT a.name, x.name, m.uid, x.uidnext FROM messages m {_WHERE}"
        " WHERE m.uid >= x.uidnext",
    ):
        findings.problem(
            "UID order", f"{account} {mailbox}: UID {uid} is not below UIDNEXT {uidnext}"
        )


def _check_bodies(conn: psycopg.Connection[Any], findings: Findings, advance: Advance) -> int:
    checked = 0
    last = 0
    while True:
        rows = _rows(
            conn,
            "SELECT id, size, digest, data IS NULL FROM blobs WHERE id > %s ORDER BY id LIMIT %s",
            (last, _BATCH),
        )
        if not rows:
            return checked
        for blob_id, size, digest, chunked in rows:
            last = blob_id
            checked += 1
            _check_body(conn, findings, int(blob_id), int(size), bytes(digest), bool(chunked))
        advance(len(rows))


def _check_body(
    conn: psycopg.Connection[Any],
    findings: Findings,
    blob_id: int,
    size: int,
    digest: bytes,
    chunked: bool,
) -> None:
    h = hashlib.sha256()
    stored = 0
    if not chunked:
        (data,) = _rows(conn, "SELECT data FROM blobs WHERE id = %s", (blob_id,))[0]
        h.update(data)
        stored = len(data)
    else:
        seq = 0
        while stored < size:  # one chunk per query: flat memory for any body size
            row = _rows(
                conn,
                "SELECT data FROM blob_chunks WHERE blob_id = %s AND seq = %s",
                (blob_id, seq),
            )
            if not row:
                findings.problem(
                    "missing body chunk", f"body {blob_id}: chunk {seq} of {size} octets is missing"
                )
                return
            piece: bytes = row[0][0]
            if len(piece) != min(CHUNK, size - stored):
                findings.problem(
                    "body size", f"body {blob_id}: chunk {seq} has {len(piece)} octets"
                )
                return
            h.update(piece)
            stored += len(piece)
            seq += 1
    if stored != size:
        findings.problem("body size", f"body {blob_id}: {stored} octets stored, {size} recorded")
    elif h.digest() != digest:
        findings.problem(
            "corrupt body",
            f"body {blob_id}: SHA-256 {h.hexdigest()} is not the recorded {digest.hex()}",
        )
