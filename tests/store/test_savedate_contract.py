"""Save dates in the store (SQLite and PostgreSQL, RFC 8514): stamped on delivery, COPY
and MOVE (a later copy has a later date), kept across a restart, gone with an expunge."""

from __future__ import annotations

import time
from pathlib import Path

from correo.store.api import DeliveryTarget
from tests.store.test_contract import Factory, factory, opened, put, run  # noqa: F401

A = "a@x.test"


def test_save_dates(factory: Factory, tmp_path: Path) -> None:  # noqa: F811
    async def go() -> None:
        store = await opened(factory, tmp_path)
        before = time.time()
        await put(store, b"Subject: one\r\n\r\nbody\r\n", [DeliveryTarget(A)])
        await put(store, b"Subject: two\r\n\r\nbody\r\n", [DeliveryTarget(A)])
        after = time.time()
        uids = [m.uid for m in await store.list_messages(A)]
        dates = await store.save_dates(A, "INBOX", uids)
        assert sorted(dates) == uids
        assert all(before - 1 <= d <= after + 1 for d in dates.values()), (before, dates, after)
        await store.create_mailbox(A, "Box")
        pairs = await store.copy_messages(A, "INBOX", uids[:1], "Box")
        copied = await store.save_dates(A, "Box", [pairs[0][1]])
        assert copied[pairs[0][1]] >= dates[uids[0]]
        moved = await store.copy_messages(A, "INBOX", uids[1:], "Box", move=True)
        assert list(await store.save_dates(A, "Box", [moved[0][1]])) == [moved[0][1]]
        assert await store.save_dates(A, "INBOX", uids[1:]) == {}  # moved away
        assert await store.save_dates(A, "Nope", uids) == {}
        assert await store.save_dates(A, "INBOX", []) == {}
        await store.close()
        store = await opened(factory, tmp_path)
        assert await store.save_dates(A, "INBOX", uids[:1]) == {uids[0]: dates[uids[0]]}
        await store.expunge(A, "INBOX", uids[:1])
        assert await store.save_dates(A, "INBOX", uids[:1]) == {}
        await store.close()

    run(go())


def test_sqlite_store_of_before_gets_the_column_and_keeps_its_rows(tmp_path: Path) -> None:
    """An existing mail.db without save dates: the column is added, old rows stay NIL."""
    import sqlite3

    from correo.store.sqlite_savedate import prepare_save_dates

    conn = sqlite3.connect(tmp_path / "old.db")
    conn.execute(
        "CREATE TABLE messages (mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
        " size INTEGER NOT NULL, PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID"
    )
    conn.execute("INSERT INTO messages (mailbox_id, uid, size) VALUES (1, 1, 10)")
    prepare_save_dates(conn)
    prepare_save_dates(conn)  # idempotent
    conn.execute("INSERT INTO messages (mailbox_id, uid, size) VALUES (1, 2, 10)")
    rows = dict(conn.execute("SELECT uid, saved FROM messages").fetchall())
    assert rows[1] is None and abs(rows[2] - time.time()) < 60
    conn.close()
