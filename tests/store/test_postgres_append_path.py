"""The PostgreSQL store's APPEND path (issue 12): the writer's own connection, its batch
begun with the locks in one message, and EXISTS after a delivery without ``count(*)``.

A real PostgreSQL (tests/pg.py), never a mock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from correo.store.api import INBOX, DeliveryTarget, Envelope, StoreError
from correo.store.exists import exists_memo

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

from correo.store.postgres import PostgresStore  # noqa: E402

ACCOUNT = "a@x.test"


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def node(url: str, root: Path) -> PostgresStore:
    store = PostgresStore(url, root, spool_memory=1024, recover=True)
    await store.open()
    return store


async def put(store: PostgresStore, data: bytes) -> int:
    spool = store.new_spool()
    spool.write(data)
    done = await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(ACCOUNT)])
    return done.uids[0][1]


async def backend(conn: psycopg.AsyncConnection[object]) -> tuple[int, list[object]]:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), []


def test_the_writer_keeps_its_connection_and_takes_a_new_one_when_it_is_lost(
    pg_url: str, tmp_path: Path
) -> None:
    """One batch after another on the same database process; a process the database
    ends (a restart, an administrator) costs the next write nothing but a reconnect."""

    async def go() -> None:
        store = await node(pg_url, tmp_path)
        first = await store._write(backend)  # type: ignore[arg-type]
        assert await store._write(backend) == first  # type: ignore[arg-type]
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            # waits until the process is gone: its last message is on our socket then
            # (a write sent while that message is on its way, unknowable, fails instead)
            await admin.execute("SELECT pg_terminate_backend(%s, 10000)", (first,))
        uid = await put(store, b"Subject: after\r\n\r\nbody\r\n")
        assert uid == 1
        assert await store._write(backend) != first  # type: ignore[arg-type]
        assert [m.uid for m in await store.list_messages(ACCOUNT)] == [1]
        await store.close()

    run(go())


def test_a_batch_whose_transaction_aborted_is_not_reported_committed(
    pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK, not an error: a
    write that swallowed its statement's error must fail, not be acknowledged."""

    async def swallow(conn: psycopg.AsyncConnection[object]) -> tuple[str, list[object]]:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('lost', 1)")
        try:
            await conn.execute("SELECT 1 / 0")
        except psycopg.errors.DivisionByZero:
            pass
        return "acknowledged", []

    async def go() -> None:
        store = await node(pg_url, tmp_path)
        with pytest.raises(StoreError, match="not committed"):
            await store._write(swallow, guarded=False)  # type: ignore[arg-type]
        assert await put(store, b"Subject: next\r\n\r\nbody\r\n") == 1  # the connection is fine
        await store.close()

    run(go())
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM meta WHERE key = 'lost'").fetchone()
    assert row is not None and row[0] == 0


def test_exists_follows_this_nodes_deliveries_and_is_right_after_another_nodes_changes(
    pg_url: str, tmp_path: Path
) -> None:
    """After a delivery the count under the new marks is known (no ``count(*)`` for the
    APPENDUID's mailbox state); an expunge or a flag change by another node in between
    leaves marks nothing counted under, so the count is read again, and right."""

    async def marks(url: str) -> tuple[int, int, int, int]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute(
                "SELECT id, uidvalidity, uidnext, highestmodseq FROM mailboxes WHERE name = %s",
                (INBOX,),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    async def go() -> None:
        one = await node(pg_url, tmp_path / "one")
        two = await node(pg_url, tmp_path / "two")
        memo = exists_memo(one)
        await put(one, b"Subject: 1\r\n\r\none\r\n")
        assert (await one.mailbox_state(ACCOUNT)).exists == 1
        await put(one, b"Subject: 2\r\n\r\ntwo\r\n")
        assert memo.get(await marks(pg_url)) == 2  # known without counting
        assert (await one.mailbox_state(ACCOUNT)).exists == 2
        await two.expunge(ACCOUNT, INBOX, [1])  # moves HIGHESTMODSEQ, not UIDNEXT
        await put(one, b"Subject: 3\r\n\r\nthree\r\n")
        assert memo.get(await marks(pg_url)) is None  # the chain broke: not guessed
        assert (await one.mailbox_state(ACCOUNT)).exists == 2
        await two.store_flags(ACCOUNT, INBOX, [2], "add", ("\\Seen",))
        await put(one, b"Subject: 4\r\n\r\nfour\r\n")
        assert (await one.mailbox_state(ACCOUNT)).exists == 3
        assert len(await one.list_messages(ACCOUNT)) == 3
        await two.close()
        await one.close()

    run(go())


def test_mailbox_names_bound_on_the_client_lock_the_right_rows(pg_url: str, tmp_path: Path) -> None:
    """The locks go with BEGIN as text psycopg quotes on the client: names carrying
    quotes, backslashes, array punctuation and non-ASCII still lock (and deliver into)
    exactly their own mailbox, and none is read as SQL."""
    names = [
        "it's",
        'say "hi"',
        "back\\slash",
        "{braces},comma",
        "naïve ✉",
        "x'); DROP TABLE meta; --",
    ]

    async def go() -> None:
        store = await node(pg_url, tmp_path)
        for name in names:
            await store.create_mailbox(ACCOUNT, name)
        for name in names:
            spool = store.new_spool()
            spool.write(f"Subject: {name}\r\n\r\nbody\r\n".encode())
            done = await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(ACCOUNT, name)])
            assert done.uids[0][1] == 1
        spool = store.new_spool()  # two mailboxes: a batch's BEGIN with its locks
        spool.write(b"Subject: both\r\n\r\nbody\r\n")
        both = [DeliveryTarget(ACCOUNT, names[0]), DeliveryTarget(ACCOUNT, names[-1])]
        done = await store.deliver(spool, Envelope("s@x.test"), both)
        assert [uid for _, uid in done.uids] == [2, 2]
        for name in names:
            assert min(m.uid for m in await store.list_messages(ACCOUNT, name)) == 1
        await store.close()

    run(go())
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM meta").fetchone()
    assert row is not None and row[0] >= 1


def test_a_lone_delivery_is_one_message_and_one_sync_without_begin(
    pg_url: str, tmp_path: Path
) -> None:
    """A batch of one small delivery to one mailbox sends its lock and its statement in
    one pipeline (one implicit transaction, committed by the Sync): libpq's trace of the
    writer's connection shows one Sync, no BEGIN and no COMMIT, and the message is there."""

    async def go() -> list[str]:
        store = await node(pg_url, tmp_path)
        await put(store, b"Subject: first\r\n\r\nbody\r\n")  # the writer's connection
        conn = store._committer._conn
        assert conn is not None
        trace = tmp_path / "trace"
        with trace.open("w") as out:
            conn.pgconn.trace(out.fileno())
            try:
                assert await put(store, b"Subject: second\r\n\r\nbody\r\n") == 2
            finally:
                conn.pgconn.untrace()
        assert [m.uid for m in await store.list_messages(ACCOUNT)] == [1, 2]
        await store.close()
        return trace.read_text().splitlines()

    lines = run(go())
    sent = [line for line in lines if "\tF\t" in line or line.startswith("F")]  # type: ignore[union-attr]
    assert sum("Sync" in line for line in sent) == 1, sent
    assert not any("BEGIN" in line or "COMMIT" in line for line in sent), sent
