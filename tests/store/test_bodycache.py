"""The PostgreSQL store's node-local body cache on disk (store/bodycache.py), against a
real PostgreSQL (tests/pg.py): what it serves is the database's bytes, two nodes fill
their own, the bound holds, a damaged file is never served, a full or read-only folder
only costs misses, and a restarted node finds its folder again.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from correo.config import ConfigError, load_config, render_default_config
from correo.store.api import DeliveryTarget, Envelope
from correo.store.bodycache import DiskBodyCache
from tests.tmpfs import full_disk, mounted_tmpfs, needs_tmpfs

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

from correo.store.postgres import PostgresStore  # noqa: E402

A = "a@x.test"
INBOX = "INBOX"


def body(seed: int, size: int = 50_000) -> bytes:
    rnd = random.Random(seed)
    words = [b"mail", b"server", b"folder", b"reply", b"thread", b"garden", b"river"]
    text = b" ".join(rnd.choice(words) for _ in range(size // 6))
    return b"Subject: s%d\r\n\r\n" % seed + text + b"\r\n"


def database_bytes(url: str, uid: int) -> bytes:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            b"SELECT b.data FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id"
            b" JOIN blobs b ON b.id = m.blob_id WHERE x.name = 'INBOX' AND m.uid = %s",
            (uid,),
        ).fetchone()
    assert row is not None
    return bytes(row[0])


def node(url: str, root: Path, mb: int = 64, folder: Path | None = None) -> PostgresStore:
    return PostgresStore(url, root / "store", recover=True, body_cache_mb=mb, body_cache_dir=folder)


def cache_of(store: PostgresStore) -> DiskBodyCache:
    disk = store._disk_bodies
    assert disk is not None
    return disk


async def started(store: PostgresStore) -> DiskBodyCache:
    await store.open()
    disk = cache_of(store)
    await disk.wait_ready()
    # the listener's first connection forgets every name (it may have missed changes):
    # past it, what a test's reads learn stays learnt
    await asyncio.wait_for(store.feed.listening.wait(), 10)
    return disk


async def deliver(store: PostgresStore, data: bytes) -> int:
    spool = store.new_spool()
    spool.write(data)
    done = await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(A)])
    return done.uids[0][1]


def cached_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.name.isdigit()]


async def remount(fs: Path, mode: str) -> None:
    await asyncio.to_thread(subprocess.run, ["mount", "-o", f"remount,{mode}", str(fs)], check=True)


def run(go: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(go())


def test_a_delivery_is_written_through_and_read_back_without_the_database(
    pg_url: str, tmp_path: Path
) -> None:
    data = body(1)

    async def go() -> None:
        store = node(pg_url, tmp_path)
        disk = await started(store)
        try:
            await store.create_account(A)
            await store.mailbox_state(A, INBOX)  # a session has the mailbox open
            uid = await deliver(store, data)
            await disk.settle()
            assert len(cached_files(tmp_path / "cache" / "bodies")) == 1
            assert await store.read_inline(A, INBOX, uid) == database_bytes(pg_url, uid)
            assert (disk.hits, disk.misses) == (1, 0)
            # Served from the file, not the database: bodies never change, so a row
            # changed behind the store's back (never done otherwise) shows which answered.
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(b"UPDATE blobs SET data = 'changed'")
            got = [c async for c in store.read_message(A, INBOX, uid, 1000, 10, 5010)]
            assert b"".join(got) == data[10:5010] and all(len(c) <= 1000 for c in got)
            assert await store.read_inlines(A, INBOX, [uid]) == {uid: data}
            assert await store.read_inline(A, INBOX, uid) == data
            assert disk.hits == 4
        finally:
            await store.close()

    run(go)


def test_node_2_misses_then_hits_a_message_node_1_delivered(pg_url: str, tmp_path: Path) -> None:
    data = body(2)

    async def go() -> None:
        one, two = node(pg_url, tmp_path / "n1"), node(pg_url, tmp_path / "n2")
        disk1, disk2 = await started(one), await started(two)
        try:
            await one.create_account(A)
            await two.mailbox_state(A, INBOX)  # node 2 knows the mailbox: news reach it
            seen = two.change_counter(A, INBOX)
            uid = await deliver(one, data)
            for _ in range(250):  # node 1's NOTIFY (node 2 forgets the account's names)
                if two.change_counter(A, INBOX) != seen:
                    break
                await asyncio.sleep(0.02)
            assert two.change_counter(A, INBOX) != seen
            assert await two.read_inline(A, INBOX, uid) == data  # miss: from the database
            assert disk2.hits == 0
            await disk2.settle()
            assert await two.read_inline(A, INBOX, uid) == data  # hit: its own file
            assert disk2.hits == 1
            assert len(cached_files(tmp_path / "n2" / "cache" / "bodies")) == 1
            assert disk1.hits == 0
        finally:
            await one.close()
            await two.close()

    run(go)


def test_the_bound_holds_after_many_deliveries(pg_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        store = node(pg_url, tmp_path, mb=1)
        disk = await started(store)
        try:
            await store.create_account(A)
            await store.mailbox_state(A, INBOX)
            uids = [await deliver(store, body(i, 40_000)) for i in range(60)]  # 2.4 MB
            await disk.settle()
            files = cached_files(tmp_path / "cache" / "bodies")
            on_disk = sum(p.stat().st_size for p in files)
            assert 0 < on_disk <= 1 << 20 and on_disk == disk.size
            # the newest stayed, the oldest went; every message still reads right
            assert files and str(uids[-1]) in {p.name for p in files}
            for uid in (uids[0], uids[-1]):
                assert await store.read_inline(A, INBOX, uid) == body(uids.index(uid), 40_000)
        finally:
            await store.close()

    run(go)


@pytest.mark.parametrize("damage", ["truncated", "garbled", "emptied"])
def test_a_damaged_file_is_not_served(pg_url: str, tmp_path: Path, damage: str) -> None:
    """Damage as a power loss leaves it (the process ends too): found at the next start."""
    data = body(3)

    async def go() -> None:
        store = node(pg_url, tmp_path)
        disk = await started(store)
        try:
            await store.create_account(A)
            await store.mailbox_state(A, INBOX)
            uid = await deliver(store, data)
            await disk.settle()
        finally:
            await store.close()
        (path,) = cached_files(tmp_path / "cache" / "bodies")
        raw = path.read_bytes()
        if damage == "truncated":  # the rename reached the disk, not all of the data
            path.write_bytes(raw[: len(raw) // 2])
        elif damage == "garbled":  # a block of zeros where data was never written
            path.write_bytes(raw[:-4096] + bytes(4096))
        else:
            path.write_bytes(b"")
        again = node(pg_url, tmp_path)
        disk = await started(again)
        try:
            await again.mailbox_state(A, INBOX)
            assert await again.read_inline(A, INBOX, uid) == data
            assert disk.bad_files == 1 and disk.hits == 0
            await disk.settle()  # removed, and written again from the database's bytes
            assert path.read_bytes() == raw
            assert await again.read_inline(A, INBOX, uid) == data
            assert disk.hits == 1
        finally:
            await again.close()

    run(go)


def test_an_unusable_folder_serves_from_the_database(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    data = body(4)

    async def go() -> None:
        store = node(pg_url, tmp_path, folder=tmp_path / "not-a-folder" / "bodies")
        disk = await started(store)
        try:
            assert not await disk.wait_ready()
            await store.create_account(A)
            await store.mailbox_state(A, INBOX)
            uid = await deliver(store, data)
            assert await store.read_inline(A, INBOX, uid) == data
            assert await store.read_inline(A, INBOX, uid) == data
            assert disk.hits == 0
        finally:
            await store.close()

    run(go)


@needs_tmpfs
@pytest.mark.parametrize("trouble", ["full", "read-only"])
def test_a_full_or_read_only_folder_only_costs_misses(
    pg_url: str, tmp_path: Path, trouble: str
) -> None:
    (tmp_path / "fs").mkdir()
    first, second = body(5), body(6)
    with mounted_tmpfs(tmp_path / "fs", "2m") as fs:

        async def go() -> None:
            store = node(pg_url, tmp_path, folder=fs / "bodies")
            disk = await started(store)
            try:
                await store.create_account(A)
                await store.mailbox_state(A, INBOX)
                kept = await deliver(store, first)
                await disk.settle()
                if trouble == "full":
                    with full_disk(fs):
                        uid = await deliver(store, second)
                        await disk.settle()
                        assert disk.failed_writes == 1
                        assert await store.read_inline(A, INBOX, uid) == second
                        await disk.settle()
                else:
                    await remount(fs, "ro")
                    uid = await deliver(store, second)
                    await disk.settle()
                    assert disk.failed_writes == 1
                    assert await store.read_inline(A, INBOX, uid) == second
                    await disk.settle()
                    await remount(fs, "rw")
                assert disk.failed_writes == 2  # the write-through and the fill
                assert await store.read_inline(A, INBOX, kept) == first  # still a hit
                assert disk.hits == 1
                assert list((fs / "bodies" / "tmp").iterdir()) == []
            finally:
                await store.close()

        run(go)


def test_a_restarted_node_reads_its_folder_again(pg_url: str, tmp_path: Path) -> None:
    data = body(7)

    async def go() -> None:
        store = node(pg_url, tmp_path)
        disk = await started(store)
        try:
            await store.create_account(A)
            await store.mailbox_state(A, INBOX)
            uid = await deliver(store, data)
            await disk.settle()
        finally:
            await store.close()
        folder = tmp_path / "cache" / "bodies"
        (folder / "tmp" / "half-written").write_bytes(b"x")  # a crash's leftover
        again = node(pg_url, tmp_path)
        disk = await started(again)
        try:
            assert disk.size == sum(p.stat().st_size for p in cached_files(folder)) > 0
            assert list((folder / "tmp").iterdir()) == []
            await again.mailbox_state(A, INBOX)
            assert await again.read_inline(A, INBOX, uid) == data
            assert disk.hits == 1
        finally:
            await again.close()
        # the same folder under a node of another database: emptied before use
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(b"UPDATE meta SET value = value + 1 WHERE key = 'body_cache'")
        other = node(pg_url, tmp_path)
        disk = await started(other)
        try:
            assert disk.size == 0 and cached_files(folder) == []
            await other.mailbox_state(A, INBOX)
            assert await other.read_inline(A, INBOX, uid) == data
            assert disk.hits == 0
        finally:
            await other.close()

    run(go)


def test_a_renamed_mailbox_and_its_successor_never_share_entries(
    pg_url: str, tmp_path: Path
) -> None:
    """The names are the store's own: a mailbox made again under a name reads its own
    messages, on this node and on another that cached the old one."""
    old, new = body(8), body(9)

    async def go() -> None:
        one, two = node(pg_url, tmp_path / "n1"), node(pg_url, tmp_path / "n2")
        await started(one)
        disk2 = await started(two)
        try:
            await one.create_mailbox(A, "Box")
            await one.mailbox_state(A, "Box")
            spool = one.new_spool()
            spool.write(old)
            await one.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(A, "Box")])
            assert await two.read_inline(A, "Box", 1) == old
            for _ in range(100):  # the fill is written by the cache's own thread
                await disk2.settle()
                assert await two.read_inline(A, "Box", 1) == old
                if disk2.hits:
                    break
                await asyncio.sleep(0.02)
            assert disk2.hits >= 1  # node 2 holds the old Box's entry
            await one.rename_mailbox(A, "Box", "Old")
            await one.create_mailbox(A, "Box")
            spool = one.new_spool()
            spool.write(new)
            await one.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(A, "Box")])
            uid = (await one.list_messages(A, "Box"))[0].uid
            assert await one.read_inline(A, "Box", uid) == new
            for _ in range(100):  # node 2 hears of the rename (NOTIFY) within a second
                if not two._names.get(A):
                    break
                await asyncio.sleep(0.02)
            assert await two.read_inline(A, "Box", uid) == new
            assert await two.read_inline(A, "Old", 1) == old
        finally:
            await one.close()
            await two.close()

    run(go)


def test_the_folder_deleted_while_serving_is_only_misses(pg_url: str, tmp_path: Path) -> None:
    data = body(10)

    async def go() -> None:
        store = node(pg_url, tmp_path)
        disk = await started(store)
        try:
            await store.create_account(A)
            await store.mailbox_state(A, INBOX)
            uid = await deliver(store, data)
            await disk.settle()
            folder = tmp_path / "cache" / "bodies"
            await asyncio.to_thread(shutil.rmtree, folder)
            assert await store.read_inline(A, INBOX, uid) == data  # from the database
            assert disk.hits == 0 and disk.size == 0
            await disk.settle()
            assert len(cached_files(folder)) == 1  # made again by that read
            assert await store.read_inline(A, INBOX, uid) == data
            assert disk.hits == 1
        finally:
            await store.close()

    run(go)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("body_cache_mb", "-1", "must be 1 to 16777216 (or 0: no body cache on disk), not -1"),
        ("body_cache_mb", "99999999", "must be 1 to 16777216"),
        ("body_cache_mb", '"1G"', "must be a whole number"),
        ("body_cache_dir", '"a\\nb"', "control"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_key(
    tmp_path: Path, key: str, value: str, problem: str
) -> None:
    text = render_default_config("localhost") + f"\n[store]\n{key} = {value}\n"
    (tmp_path / "correo.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert f"[store] {key}" in message and problem in message and "\n" not in message


def test_the_settings_reach_the_store(tmp_path: Path) -> None:
    from correo.store.factory import open_store

    text = render_default_config("localhost") + (
        '\n[store]\nurl = "postgresql://u@127.0.0.1:1/db"\nbody_cache_mb = 5\n'
        'body_cache_dir = "elsewhere"\n'
    )
    (tmp_path / "correo.toml").write_text(text)
    config = load_config(tmp_path)
    store = open_store(config, recover=True)
    assert isinstance(store, PostgresStore)
    disk = cache_of(store)
    assert disk.folder == tmp_path / "elsewhere" and disk.limit == 5 << 20
    assert open_store(config)._disk_bodies is None  # type: ignore[attr-defined]
