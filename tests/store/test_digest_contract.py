"""Content digests recorded with the body, on SQLite and PostgreSQL.

A JMAP Email id is the SHA-256 of the stored bytes.  Each store records it in the
transaction that stores the body (delivery, APPEND, import; a copy shares the body), so
the first listing after a fill reads digests and hashes nothing.  These read the
store's own rows, not ``message_digests`` (which would hash a missing one and hide it).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from correo.store.api import (
    DeliveryTarget,
    Envelope,
    MailStore,
    QueuedRecipient,
    spool_insert,
)
from correo.store.sqlite import SqliteStore
from tests.store.test_contract import Factory, factory, opened, run

__all__ = ["factory"]  # the fixture, parametrised over both stores

# The stores of these tests keep 1,024 bytes in memory: the larger cases spill.
SIZES = [0, 300, 1025, 300_000]


def _recorded(store: MailStore, mailbox: str) -> dict[int, str]:
    """The digests the store holds for a mailbox without reading any body."""
    query = (
        "SELECT m.uid, {digest} FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id"
        " JOIN blobs b ON b.id = m.blob_id LEFT JOIN blob_digests d ON d.blob_id = b.id"
        " WHERE x.name = {mark}"
    )
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.db_path) as conn:
            rows = conn.execute(query.format(digest="d.digest", mark="?"), (mailbox,)).fetchall()
    else:
        import psycopg

        url = store.url  # type: ignore[attr-defined]
        with psycopg.connect(url) as pconn:
            sql = query.format(digest="coalesce(d.digest, encode(b.digest, 'hex'))", mark="%s")
            rows = pconn.execute(sql, (mailbox,)).fetchall()
    return {int(uid): digest for uid, digest in rows}


@pytest.mark.parametrize("size", SIZES)
def test_a_stored_body_has_its_digest_at_once(factory: Factory, tmp_path: Path, size: int) -> None:
    """Delivered with fields spliced in (the MX path), appended, and copied: each digest
    is there right after the commit and is the SHA-256 of the bytes read back."""

    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Sent")
        body = b"Subject: s\r\n\r\n" + bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        head, added = b"Return-Path: <s@x.test>\r\n", b"Authentication-Results: mx; none\r\n"
        spool = store.new_spool()
        for i in range(0, len(head + body), 700):
            spool.write((head + body)[i : i + 700])
        await spool_insert(spool, len(head), added)
        await store.deliver(
            spool, Envelope("s@x.test"), [DeliveryTarget("a@x.test")], [QueuedRecipient("r@y")]
        )
        spool = store.new_spool()  # an APPEND: one write, its own date
        spool.write(body)
        await store.deliver(
            spool, Envelope(""), [DeliveryTarget("a@x.test", "Sent")], internal_date=1.0e9
        )
        await store.copy_messages("a@x.test", "Sent", [1], "INBOX")
        delivered = hashlib.sha256(head + added + body).hexdigest()
        appended = hashlib.sha256(body).hexdigest()
        assert _recorded(store, "INBOX") == {1: delivered, 2: appended}
        assert _recorded(store, "Sent") == {1: appended}
        assert await store.message_digests("a@x.test", "INBOX") == {1: delivered, 2: appended}
        await store.close()

    run(go())


def test_bodies_stored_without_a_digest_are_hashed_once(tmp_path: Path) -> None:
    """Mail stored before digests were recorded at delivery (SQLite: the rows are simply
    missing) is hashed on the first listing, inline and file bodies, and remembered."""

    async def go() -> None:
        store = SqliteStore(tmp_path, spool_memory=1024, recover=True)
        await store.open()
        await store.create_account("a@x.test")
        bodies = [b"small message", b"L" * 5000]
        for data in bodies:
            spool = store.new_spool()
            spool.write(data)
            await store.deliver(spool, Envelope(""), [DeliveryTarget("a@x.test")])
        with sqlite3.connect(store.db_path) as conn:
            conn.execute("DELETE FROM blob_digests")
        assert _recorded(store, "INBOX") == {1: None, 2: None}
        want = {i + 1: hashlib.sha256(data).hexdigest() for i, data in enumerate(bodies)}
        assert await store.message_digests("a@x.test", "INBOX") == want
        assert _recorded(store, "INBOX") == want
        await store.close()

    run(go())
