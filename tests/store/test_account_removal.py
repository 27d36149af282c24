"""Removing an account from the SQLite store, or setting its data aside (no root needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore
from correo.store.sqlite_accounts import is_tombstone

A = "a@x.test"


async def filled(root: Path) -> SqliteStore:
    """An account with mail (one body shared with b@x.test), a folder, a script,
    vacation memory and junk-filter counts."""
    store = SqliteStore(root, spool_memory=1024)
    await store.open()
    for size in (10, 5000):  # one inline body, one file
        spool = store.new_spool()
        spool.write(b"Subject: s\r\n\r\n" + b"x" * size)
        await store.deliver(
            spool, Envelope("s@x.test"), [DeliveryTarget(A), DeliveryTarget("b@x.test")]
        )
    await store.create_mailbox(A, "Folder")
    await store.sieve_put(A, "main", 'redirect "old@elsewhere.test";')
    await store.sieve_activate(A, "main")
    assert not await store.vacation_seen(A, "h", "s@x.test", 7)
    await store.junk_learn(A, ["tok1", "tok2"], spam=True)
    return store


async def nothing_left(store: SqliteStore, name: str) -> None:
    assert await store.list_mailboxes(name) == []
    assert await store.sieve_list(name) == []
    assert await store.sieve_active(name) is None
    assert not await store.vacation_seen(name, "h", "s@x.test", 7)  # forgotten: not seen
    assert await store.junk_counts(name, ["tok1"]) == (0, 0, {})


def test_delete_account_takes_everything_but_shared_bodies(tmp_path: Path) -> None:
    async def go() -> None:
        store = await filled(tmp_path)
        try:
            await store.delete_account(A)
            await nothing_left(store, A)
            assert len(await store.list_messages("b@x.test")) == 2  # b's copies stay
            chunks = store.read_message("b@x.test", "INBOX", 2)
            assert len(b"".join([c async for c in chunks])) == 5014
            assert await store.kept_accounts() == []
        finally:
            await store.close()

    asyncio.run(go())


def test_set_aside_moves_everything_under_a_name_no_address_can_have(tmp_path: Path) -> None:
    async def go() -> None:
        store = await filled(tmp_path)
        try:
            tombstone = await store.set_aside_account(A)
            assert tombstone is not None and tombstone.startswith(A + " (deleted ")
            assert is_tombstone(tombstone) and not is_tombstone(A)
            await nothing_left(store, A)
            await store.create_account(A)  # the address starts again, empty
            assert await store.list_messages(A) == []
            assert {m.name for m in await store.list_mailboxes(tombstone)} >= {"INBOX", "Folder"}
            assert len(await store.list_messages(tombstone)) == 2
            assert await store.sieve_active(tombstone) == ("main", 'redirect "old@elsewhere.test";')
            assert await store.vacation_seen(tombstone, "h", "s@x.test", 7)
            assert (await store.junk_counts(tombstone, ["tok1"]))[0] == 1
            assert await store.kept_accounts() == [(tombstone, 2)]
            assert await store.set_aside_account("nobody@x.test") is None
        finally:
            await store.close()

    asyncio.run(go())
