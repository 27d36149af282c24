"""The group committer's failure rules: every waiter answered, no batch poisons the next."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from correo.store.committer import GroupCommitter, _resolve


def connector(path: Path) -> Any:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(
            "CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE IF NOT EXISTS child (id INTEGER PRIMARY KEY, parent INTEGER"
            " REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
        )
        return conn

    return connect


def insert(table: str, value: int) -> Any:
    """A write adding row ``value`` (a child row points to parent ``value``)."""
    sql = (
        "INSERT INTO parent VALUES (?)" if table == "parent" else "INSERT INTO child VALUES (?, ?)"
    )
    args = (value,) if table == "parent" else (value, value)

    def op(conn: sqlite3.Connection) -> tuple[int, list[Any]]:
        conn.execute(sql, args)
        return value, []

    return op


async def one_batch(committer: GroupCommitter, ops: list[Any]) -> list[asyncio.Future[Any]]:
    """Submit ``ops`` so that they share one batch: the writer is held until all are in."""
    running, gate = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> tuple[None, list[Any]]:
        running.set()
        gate.wait(5)
        return None, []

    held = committer.submit(hold)
    await asyncio.to_thread(running.wait, 5)  # the writer is inside the batch before
    futures = [committer.submit(op) for op in ops]
    gate.set()
    await held
    return futures


def test_a_batch_that_cannot_commit_fails_every_waiter_and_the_next_one_commits(
    tmp_path: Path,
) -> None:
    committer = GroupCommitter(connector(tmp_path / "db.sqlite"))
    committer.start()

    async def go() -> None:
        # child 7 names no parent: the deferred foreign key fails the COMMIT itself
        futures = await one_batch(committer, [insert("parent", 1), insert("child", 7)])
        results = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), timeout=5
        )
        assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
        # nothing of the failed batch is left, and the writer goes on
        assert await asyncio.wait_for(committer.submit(insert("parent", 1)), timeout=5) == 1
        assert await asyncio.wait_for(committer.submit(insert("parent", 2)), timeout=5) == 2

    try:
        asyncio.run(go())
    finally:
        committer.stop()
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    assert conn.execute("SELECT id FROM parent ORDER BY id").fetchall() == [(1,), (2,)]
    assert conn.execute("SELECT count(*) FROM child").fetchone() == (0,)


def test_a_rolled_back_batch_tells_the_store_to_drop_what_it_cached(tmp_path: Path) -> None:
    """The store caches mailbox ids found inside the transaction; SQLite may hand a
    rolled-back id to another row later, so every rollback clears that cache."""
    rollbacks: list[int] = []
    committer = GroupCommitter(
        connector(tmp_path / "db.sqlite"), on_rollback=lambda: rollbacks.append(1)
    )
    committer.start()

    async def go() -> None:
        futures = await one_batch(committer, [insert("parent", 1), insert("child", 7)])
        await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout=5)

    try:
        asyncio.run(go())
    finally:
        committer.stop()
    assert rollbacks and committer.failed_batches == 1


def test_a_failing_request_leaves_the_rest_of_its_batch_alone(tmp_path: Path) -> None:
    committer = GroupCommitter(connector(tmp_path / "db.sqlite"))
    committer.start()

    async def go() -> None:
        futures = await one_batch(
            committer, [insert("parent", 1), insert("parent", 1), insert("parent", 2)]
        )
        results = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), timeout=5
        )
        assert results[0] == 1 and results[2] == 2
        assert isinstance(results[1], sqlite3.IntegrityError)  # its savepoint only

    try:
        asyncio.run(go())
    finally:
        committer.stop()


def test_a_lost_transaction_fails_the_batch_with_its_cause(tmp_path: Path) -> None:
    """SQLite may roll the whole transaction back on an error (SQLITE_FULL): every
    request of the batch then gets that error, not a savepoint error."""
    committer = GroupCommitter(connector(tmp_path / "db.sqlite"))
    committer.start()

    def lose(conn: sqlite3.Connection) -> tuple[None, list[Any]]:
        conn.execute("ROLLBACK")  # what SQLite does itself on some errors
        raise sqlite3.OperationalError("database or disk is full")

    async def go() -> None:
        futures = await one_batch(committer, [insert("parent", 1), lose])
        results = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), timeout=5
        )
        assert [str(r) for r in results] == ["database or disk is full"] * 2, results
        assert await asyncio.wait_for(committer.submit(insert("parent", 3)), timeout=5) == 3

    try:
        asyncio.run(go())
    finally:
        committer.stop()


def test_resolve_settles_every_future_even_when_one_cannot_take_its_error() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        odd, plain, done = loop.create_future(), loop.create_future(), loop.create_future()
        done.cancel()
        _resolve([(done, 1, None), (odd, None, StopIteration()), (plain, 2, None)])
        assert plain.result() == 2
        with pytest.raises(RuntimeError):
            odd.result()

    asyncio.run(go())
