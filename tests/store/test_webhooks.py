"""The webhook queue of the store API, against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from correo.store.api import MailStore, WebhookCall
from correo.store.sqlite import SqliteStore

Factory = Callable[[Path], MailStore]


@pytest.fixture(params=("sqlite", "postgresql"))
def factory(request: pytest.FixtureRequest) -> Factory:
    if request.param == "sqlite":
        return lambda p: SqliteStore(p, spool_memory=1024, recover=True)
    from correo.store.postgres import PostgresStore

    url = request.getfixturevalue("pg_cluster").new_database(schema=True)
    return lambda p: PostgresStore(url, p, spool_memory=1024, recover=True)


def with_store(factory: Factory, path: Path, body: Callable[[MailStore], Awaitable[None]]) -> None:
    async def go() -> None:
        store = factory(path)
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(go())


def call(n: int, event: str = "received") -> WebhookCall:
    return WebhookCall(f"key-{n}", f"http://127.0.0.1:9/{n}", event, b'{"n": %d}' % n)


def test_add_due_fail_done(factory: Factory, tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        ids = await store.webhook_add([call(1), call(2, "bounced")], 1000.0)
        assert len(ids) == 2 and ids[0] < ids[1]
        assert await store.webhook_next_due() == 1000.0
        assert await store.webhook_due(999.0, 10) == []  # not due yet
        due = await store.webhook_due(1000.0, 10, lease=60.0)
        assert [(e.id, e.key, e.event, e.payload) for e in due] == [
            (ids[0], "key-1", "received", b'{"n": 1}'),
            (ids[1], "key-2", "bounced", b'{"n": 2}'),
        ]
        assert due[0].url == "http://127.0.0.1:9/1" and due[0].attempts == 0
        assert await store.webhook_next_due() == 1060.0  # leased: not due before it ends
        # excluded (in flight here): not handed out again
        assert await store.webhook_due(1001.0, 10, exclude=ids) == []
        await store.webhook_failed(ids[0], 2000.0, "HTTP 503: busy")
        entry = await store.webhook_get(ids[0])
        assert entry is not None
        assert (entry.attempts, entry.next_attempt, entry.last_error) == (
            1,
            2000.0,
            "HTTP 503: busy",
        )
        assert entry.lease_until == 0.0
        await store.webhook_done(ids[1])
        assert await store.webhook_get(ids[1]) is None
        listed = await store.webhook_list()
        assert [(e.id, e.attempts, e.payload) for e in listed] == [(ids[0], 1, b"")]
        assert await store.webhook_next_due() == 2000.0
        assert await store.webhook_retry(ids[0], 1500.0) == 1
        assert [e.id for e in await store.webhook_due(1500.0, 10)] == [ids[0]]
        assert await store.webhook_retry(None, 1600.0) == 1
        assert await store.webhook_retry(ids[0] + 100, 1600.0) == 0
        assert await store.webhook_delete(ids[0]) is True
        assert await store.webhook_delete(ids[0]) is False
        assert await store.webhook_list() == []
        assert await store.webhook_next_due() is None

    with_store(factory, tmp_path, body)


def test_calls_survive_a_restart_and_ids_are_not_reused(factory: Factory, tmp_path: Path) -> None:
    ids: list[int] = []

    async def first(store: MailStore) -> None:
        ids.extend(await store.webhook_add([call(1), call(2)], 10.0))
        # leased by a run that then dies: the restarted one takes it again at once
        assert len(await store.webhook_due(10.0, 1, lease=3600.0)) == 1
        await store.webhook_delete(ids[1])

    async def second(store: MailStore) -> None:
        due = await store.webhook_due(20.0, 10)
        assert [(e.id, e.key) for e in due] == [(ids[0], "key-1")]
        (new,) = await store.webhook_add([call(3)], 30.0)
        assert new > ids[1]

    with_store(factory, tmp_path, first)
    with_store(factory, tmp_path, second)


def test_link_key_is_made_once_and_kept(factory: Factory, tmp_path: Path) -> None:
    keys: list[bytes] = []

    async def body(store: MailStore) -> None:
        keys.append(await store.webhook_key())
        keys.append(await store.webhook_key())

    with_store(factory, tmp_path, body)
    with_store(factory, tmp_path, body)
    assert len(keys[0]) == 32 and len(set(keys)) == 1


def test_one_node_takes_each_call(tmp_path: Path, pg_cluster: object) -> None:
    """Two nodes on one database: a call leased by one is not handed to the other."""
    from correo.store.postgres import PostgresStore

    url = pg_cluster.new_database(schema=True)  # type: ignore[attr-defined]

    async def go() -> None:
        a = PostgresStore(url, tmp_path / "a", recover=True)
        b = PostgresStore(url, tmp_path / "b", recover=True)
        await a.open()
        await b.open()
        try:
            await a.webhook_add([call(n) for n in range(6)], 100.0)
            got_a, got_b = await asyncio.gather(
                a.webhook_due(100.0, 4, lease=60.0), b.webhook_due(100.0, 4, lease=60.0)
            )
            ids_a, ids_b = {e.id for e in got_a}, {e.id for e in got_b}
            assert not ids_a & ids_b and len(ids_a | ids_b) == 6
            # a's leases hold (b's own are in flight, excluded) ... until they run out
            assert await b.webhook_due(101.0, 10, exclude=list(ids_b)) == []
            assert {e.id for e in await b.webhook_due(200.0, 10, exclude=list(ids_b))} == ids_a
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())
