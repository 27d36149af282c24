"""Quotas (RFC 9208), run against every store: usage kept exact on every path, limits
enforced in the write's own transaction (racing writers never pass one, on PostgreSQL
from two nodes at once), refusals per account, and the 90 % crossing reported once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from correo.store.api import (
    INBOX,
    DeliveryTarget,
    Envelope,
    MailStore,
    QueuedRecipient,
    QuotaExceededError,
)
from correo.store.sqlite import SqliteStore
from tests.store.test_contract import Factory, factory, opened, run

__all__ = ["factory"]


async def put(
    store: MailStore,
    size: int,
    targets: list[DeliveryTarget],
    queued: list[QueuedRecipient] | None = None,
    fallback: dict[str, list[QueuedRecipient]] | None = None,
) -> object:
    spool = store.new_spool()
    spool.write(b"Subject: q\r\n\r\n" + b"x" * (size - 15) + b"\n")
    assert spool.size == size
    return await store.deliver(
        spool, Envelope("s@x.test"), targets, queued or [], quota_fallback=fallback
    )


def test_usage_is_exact_on_every_path(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            q = await store.get_quota("a@x.test")
            assert (q.used_storage, q.used_messages, q.storage, q.messages) == (0, 0, None, None)
            await put(store, 100, [DeliveryTarget("a@x.test")])
            await put(store, 2000, [DeliveryTarget("a@x.test"), DeliveryTarget("b@x.test")])
            await store.create_mailbox("a@x.test", "Keep")
            q = await store.get_quota("a@x.test")
            assert (q.used_storage, q.used_messages) == (2100, 2)
            small, large = [m.uid for m in await store.list_messages("a@x.test")]
            await store.copy_messages("a@x.test", INBOX, [small, large], "Keep")
            q = await store.get_quota("a@x.test")
            assert (q.used_storage, q.used_messages) == (4200, 4)
            await store.copy_messages("a@x.test", "Keep", [1], INBOX, move=True)
            assert (await store.get_quota("a@x.test")).used_storage == 4200
            assert await store.expunge("a@x.test", INBOX, [small]) == 1
            q = await store.get_quota("a@x.test")
            assert (q.used_storage, q.used_messages) == (4100, 3)
            await store.delete_mailbox("a@x.test", "Keep")
            q = await store.get_quota("a@x.test")
            assert (q.used_storage, q.used_messages) == (2100, 2)
            assert (await store.get_quota("b@x.test")).used_storage == 2000  # own copy
            await store.delete_account("a@x.test")
            assert (await store.get_quota("a@x.test")).used_messages == 0
        finally:
            await store.close()

    run(go())


def test_limits_own_default_and_none(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            store.set_default_quota(5000, None)
            q = await store.get_quota("a@x.test")
            assert (q.storage, q.messages, q.storage_default) == (5000, None, True)
            q = await store.set_quota("a@x.test", 1000, 3)
            assert (q.storage, q.messages, q.storage_default, q.messages_default) == (
                1000,
                3,
                False,
                False,
            )
            q = await store.set_quota("a@x.test", None, "default")
            assert (q.storage, q.messages, q.storage_default) == (None, None, False)
            q = await store.set_quota("a@x.test", "default", "default")
            assert (q.storage, q.storage_default) == (5000, True)
        finally:
            await store.close()

    run(go())


def test_refusal_writes_nothing_and_says_whether_permanent(
    factory: Factory, tmp_path: Path
) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            await store.set_quota("a@x.test", 1000, 2)
            await put(store, 600, [DeliveryTarget("a@x.test")])
            with pytest.raises(QuotaExceededError) as info:
                await put(store, 600, [DeliveryTarget("a@x.test")])
            assert info.value.code == "OVERQUOTA" and not info.value.permanent
            with pytest.raises(QuotaExceededError) as info:
                await put(store, 1001, [DeliveryTarget("a@x.test")])
            assert info.value.permanent
            # a 300000-octet body (a file or chunks) is cleaned up after a refusal too
            with pytest.raises(QuotaExceededError):
                await put(store, 300_000, [DeliveryTarget("a@x.test")])
            assert len(await store.list_messages("a@x.test")) == 1
            # the server's own notices are never refused
            await put(store, 600, [DeliveryTarget("a@x.test", quota=False)])
            q = await store.get_quota("a@x.test")
            assert (q.used_storage, q.used_messages) == (1200, 2)
            # MESSAGE resource: a third message is refused though it is small
            await store.set_quota("a@x.test", None, 2)
            with pytest.raises(QuotaExceededError):
                await put(store, 20, [DeliveryTarget("a@x.test")])
            await store.create_mailbox("a@x.test", "Copy")
            with pytest.raises(QuotaExceededError):
                await store.copy_messages("a@x.test", INBOX, [1], "Copy")
            assert await store.list_messages("a@x.test", "Copy") == []
            # a MOVE adds nothing: allowed even at (or over) the limit
            await store.copy_messages("a@x.test", INBOX, [1], "Copy", move=True)
            assert len(await store.list_messages("a@x.test", "Copy")) == 1
        finally:
            await store.close()

    run(go())


def test_fallback_refuses_one_account_and_files_the_others(
    factory: Factory, tmp_path: Path
) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            await store.set_quota("full@x.test", 500, None)
            fallback = {"full@x.test": [QueuedRecipient("full@x.test", "FAILURE")]}
            delivered = await put(
                store,
                800,
                [DeliveryTarget("ok@x.test"), DeliveryTarget("full@x.test", "Lists")],
                [
                    QueuedRecipient("far@y.test"),
                    QueuedRecipient("fwd@y.test", owner="full@x.test"),
                ],
                fallback,
            )
            assert delivered.over_quota == (("full@x.test", True),)  # type: ignore[attr-defined]
            assert [t.account for t, _ in delivered.uids] == ["ok@x.test"]  # type: ignore[attr-defined]
            queued = await store.queue_list()
            assert [r[0] for r in queued[0].recipients] == ["far@y.test", "full@x.test"]
            assert await store.list_messages("full@x.test", "Lists") == []
            # nothing else to store: nothing is written, the refusal is reported
            delivered = await put(store, 800, [DeliveryTarget("full@x.test")], fallback={})
            assert delivered.uids == () and delivered.queue_id is None  # type: ignore[attr-defined]
            assert delivered.over_quota == (("full@x.test", True),)  # type: ignore[attr-defined]
            assert len(await store.queue_list()) == 1
        finally:
            await store.close()

    run(go())


def test_crossing_ninety_percent_is_reported_once(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        seen: list[str] = []
        store.observe_quota(seen.append)
        try:
            await store.set_quota("a@x.test", 1000, None)
            await put(store, 500, [DeliveryTarget("a@x.test")])
            await put(store, 300, [DeliveryTarget("a@x.test")])
            await asyncio.sleep(0.05)
            assert seen == []
            await put(store, 150, [DeliveryTarget("a@x.test")])  # 950: past 900
            await put(store, 20, [DeliveryTarget("a@x.test")])  # still above: no repeat
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            assert seen == ["a@x.test"]
            await store.expunge("a@x.test", INBOX, [1])  # 470: below again
            await put(store, 450, [DeliveryTarget("a@x.test")])  # 920: crossed again
            for _ in range(100):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.01)
            assert seen == ["a@x.test", "a@x.test"]
        finally:
            await store.close()

    run(go())


def test_racing_writers_never_pass_the_limit(factory: Factory, tmp_path: Path) -> None:
    """Twenty deliveries and five COPYs race for room for six messages: six land."""

    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            await store.set_quota("a@x.test", 6 * 1000, None)
            await put(store, 1000, [DeliveryTarget("a@x.test")])
            await store.create_mailbox("a@x.test", "Other")

            async def one() -> bool:
                try:
                    await put(store, 1000, [DeliveryTarget("a@x.test")])
                except QuotaExceededError:
                    return False
                return True

            async def copy() -> bool:
                try:
                    await store.copy_messages("a@x.test", INBOX, [1], "Other")
                except QuotaExceededError:
                    return False
                return True

            results = await asyncio.gather(*[one() for _ in range(20)], *[copy() for _ in range(5)])
            assert sum(results) == 5
            q = await store.get_quota("a@x.test")
            assert (q.used_storage, q.used_messages) == (6000, 6)
            total = len(await store.list_messages("a@x.test")) + len(
                await store.list_messages("a@x.test", "Other")
            )
            assert total == 6
        finally:
            await store.close()

    run(go())


def test_two_postgresql_nodes_racing_never_pass_the_limit(
    pg_cluster: object, tmp_path: Path
) -> None:
    """Two stores on one database (two nodes, two connection pools and committers)."""
    pytest.importorskip("psycopg")
    from correo.store.postgres import PostgresStore

    url = pg_cluster.new_database(schema=True)  # type: ignore[attr-defined]

    async def go() -> None:
        one = PostgresStore(url, tmp_path / "one", spool_memory=1024, recover=True)
        two = PostgresStore(url, tmp_path / "two", spool_memory=1024, recover=True)
        await one.open()
        await two.open()
        try:
            await one.set_quota("a@x.test", 10 * 700, None)

            async def deliver(store: MailStore) -> bool:
                try:
                    await put(store, 700, [DeliveryTarget("a@x.test")])
                except QuotaExceededError:
                    return False
                return True

            results = await asyncio.gather(*[deliver(one if i % 2 else two) for i in range(30)])
            assert sum(results) == 10
            q = await two.get_quota("a@x.test")
            assert (q.used_storage, q.used_messages) == (7000, 10)
        finally:
            await one.close()
            await two.close()

    run(go())


def test_early_check_follows_this_nodes_writes(factory: Factory, tmp_path: Path) -> None:
    """quota_refusal (the RCPT / pre-filing check) sees at once what this store's own
    deliveries, limits and expunges did, though it may answer from a copy."""

    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            await store.set_quota("a@x.test", 1000, 3)
            assert await store.quota_refusal("a@x.test", 400) is None
            await put(store, 400, [DeliveryTarget("a@x.test")])
            assert await store.quota_refusal("a@x.test", 400) is None
            await put(store, 400, [DeliveryTarget("a@x.test")])
            assert await store.quota_refusal("a@x.test", 400) is False  # 1200 > 1000
            assert await store.quota_refusal("a@x.test", 1001) is True  # never fits
            assert await store.quota_refusal("a@x.test", 100, 2) is False  # 4 > 3 messages
            assert await store.quota_refusal("a@x.test", 100) is None
            await store.set_quota("a@x.test", 500, None)
            assert await store.quota_refusal("a@x.test", 100) is False
            uids = [m.uid for m in await store.list_messages("a@x.test")]
            await store.expunge("a@x.test", INBOX, uids[:1])
            assert await store.quota_refusal("a@x.test", 100) is None
        finally:
            await store.close()

    run(go())


def test_early_check_sees_another_nodes_delivery(pg_cluster: object, tmp_path: Path) -> None:
    """A node's copy of a quota is dropped when the change feed reports another node's
    delivery, and a refusal is always read fresh; the delivery itself still refuses."""
    pytest.importorskip("psycopg")
    from correo.store.postgres import PostgresStore

    url = pg_cluster.new_database(schema=True)  # type: ignore[attr-defined]

    async def go() -> None:
        one = PostgresStore(url, tmp_path / "one", spool_memory=1024, recover=True)
        two = PostgresStore(url, tmp_path / "two", spool_memory=1024, recover=True)
        await one.open()
        await two.open()
        try:
            await one.set_quota("a@x.test", 1000, None)
            await put(one, 100, [DeliveryTarget("a@x.test")])  # node one learns the mailbox
            assert await one.quota_refusal("a@x.test", 500) is None
            await put(two, 800, [DeliveryTarget("a@x.test")])
            for _ in range(100):  # the notification reaches node one within a moment
                if await one.quota_refusal("a@x.test", 500) is False:
                    break
                await asyncio.sleep(0.02)
            assert await one.quota_refusal("a@x.test", 500) is False
            with pytest.raises(QuotaExceededError):
                await put(one, 500, [DeliveryTarget("a@x.test")])
        finally:
            await one.close()
            await two.close()

    run(go())


def test_a_store_made_before_quotas_counts_its_mail_once(factory: Factory, tmp_path: Path) -> None:
    """The upgrade: mail stored before the quota table existed is counted when it is
    made (SQLite: on open; PostgreSQL: migration 21), and counted on from then on."""

    async def go() -> None:
        store = await opened(factory, tmp_path)
        await put(store, 1000, [DeliveryTarget("a@x.test"), DeliveryTarget("a@x.test", "Sent")])
        await put(store, 500, [DeliveryTarget("b@x.test")])
        await store.set_quota("a@x.test", 5000, None)
        await store.close()
        if isinstance(store, SqliteStore):
            conn = sqlite3.connect(tmp_path / "mail.db")
            conn.executescript(
                "DROP TRIGGER quota_add; DROP TRIGGER quota_remove; DROP TRIGGER quota_forget;"
                " DROP TABLE quotas;"
            )
            conn.close()
        else:
            import psycopg

            url = store.url  # type: ignore[attr-defined]
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    b"DROP TABLE quotas; DROP FUNCTION quota_count() CASCADE;"
                    b" DELETE FROM schema_version WHERE version = 21"
                )
        store = await opened(factory, tmp_path)
        try:
            a, b = await store.get_quota("a@x.test"), await store.get_quota("b@x.test")
            assert (a.used_storage, a.used_messages, a.storage) == (2000, 2, None)
            assert (b.used_storage, b.used_messages) == (500, 1)
            await put(store, 300, [DeliveryTarget("b@x.test")])
            assert (await store.get_quota("b@x.test")).used_storage == 800
        finally:
            await store.close()

    run(go())


def test_store_copy_carries_each_accounts_limits(
    pg_cluster: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``correo store copy`` (SQLite to PostgreSQL) brings an account's own limits; the
    usage is the target's own count of the copied mail."""
    pytest.importorskip("psycopg")
    from correo.cli.main import main
    from correo.store.postgres import PostgresStore

    url = pg_cluster.new_database()  # type: ignore[attr-defined]
    data = tmp_path / "data"

    async def fill() -> None:
        store = SqliteStore(data / "store")
        await store.open()
        try:
            await store.set_quota("a@x.test", 5000, 7)
            await store.set_quota("b@x.test", None, "default")
            await put(store, 1200, [DeliveryTarget("a@x.test"), DeliveryTarget("b@x.test")])
        finally:
            await store.close()

    run(fill())
    assert main(["--data", str(data), "store", "copy", "--to", url]) == 0, capsys.readouterr()

    async def read() -> tuple[object, object]:
        store = PostgresStore(url, tmp_path / "t", listen=False)
        await store.open()
        try:
            return await store.get_quota("a@x.test"), await store.get_quota("b@x.test")
        finally:
            await store.close()

    a, b = run(read())  # type: ignore[misc]
    assert (a.storage, a.messages, a.used_storage, a.used_messages) == (5000, 7, 1200, 1)
    assert (b.storage, b.storage_default, b.messages_default) == (None, False, True)
