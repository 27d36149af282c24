"""Deliveries of one group commit in one statement (``postgres_group.py``), on a real
PostgreSQL (tests/pg.py): UIDs and MODSEQs, shared bodies, quotas and the fallback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from correo.store.api import DeliveryTarget, Envelope, QuotaExceededError

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

from correo.store.postgres import PostgresStore  # noqa: E402


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def node(url: str, root: Path) -> PostgresStore:
    store = PostgresStore(url, root, spool_memory=1 << 20, recover=True)
    await store.open()
    return store


async def put(store: PostgresStore, data: bytes, targets: list[DeliveryTarget]) -> Any:
    spool = store.new_spool()
    spool.write(data)
    return await store.deliver(spool, Envelope("s@x.test"), targets)


def counting(store: PostgresStore) -> list[int]:
    """Sizes of the groups the store's runner was handed."""
    sizes: list[int] = []
    runner = store._deliver_group

    async def spy(conn: Any, group: Any) -> Any:
        sizes.append(len(group))
        return await runner(conn, group)

    store._deliver_group = spy  # type: ignore[method-assign]
    return sizes


def test_concurrent_deliveries_share_a_statement_with_distinct_uids(
    pg_url: str, tmp_path: Path
) -> None:
    async def go() -> None:
        store = await node(pg_url, tmp_path)
        sizes = counting(store)
        try:
            for account in ("a@x.test", "b@x.test"):
                await store.create_account(account)
            await store.create_mailbox("a@x.test", "Lists")
            same = b"Subject: same\r\n\r\nidentical body\r\n"
            jobs = []
            for i in range(60):
                data = same if i % 3 == 0 else b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i)
                targets = [
                    DeliveryTarget("a@x.test"),
                    DeliveryTarget("b@x.test", flags=("\\Seen",)),
                ]
                if i % 2:
                    targets.append(DeliveryTarget("a@x.test", "Lists"))
                jobs.append(put(store, data, targets))
            results = await asyncio.gather(*jobs)
            assert max(sizes, default=0) >= 2  # the group path ran
            for account, mailbox, n in (("a@x.test", "INBOX", 60), ("b@x.test", "INBOX", 60),
                                        ("a@x.test", "Lists", 30)):  # fmt: skip
                infos = await store.list_messages(account, mailbox)
                assert len(infos) == n
                assert len({m.uid for m in infos}) == n
                assert len({m.modseq for m in infos}) == n
                state = await store.mailbox_state(account, mailbox)
                assert max(m.uid for m in infos) < state.uidnext
                assert max(m.modseq for m in infos) <= state.highestmodseq
            for r in results:  # APPENDUID's UIDVALIDITY, read by the same statement
                validity = [await store.mailbox_state(t.account, t.mailbox) for t, _ in r.uids]
                assert r.validities == tuple(v.uidvalidity for v in validity)
                for target, uid in r.uids:
                    body = b"".join(
                        [c async for c in store.read_message(target.account, target.mailbox, uid)]
                    )
                    assert body.startswith(b"Subject: ")
            seen = await store.list_messages("b@x.test")
            assert all("\\Seen" in m.flags for m in seen)
            q = await store.get_quota("a@x.test")
            infos = await store.list_messages("a@x.test") + await store.list_messages(
                "a@x.test", "Lists"
            )
            assert (q.used_messages, q.used_storage) == (90, sum(m.size for m in infos))
        finally:
            await store.close()
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(b"SELECT refs FROM blobs WHERE data = %s", (same,)).fetchone()
        assert row is not None and row[0] == 20 * 2 + 10  # 20 messages, half with Lists

    run(go())


def test_a_group_near_the_quota_falls_back_and_never_passes_it(pg_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        store = await node(pg_url, tmp_path)
        sizes = counting(store)
        try:
            await store.set_quota("a@x.test", None, 7)

            async def one(i: int) -> bool:
                try:
                    await put(store, b"Subject: %d\r\n\r\nx\r\n" % i, [DeliveryTarget("a@x.test")])
                except QuotaExceededError:
                    return False
                return True

            results = await asyncio.gather(*[one(i) for i in range(20)])
            assert max(sizes, default=0) >= 2
            assert sum(results) == 7
            q = await store.get_quota("a@x.test")
            assert q.used_messages == 7
            assert len(await store.list_messages("a@x.test")) == 7
        finally:
            await store.close()

    run(go())


def test_a_missing_mailbox_in_a_group_is_made_by_its_own_path(pg_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        store = await node(pg_url, tmp_path)
        sizes = counting(store)
        try:
            await store.create_account("a@x.test")
            jobs = [
                put(store, b"Subject: %d\r\n\r\nx\r\n" % i,
                    [DeliveryTarget("a@x.test" if i % 4 else f"new{i}@x.test")])
                for i in range(24)
            ]  # fmt: skip
            results = await asyncio.gather(*jobs)
            assert max(sizes, default=0) >= 2
            assert len(await store.list_messages("a@x.test")) == 18
            for i in range(0, 24, 4):
                assert len(await store.list_messages(f"new{i}@x.test")) == 1
                made = await store.mailbox_state(f"new{i}@x.test")
                assert results[i].validities == (made.uidvalidity,)
        finally:
            await store.close()

    run(go())
