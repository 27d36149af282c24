"""The account feed on both stores: a change of an account's Sieve scripts, quota limits
or records moves :meth:`account_counter` and wakes :meth:`wait_for_account` — at once
for this store's own writes, and soon for another store's on the same data (the CLI on
SQLite, another node on PostgreSQL), which is what JMAP push waits on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from correo.store.api import MailStore
from tests.store.test_contract import Factory, factory, opened, run

__all__ = ["factory"]

A = "a@x.test"

Write = Callable[[MailStore], Awaitable[object]]
WRITES: list[tuple[str, Write]] = [
    ("sieve_put", lambda s: s.sieve_put(A, "one", "keep;")),
    ("sieve_activate", lambda s: s.sieve_activate(A, "one")),
    ("sieve_rename", lambda s: s.sieve_rename(A, "one", "two")),
    ("sieve_deactivate", lambda s: s.sieve_activate(A, None)),
    ("sieve_delete", lambda s: s.sieve_delete(A, "two")),
    ("set_quota", lambda s: s.set_quota(A, 5_000_000, None)),
    ("record_put", lambda s: s.record_put(A, "submission", "S1", "{}")),
]


async def _woken(watcher: MailStore, writer: MailStore, write: Write, what: str) -> None:
    counter = watcher.account_counter(A)
    waiting = asyncio.ensure_future(watcher.wait_for_account(A, counter, 10.0))
    await asyncio.sleep(0)  # the waiter is registered
    await write(writer)
    assert await waiting, f"{what} woke no waiter"
    assert watcher.account_counter(A) != counter, what


def test_own_writes_wake_account_waiters(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            other = store.account_counter("b@x.test")
            for what, write in WRITES:
                await _woken(store, store, write, what)
            assert store.account_counter("b@x.test") == other  # only the account's own
        finally:
            await store.close()

    run(go())


def test_another_store_s_writes_wake_account_waiters(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        watcher = await opened(factory, tmp_path)
        writer = factory(tmp_path)  # the CLI, another node: not the data's owner
        writer.recover = False
        await writer.open()
        try:
            feed = getattr(watcher, "feed", None)  # PostgreSQL: its LISTEN is on
            if feed is not None:
                await asyncio.wait_for(feed.listening.wait(), 10)
            for what, write in WRITES:
                await _woken(watcher, writer, write, what)
        finally:
            await writer.close()
            await watcher.close()

    run(go())
