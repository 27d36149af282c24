"""The SQLite store on a full disk (a real tmpfs): errors, no leftovers, no stale caches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from correo.store.api import DeliveryTarget, Envelope, StoreFullError
from correo.store.sqlite import SqliteStore
from tests.tmpfs import full_disk, mounted_tmpfs, needs_tmpfs

A = "a@x.test"


def spooled(store: SqliteStore, data: bytes) -> object:
    spool = store.new_spool()
    spool.write(data)
    return spool


async def deliver(store: SqliteStore, spool: object, *targets: DeliveryTarget) -> object:
    # a bound wait: a write that is never answered fails the test instead of hanging it
    return await asyncio.wait_for(
        store.deliver(spool, Envelope("s@x.test"), list(targets)),  # type: ignore[arg-type]
        timeout=10,
    )


def files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@needs_tmpfs
def test_a_large_message_that_cannot_be_committed_leaves_no_file(tmp_path: Path) -> None:
    (tmp_path / "fs").mkdir()
    with mounted_tmpfs(tmp_path / "fs") as root:

        async def go() -> None:
            store = SqliteStore(root / "store", spool_memory=1024, recover=True)
            await store.open()
            try:
                await store.create_account(A)
                spool = spooled(store, b"Subject: big\r\n\r\n" + b"z" * 200_000)
                with full_disk(root):  # the spool file is written: only the commit fails
                    with pytest.raises(StoreFullError):
                        await deliver(store, spool, DeliveryTarget(A))
                    assert files(store.blob_dir) == [] and files(store.tmp_dir) == []
                with full_disk(root):  # again: the failed commit gave its blob's space back
                    spool = store.new_spool()
                    with pytest.raises(OSError):  # the spool itself cannot be written
                        spool.write(b"x" * 2048)
                    assert files(store.tmp_dir) == []  # its partial file is gone at once
                    with pytest.raises(StoreFullError):
                        await deliver(store, spool, DeliveryTarget(A))
                spool = spooled(store, b"Subject: big\r\n\r\n" + b"z" * 200_000)
                await deliver(store, spool, DeliveryTarget(A))
                assert [m.size for m in await store.list_messages(A)] == [200_016]
            finally:
                await store.close()

        asyncio.run(go())


@needs_tmpfs
def test_a_failed_commit_leaves_no_stale_mailbox_id(tmp_path: Path) -> None:
    """A mailbox created in a batch that is rolled back must be created again later."""
    (tmp_path / "fs").mkdir()
    with mounted_tmpfs(tmp_path / "fs") as root:

        async def go() -> None:
            store = SqliteStore(root / "store", recover=True)
            await store.open()
            try:
                await store.create_account(A)
                twice = (DeliveryTarget(A, "Folder"), DeliveryTarget(A, "Folder"))
                spool = spooled(store, b"Subject: one\r\n\r\nx\r\n")
                with full_disk(root), pytest.raises(StoreFullError):
                    await deliver(store, spool, *twice)
                await store.create_mailbox("b@x.test", "Other")  # takes the freed row id
                await deliver(store, spooled(store, b"Subject: two\r\n\r\nx\r\n"), *twice)
                assert len(await store.list_messages(A, "Folder")) == 2
                assert await store.list_messages("b@x.test", "Other") == []
            finally:
                await store.close()

        asyncio.run(go())


def test_the_server_store_sees_an_account_removed_by_another_process(tmp_path: Path) -> None:
    """``correo user del`` runs in its own process: the server's cached ids must not
    send the next message into the removed account's (or anyone else's) mailbox."""

    async def go() -> None:
        server = SqliteStore(tmp_path, recover=True)
        await server.open()
        cli = SqliteStore(tmp_path)
        await cli.open()
        try:
            for _ in range(2):  # the second finds INBOX and caches its id
                old = spooled(server, b"Subject: old\r\n\r\nx\r\n")
                await deliver(server, old, DeliveryTarget(A))
            await cli.delete_account(A)
            await cli.create_mailbox("b@x.test", "Other")
            await cli.create_account(A)
            await deliver(server, spooled(server, b"Subject: new\r\n\r\nx\r\n"), DeliveryTarget(A))
            assert len(await server.list_messages(A)) == 1
            assert await server.list_messages("b@x.test", "Other") == []
        finally:
            await cli.close()
            await server.close()

    asyncio.run(go())
