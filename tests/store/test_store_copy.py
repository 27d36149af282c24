"""``correo store copy`` keeps the target a mirror of the embedded store, and refuses to
overwrite mail that is not its own.

The source is filled and changed through the store API; the target is read back through
the PostgreSQL store's API, as the servers read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from correo.cli.main import main
from correo.store.api import DeliveryTarget, Envelope, MailStore, QueuedRecipient
from correo.store.sqlite import SqliteStore
from tests.pg import PgCluster

pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

A = "a@x.test"


def with_store(store: MailStore, work: Callable[[Any], Awaitable[object]]) -> Any:
    async def go() -> object:
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def source(data: Path, work: Callable[[Any], Awaitable[object]]) -> Any:
    return with_store(SqliteStore(data / "store"), work)


def target(url: str, root: Path, work: Callable[[Any], Awaitable[object]]) -> Any:
    from correo.store.postgres import PostgresStore

    return with_store(PostgresStore(url, root, listen=False), work)


async def put(store: MailStore, data: bytes, mailbox: str = "INBOX", **kw: Any) -> int:
    spool = store.new_spool()
    spool.write(data)
    delivered = await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(A, mailbox)], **kw)
    return delivered.uids[0][1]


def copy(data: Path, url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--data", str(data), "store", "copy", "--to", url])
    out = capsys.readouterr()
    return code, out.out + out.err


async def view(store: MailStore) -> dict[str, object]:
    """What a client sees of every mailbox, and the queue and scripts."""
    out: dict[str, object] = {}
    for box in await store.list_mailboxes(A):
        state = await store.mailbox_state(A, box.name)
        messages = await store.list_messages(A, box.name)
        changes = await store.changes_since(A, box.name, 0)
        out[box.name] = (
            state.uidvalidity,
            state.uidnext,
            state.highestmodseq,
            [(m.uid, m.flags, m.modseq, m.internal_date, m.zone, m.size) for m in messages],
            sorted(changes.expunged),
        )
    out["subscriptions"] = await store.list_subscriptions(A)
    out["queue"] = [(e.id, e.sender, e.recipients) for e in await store.queue_list()]
    out["sieve"] = await store.sieve_list(A)
    return out


def test_a_second_copy_brings_every_change_and_nothing_else(
    pg_cluster: PgCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    url = pg_cluster.new_database()

    async def fill(store: Any) -> None:
        for i in range(30):
            await put(store, b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        await put(store, b"Subject: big\r\n\r\n" + b"x" * 700_000)  # chunked in the target
        await store.create_mailbox(A, "Old")
        await store.create_mailbox(A, "Gone")
        await put(store, b"Subject: g\r\n\r\ngone soon\r\n", "Gone")
        await store.copy_messages(A, "INBOX", [1, 2, 3], "Old")
        await store.store_flags(A, "INBOX", [4, 5], "add", ["\\Seen", "$Work"])
        await store.expunge(A, "INBOX", [6, 7])
        await store.set_subscribed(A, "Elsewhere", True)
        spool = store.new_spool()
        spool.write(b"Return-Path: <s@x.test>\r\nSubject: out\r\n\r\nremote\r\n")
        await store.deliver(
            spool,
            Envelope("s@x.test"),
            [],
            [QueuedRecipient("r@remote.test"), QueuedRecipient("q@remote.test")],
            queue_skip=len(b"Return-Path: <s@x.test>\r\n"),
        )
        await store.sieve_put(A, "one", "keep;")
        await store.sieve_put(A, "two", "discard;")
        await store.sieve_activate(A, "two")

    source(data, fill)
    code, out = copy(data, url, capsys)
    assert code == 0, out
    assert "33 messages copied" in out, out  # 31 delivered, 2 expunged, 3 copied, 1 in Gone
    assert target(url, tmp_path / "t", view) == source(data, view)

    async def change(store: Any) -> None:
        await store.store_flags(A, "INBOX", [8], "add", ["\\Flagged"])
        await store.store_flags(A, "INBOX", [4], "remove", ["$Work"])
        await store.expunge(A, "INBOX", [9])
        await store.delete_mailbox(A, "Gone")
        await store.create_mailbox(A, "New")
        await put(store, b"Subject: new\r\n\r\nnew\r\n", "New")
        await put(store, b"Subject: later\r\n\r\nlater\r\n")
        (entry,) = await store.queue_list()
        await store.queue_delete(entry.id)
        await store.sieve_delete(A, "one")
        await store.set_subscribed(A, "Elsewhere", False)

    source(data, change)
    code, out = copy(data, url, capsys)
    assert code == 0, out
    assert "2 messages copied" in out and "2 updated, 3 removed" in out, out
    assert target(url, tmp_path / "t", view) == source(data, view)
    code, out = copy(data, url, capsys)
    assert "0 messages copied (0.0 MB), 0 updated, 0 removed, 0 new mailboxes" in out, out

    # Bodies no message uses any more are gone from the target too.
    async def bodies(store: Any) -> int:
        row = await store._fetchone("SELECT count(*) FROM blobs WHERE refs <= 0")
        return int(row[0])

    assert target(url, tmp_path / "t", bodies) == 0


def test_a_database_with_other_mail_is_refused(
    pg_cluster: PgCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    url = pg_cluster.new_database()
    source(data, lambda s: put(s, b"Subject: a\r\n\r\na\r\n"))
    target(url, tmp_path / "t", lambda s: put(s, b"Subject: b\r\n\r\nb\r\n"))
    code, out = copy(data, url, capsys)
    assert code == 2 and "not a copy of this store" in out, out
    assert len(target(url, tmp_path / "t", lambda s: s.list_messages(A))) == 1  # untouched


def test_a_copy_never_overwrites_a_mailbox_that_moved_on(
    pg_cluster: PgCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the switch the node delivers into the database: a late copy must not undo it."""
    data = tmp_path / "data"
    url = pg_cluster.new_database()
    source(data, lambda s: put(s, b"Subject: a\r\n\r\na\r\n"))
    assert copy(data, url, capsys)[0] == 0
    target(url, tmp_path / "t", lambda s: put(s, b"Subject: b\r\n\r\nb\r\n"))
    code, out = copy(data, url, capsys)
    assert code == 2 and "has changed since it was copied" in out, out
    assert len(target(url, tmp_path / "t", lambda s: s.list_messages(A))) == 2
