"""The queue summary and commit observer behind the metrics, on both stores."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from correo.store.api import Envelope, QueuedRecipient, RecipientUpdate
from correo.store.sqlite import SqliteStore
from tests.store.test_contract import IMPLEMENTATIONS, Factory, opened, run


@pytest.fixture(params=IMPLEMENTATIONS)
def factory(request: pytest.FixtureRequest) -> Factory:
    """SQLite, and PostgreSQL on the private cluster, as the contract suite opens them."""
    if request.param == "sqlite":
        return lambda p: SqliteStore(p, spool_memory=1024, recover=True)
    from correo.store.postgres import PostgresStore

    url = request.getfixturevalue("pg_cluster").new_database(schema=True)
    return lambda p: PostgresStore(url, p, spool_memory=1024, recover=True)


def test_queue_summary_counts_waiting_mail_and_its_age(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        empty = await store.queue_summary()
        assert (empty.messages, empty.recipients, empty.oldest) == (0, 0, None)
        before = time.time()
        ids = []
        for n in range(3):
            spool = store.new_spool()
            spool.write(b"Subject: q\r\n\r\nbody\r\n")
            rcpts = [QueuedRecipient(f"r{n}a@far.test"), QueuedRecipient(f"r{n}b@far.test")]
            delivered = await store.deliver(spool, Envelope("s@x.test"), [], rcpts)
            assert delivered.queue_id is not None
            ids.append(delivered.queue_id)
        summary = await store.queue_summary()
        assert (summary.messages, summary.recipients) == (3, 6)
        assert summary.oldest is not None and before - 1 <= summary.oldest <= time.time()
        capped = await store.queue_summary(cap=2)
        assert (capped.messages, capped.recipients) == (2, 2)
        # one recipient delivered, the first message leaves the queue entirely
        await store.queue_update(ids[1], [RecipientUpdate("r1a@far.test", "delivered")])
        await store.queue_update(
            ids[0],
            [
                RecipientUpdate("r0a@far.test", "delivered"),
                RecipientUpdate("r0b@far.test", "failed"),
            ],
        )
        after = await store.queue_summary()
        assert (after.messages, after.recipients) == (2, 3)
        await store.close()

    run(go())


def test_commit_observer_sees_every_batch(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        seen: list[tuple[float, int]] = []
        store.observe_commits(lambda seconds, writes: seen.append((seconds, writes)))
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Box")
        assert len(seen) >= 2 and sum(w for _, w in seen) >= 2
        assert all(s >= 0 and w >= 1 for s, w in seen)

        def broken(seconds: float, writes: int) -> None:
            raise RuntimeError("a broken observer")

        store.observe_commits(broken)  # must cost no write
        await store.create_mailbox("a@x.test", "Other")
        store.observe_commits(None)
        count = len(seen)
        await store.create_mailbox("a@x.test", "Third")
        assert len(seen) == count
        assert {m.name for m in await store.list_mailboxes("a@x.test")} >= {"Box", "Other", "Third"}
        await store.close()

    run(go())
