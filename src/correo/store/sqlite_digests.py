"""Message digests of :class:`SqliteStore`: idempotent mailbox imports.

A separate mixin, like ``sqlite_mailboxes.py``.  Digests belong to a stored *body*
(``blobs`` row), not to a mailbox entry: COPY/MOVE share the body, so they share the
digest too.  A trigger drops a digest with its body, so a reused blob id can never
inherit a stale one.  ``deliver`` records each new body's digest in the transaction
that stores it (the spool hashes as it is written); hashing on a miss is only for
bodies stored before that.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from correo.store.api import StoreError

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["DIGEST_SCHEMA", "DigestOps"]

DIGEST_SCHEMA = """
CREATE TABLE IF NOT EXISTS blob_digests (
    blob_id INTEGER PRIMARY KEY, digest TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS blob_digests_gc AFTER DELETE ON blobs
    BEGIN DELETE FROM blob_digests WHERE blob_id = old.id; END;
"""

_CHUNK = 1 << 20


class DigestOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:
        blob_dir: Path

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _find_mailbox(
            self, conn: sqlite3.Connection, account: str, mailbox: str
        ) -> int | None: ...

    async def message_digests(self, account: str, mailbox: str) -> dict[int, str]:
        def read() -> tuple[dict[int, str], dict[int, str]]:
            conn = self._reader()
            mailbox_id = self._find_mailbox(conn, account, mailbox)
            if mailbox_id is None:
                return {}, {}
            known: dict[int, str] = {}
            fresh: dict[int, str] = {}  # blob id -> digest computed now
            by_blob: dict[int, str] = {}
            rows = conn.execute(
                # a body's octets are read only where no digest is kept (the first listing)
                "SELECT m.uid, m.blob_id, d.digest, CASE WHEN d.digest IS NULL THEN b.data END,"
                " CASE WHEN d.digest IS NULL THEN b.path END FROM messages m"
                " JOIN blobs b ON b.id = m.blob_id"
                " LEFT JOIN blob_digests d ON d.blob_id = m.blob_id WHERE m.mailbox_id=?",
                (mailbox_id,),
            )
            for uid, blob_id, digest, data, path in rows:
                if digest is None:
                    digest = by_blob.get(blob_id)
                    if digest is None:
                        digest = self._hash_blob(data, path)
                        by_blob[blob_id] = fresh[blob_id] = digest
                known[int(uid)] = digest
            return known, fresh

        known: dict[int, str]
        fresh: dict[int, str]
        try:
            known, fresh = await self._read(read)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"could not read message digests: {exc}") from exc
        if fresh:
            await self._write_digests(list(fresh.items()))
        return known

    def _hash_blob(self, data: bytes | None, path: str | None) -> str:
        h = hashlib.sha256()
        if data is not None:
            h.update(data)
        elif path is not None:
            with open(self.blob_dir / path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
        return h.hexdigest()

    async def record_digests(self, account: str, mailbox: str, digests: dict[int, str]) -> None:
        if not digests:
            return
        items = sorted(digests.items())

        def read() -> list[tuple[int, str]]:
            conn = self._reader()
            mailbox_id = self._find_mailbox(conn, account, mailbox)
            if mailbox_id is None:
                return []
            out: list[tuple[int, str]] = []
            for uid, digest in items:
                row = conn.execute(
                    "SELECT blob_id FROM messages WHERE mailbox_id=? AND uid=?",
                    (mailbox_id, uid),
                ).fetchone()
                if row is not None:
                    out.append((int(row[0]), digest))
            return out

        pairs: list[tuple[int, str]] = await self._read(read)
        await self._write_digests(pairs)

    async def _write_digests(self, pairs: list[tuple[int, str]]) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            # OR IGNORE: a body expunged meanwhile simply gets no digest (no FK needed).
            conn.executemany(
                "INSERT OR IGNORE INTO blob_digests (blob_id, digest)"
                " SELECT ?, ? WHERE EXISTS (SELECT 1 FROM blobs WHERE id=?)",
                [(b, d, b) for b, d in pairs],
            )
            return None, []

        try:
            await self._write(op)
        except sqlite3.Error as exc:
            raise StoreError(f"could not record message digests: {exc}") from exc
