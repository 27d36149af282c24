"""The store's MDA section: Sieve scripts (RFC 5804 semantics) and vacation memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from correo.store.api import MailboxError
from correo.store.sqlite import SqliteStore


def run(tmp_path: Path, body):  # type: ignore[no-untyped-def]
    async def go() -> None:
        store = SqliteStore(tmp_path / "store")
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(go())


def test_scripts(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        a = "alice@example.test"
        await s.sieve_put(a, "one", "keep;")
        await s.sieve_put(a, "two", "discard;")
        assert await s.sieve_active(a) is None
        await s.sieve_activate(a, "two")
        assert await s.sieve_active(a) == ("two", "discard;")
        await s.sieve_put(a, "two", "keep;")  # replacing keeps it active (RFC 5804 §2.6)
        assert await s.sieve_list(a) == [("one", False), ("two", True)]
        with pytest.raises(MailboxError) as e:
            await s.sieve_delete(a, "two")
        assert e.value.code == "ACTIVE"
        with pytest.raises(MailboxError) as e:
            await s.sieve_rename(a, "one", "two")
        assert e.value.code == "ALREADYEXISTS"
        with pytest.raises(MailboxError) as e:
            await s.sieve_activate(a, "nope")
        assert e.value.code == "NONEXISTENT"
        await s.sieve_rename(a, "two", "three")
        assert await s.sieve_active(a) == ("three", "keep;")
        await s.sieve_activate(a, None)
        await s.sieve_delete(a, "three")
        assert await s.sieve_list(a) == [("one", False)]
        assert await s.sieve_list("bob@example.test") == []

    run(tmp_path, body)


def test_vacation_seen_once_per_sender_per_handle(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        a = "alice@example.test"
        assert await s.vacation_seen(a, "h1", "Dave@Remote.test", 7) is False
        assert await s.vacation_seen(a, "h1", "dave@remote.test", 7) is True
        assert await s.vacation_seen(a, "h2", "dave@remote.test", 7) is False
        assert await s.vacation_seen("bob@example.test", "h1", "dave@remote.test", 7) is False
        assert await s.vacation_seen(a, "h1", "dave@remote.test", 0) is False  # :days elapsed

    run(tmp_path, body)
