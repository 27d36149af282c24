"""The SQLite store's backup steps against a real store that keeps writing.

The order ``correo backup`` uses: pause writes, open the snapshot, link the body files,
resume; then copy the database and keep the files it names.  A message the server
removes (and whose file it unlinks) after the snapshot must still be whole in the
copy, and a write that arrives during the pause must wait and succeed, not fail.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from correo.store.api import DeliveryTarget, Envelope
from correo.store.checks import Findings
from correo.store.sqlite import SqliteStore
from correo.store.sqlite_backup import (
    check_store,
    copy_database,
    keep_referenced,
    mailbox_counts,
    read_snapshot,
    record_digests,
    stage_blobs,
    writes_paused,
)

ACCOUNT = "a@x.test"


async def put(store: SqliteStore, data: bytes) -> int:
    spool = store.new_spool()
    for i in range(0, len(data), 700):
        spool.write(data[i : i + 700])
    delivered = await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(ACCOUNT)])
    return delivered.uids[0][1]


async def read(store: SqliteStore, uid: int) -> bytes:
    return b"".join([c async for c in store.read_message(ACCOUNT, "INBOX", uid)])


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()}


def test_a_message_removed_after_the_snapshot_is_whole_in_the_copy(tmp_path: Path) -> None:
    root, out = tmp_path / "store", tmp_path / "out"
    out.mkdir()
    first = b"first message\r\n" * 400  # 6 KB: a file of its own at spool_memory=1024
    second = b"second message\r\n" * 400
    small = b"Subject: small\r\n\r\nhi\r\n"  # inline in mail.db

    async def go() -> dict[tuple[str, str], int]:
        store = SqliteStore(root, spool_memory=1024, recover=True)
        await store.open()
        try:
            uid = await put(store, first)
            await put(store, small)
            before = files(root / "blobs")
            assert len(before) == 1
            db = root / "mail.db"
            with writes_paused(db):
                snapshot = read_snapshot(db)
                late = asyncio.ensure_future(put(store, second))  # waits for the lock
                await asyncio.sleep(0)
                stage_blobs(root / "blobs", out / "blobs")
            late_uid = await late  # resumed after the pause, and succeeded
            assert await store.expunge(ACCOUNT, "INBOX", [uid]) == 1
            assert not files(root / "blobs") & before  # the server unlinked the file
            counts = {(a, m): n for a, m, n in mailbox_counts(snapshot)}
            copy_database(snapshot, out / "mail.db")
            snapshot.close()
            _, missing = keep_referenced(out / "mail.db", out / "blobs")
            assert missing == []
            assert files(out / "blobs") == before  # the late message's file is not kept
            assert await read(store, late_uid) == second
        finally:
            await store.close()
        # digests recorded at delivery: none to add; a store from before that gets them
        assert record_digests(out / "mail.db", out / "blobs", lambda n: None) == 0
        with sqlite3.connect(out / "mail.db") as old:
            old.execute("DELETE FROM blob_digests")
        old.close()
        assert record_digests(out / "mail.db", out / "blobs", lambda n: None) == 2
        lines: list[str] = []
        findings = Findings(lines.append)
        checked, undigested = check_store(out, findings, counts, lambda n: None)
        assert findings.ok, lines
        assert (checked, undigested) == (2, 0)
        assert counts == {(ACCOUNT, "INBOX"): 2}

        restored = SqliteStore(out, spool_memory=1024, recover=True)
        await restored.open()
        try:
            assert await read(restored, uid) == first
            assert [m.uid for m in await restored.list_messages(ACCOUNT)] == [uid, uid + 1]
        finally:
            await restored.close()
        return counts

    asyncio.run(go())


def test_check_store_reports_a_count_that_differs_from_the_record(tmp_path: Path) -> None:
    root = tmp_path / "store"

    async def go() -> None:
        store = SqliteStore(root, spool_memory=1024, recover=True)
        await store.open()
        try:
            await put(store, b"Subject: one\r\n\r\nx\r\n")
        finally:
            await store.close()

    asyncio.run(go())
    lines: list[str] = []
    findings = Findings(lines.append)
    check_store(root, findings, {(ACCOUNT, "INBOX"): 2, (ACCOUNT, "Sent"): 1}, lambda n: None)
    assert not findings.ok
    assert findings.problems["mailbox count"] == 2, lines
    assert any("1 message(s), the backup recorded 2" in line for line in lines), lines
    assert any("Sent: recorded by the backup, but missing" in line for line in lines), lines
