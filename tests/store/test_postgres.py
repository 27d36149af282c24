"""What only the PostgreSQL store has: schema versions, nodes sharing one database
(change notifications, queue leases), single-instance bodies by digest.

The contract both stores share is tests/store/test_contract.py.  A real PostgreSQL
(tests/pg.py), never a mock.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from correo.store.api import DeliveryTarget, Envelope, QueuedRecipient, StoreError

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

from correo.store.postgres import PostgresStore  # noqa: E402
from correo.store.postgres_schema import LATEST, MIGRATIONS  # noqa: E402


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def node(url: str, root: Path, **kwargs: object) -> PostgresStore:
    store = PostgresStore(url, root, spool_memory=1024, recover=True, **kwargs)  # type: ignore[arg-type]
    await store.open()
    return store


async def put(store: PostgresStore, data: bytes, account: str = "a@x.test") -> None:
    spool = store.new_spool()
    spool.write(data)
    await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(account)])


def scalar(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return int(row[0])


def test_schema_is_created_once_by_nodes_opening_together(pg_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        stores = [PostgresStore(pg_url, tmp_path / f"n{i}") for i in range(3)]
        await asyncio.gather(*[s.open() for s in stores])
        await put(stores[0], b"Subject: x\r\n\r\nx\r\n")
        assert len(await stores[2].list_messages("a@x.test")) == 1
        for s in stores:
            await s.close()

    run(go())
    assert scalar(pg_url, "SELECT count(*) FROM schema_version") == len(MIGRATIONS)
    assert scalar(pg_url, "SELECT max(version) FROM schema_version") == LATEST


def test_a_database_from_a_newer_correo_is_refused(pg_url: str, tmp_path: Path) -> None:
    async def create() -> None:
        store = await node(pg_url, tmp_path)
        await store.close()

    run(create())
    with psycopg.connect(pg_url) as conn:
        conn.execute(b"INSERT INTO schema_version VALUES (999, 0)")

    async def go() -> None:
        store = PostgresStore(pg_url, tmp_path / "other")
        with pytest.raises(StoreError, match="upgrade correo"):
            await store.open()

    run(go())


def test_an_unreachable_database_fails_at_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go() -> None:
        store = PostgresStore(f"postgresql://nobody@127.0.0.1:{port}/mail", tmp_path)
        started = time.monotonic()
        with pytest.raises(StoreError, match="cannot connect"):
            await store.open()
        assert time.monotonic() - started < 5

    run(go())


def test_a_commit_on_one_node_wakes_a_waiter_on_another(pg_url: str, tmp_path: Path) -> None:
    """LISTEN/NOTIFY carries the mailbox id; the waiter reads the change from the tables."""

    async def go() -> None:
        one = await node(pg_url, tmp_path / "one")
        two = await node(pg_url, tmp_path / "two")
        await one.create_account("a@x.test")
        await asyncio.wait_for(two.feed.listening.wait(), 10)
        state = await two.mailbox_state("a@x.test")
        counter = two.change_counter("a@x.test", "INBOX")
        waiter = asyncio.create_task(
            two.wait_for_change("a@x.test", "INBOX", state.highestmodseq, 30, counter=counter)
        )
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await put(one, b"Subject: across\r\n\r\nx\r\n")
        # Only the NOTIFY can end the wait before its own 30 s timer (which would give
        # False); how soon across nodes is tests/server/test_cluster.py's IDLE claim.
        assert await asyncio.wait_for(waiter, 10) is True
        assert two.change_counter("a@x.test", "INBOX") > counter
        await one.close()
        await two.close()

    run(go())


def test_queue_work_is_leased_to_one_node_at_a_time(pg_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        one = await node(pg_url, tmp_path / "one")
        two = await node(pg_url, tmp_path / "two")
        spool = one.new_spool()
        spool.write(b"Subject: out\r\n\r\nx\r\n")
        delivered = await one.deliver(
            spool, Envelope("s@x.test"), [], [QueuedRecipient("r@far.test")]
        )
        now = time.time() + 1
        taken = await asyncio.gather(one.queue_due(now), two.queue_due(now))
        assert sorted(len(t) for t in taken) == [0, 1]  # exactly one node got it
        assert (taken[0] or taken[1])[0].id == delivered.queue_id
        # The holder's lease runs out (a node died mid-attempt): another node takes over.
        later = now + one.queue_lease + 1
        (again,) = await two.queue_due(later)
        assert again.id == delivered.queue_id
        await one.close()
        await two.close()

    run(go())


def test_a_restarted_node_releases_the_leases_it_held(pg_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        one = await node(pg_url, tmp_path / "one")
        spool = one.new_spool()
        spool.write(b"Subject: out\r\n\r\nx\r\n")
        await one.deliver(spool, Envelope("s@x.test"), [], [QueuedRecipient("r@far.test")])
        now = time.time() + 1
        assert len(await one.queue_due(now)) == 1
        assert await one.queue_due(now) == []  # leased: not handed out twice
        await one.close()  # stopped mid-attempt
        one = await node(pg_url, tmp_path / "one")  # same folder: same node
        assert len(await one.queue_due(now)) == 1
        await one.close()

    run(go())


def test_identical_bodies_are_stored_once(pg_url: str, tmp_path: Path) -> None:
    """Single instance by SHA-256, also for chunked bodies stored concurrently."""
    big = b"Subject: big\r\n\r\n" + b"y" * (600 * 1024)

    async def go() -> None:
        one = await node(pg_url, tmp_path / "one")
        two = await node(pg_url, tmp_path / "two")
        await asyncio.gather(
            put(one, big, "a@x.test"), put(two, big, "b@x.test"), put(one, big, "c@x.test")
        )
        await put(two, b"Subject: small\r\n\r\nx\r\n", "a@x.test")
        await put(one, b"Subject: small\r\n\r\nx\r\n", "b@x.test")
        for account in ("a@x.test", "b@x.test", "c@x.test"):
            body = b"".join([c async for c in two.read_message(account, "INBOX", 1)])
            assert body == big
        await one.expunge("a@x.test", "INBOX", [1])
        assert b"".join([c async for c in one.read_message("c@x.test", "INBOX", 1)]) == big
        await one.close()
        await two.close()

    run(go())
    assert scalar(pg_url, "SELECT count(*) FROM blobs") == 2
    assert scalar(pg_url, "SELECT refs FROM blobs WHERE size > 1000") == 2
    assert scalar(pg_url, "SELECT count(*) FROM blob_chunks") == 3  # 600 KiB in 256 KiB
    assert scalar(pg_url, "SELECT count(*) FROM blob_staging") == 0


@pytest.mark.parametrize("guarded", [True, False])
def test_a_failing_write_leaves_the_rest_of_its_batch_committed(
    pg_url: str, tmp_path: Path, guarded: bool
) -> None:
    """Writes of concurrent sessions share one transaction; one that fails after writing
    (in a savepoint of its own, or not: then the batch is run again without it) takes
    nothing of the others with it, and leaves nothing of its own."""

    def write(text: str, fail: bool) -> object:
        async def op(conn: psycopg.AsyncConnection[object]) -> tuple[str, list[object]]:
            await conn.execute("INSERT INTO meta (key, value) VALUES (%s, 1)", (text,))
            if fail:
                raise ValueError(text)
            return text, []

        return op

    async def go() -> None:
        store = await node(pg_url, tmp_path)
        results = await asyncio.gather(
            *[
                store._write(write(f"k{i}", i == 2), guarded=guarded)  # type: ignore[arg-type]
                for i in range(5)
            ],
            return_exceptions=True,
        )
        assert results[:2] == ["k0", "k1"] and results[3:] == ["k3", "k4"]
        assert isinstance(results[2], ValueError)
        assert store.commit_stats[0] < 5  # they did share transactions
        await store.close()

    run(go())
    assert scalar(pg_url, "SELECT count(*) FROM meta WHERE key LIKE 'k%%'") == 4
    assert scalar(pg_url, "SELECT count(*) FROM meta WHERE key = 'k2'") == 0


def test_a_full_disk_on_the_database_server_is_a_full_store(pg_url: str, tmp_path: Path) -> None:
    """SQLSTATE 53100 (disk_full) becomes StoreFullError: SMTP answers 452 4.3.1."""
    from correo.store.api import StoreFullError

    async def full(conn: psycopg.AsyncConnection[object]) -> tuple[None, list[object]]:
        await conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full';"
            " END $$"
        )
        return None, []

    async def go() -> None:
        store = await node(pg_url, tmp_path)
        with pytest.raises(StoreFullError):
            await store._write(full)  # type: ignore[arg-type]
        await put(store, b"Subject: after\r\n\r\nx\r\n")  # the writer goes on
        assert len(await store.list_messages("a@x.test")) == 1
        await store.close()

    run(go())


def test_flag_changes_update_no_index_and_keep_each_rows_own_flags(
    pg_url: str, tmp_path: Path
) -> None:
    """STORE rewrites rows as heap-only tuples (no index holds flags or MODSEQ), both when
    most rows end with one flag set (an UPDATE per set) and when each row ends with its
    own (one joined UPDATE); CONDSTORE still finds every changed row by MODSEQ."""

    def hot() -> int:
        # the cumulative statistics, flushed by each backend when it goes idle or closes,
        # read in a fresh snapshot
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(b"SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                b"SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'messages'"
            ).fetchone()
        return int(row[0]) if row is not None else 0  # no table before the schema

    async def go() -> None:
        store = await node(pg_url, tmp_path)
        for i in range(30):
            await put(store, b"Subject: %d\r\n\r\nx\r\n" % i)
        box = "INBOX"
        before = (await store.mailbox_state("a@x.test", box)).highestmodseq
        # each row a keyword of its own: 30 distinct results, the joined statement
        for uid in range(1, 31):
            await store.store_flags("a@x.test", box, [uid], "add", [f"k{uid}"])
        changed, failed = await store.store_flags(
            "a@x.test", box, list(range(1, 31)), "add", ["\\Seen"]
        )
        assert failed == [] and len(changed) == 30
        # one result for all: one UPDATE on a range of UIDs
        changed, _ = await store.store_flags(
            "a@x.test", box, list(range(1, 31)), "replace", ["\\Flagged"]
        )
        assert {m.flags for m in changed} == {("\\Flagged",)}
        rows = await store.list_messages("a@x.test", box)
        assert [m.flags for m in rows] == [("\\Flagged",)] * 30
        # a sparse set: the array form
        changed, _ = await store.store_flags("a@x.test", box, [2, 7, 29], "add", ["\\Seen"])
        assert [m.uid for m in changed] == [2, 7, 29]
        since = await store.changes_since("a@x.test", box, before)
        assert [m.uid for m in since.messages] == list(range(1, 31))
        top = max(m.modseq for m in since.messages)
        assert [m.uid for m in (await store.changes_since("a@x.test", box, top - 1)).messages] == [
            2,
            7,
            29,
        ]
        await store.close()

    start = hot()
    run(go())
    # 30 + 30 + 30 + 3 row updates; a page left full by an insert may take one non-HOT
    # update before its rows spread out, so most, not all
    deadline = time.monotonic() + 10
    while hot() - start < 60 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hot() - start >= 60
