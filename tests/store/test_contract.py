"""The MailStore contract, run against every implementation: SQLite and PostgreSQL.

The PostgreSQL runs use a private cluster (tests/pg.py), a fresh database per test; they
are skipped only where no PostgreSQL binaries are installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from correo.store.api import (
    Delivered,
    DeliveryTarget,
    Envelope,
    MailStore,
    QueuedRecipient,
    StoreError,
)
from correo.store.sqlite import SqliteStore

Factory = Callable[[Path], MailStore]
IMPLEMENTATIONS = ("sqlite", "postgresql")


@pytest.fixture(params=IMPLEMENTATIONS)
def factory(request: pytest.FixtureRequest) -> Factory:
    """Opens the implementation on a folder; every call of one test shares its database."""
    if request.param == "sqlite":
        return lambda p: SqliteStore(p, spool_memory=1024, recover=True)
    from correo.store.postgres import PostgresStore

    url = request.getfixturevalue("pg_cluster").new_database(schema=True)
    return lambda p: PostgresStore(url, p, spool_memory=1024, recover=True)


async def bodies_left(store: MailStore, root: Path) -> int:
    """How many message bodies the store still keeps outside its metadata rows.

    SQLite: body files under blobs/ (small bodies live in mail.db rows); PostgreSQL:
    body rows and chunk rows.
    """
    if isinstance(store, SqliteStore):
        return sum(1 for p in (root / "blobs").rglob("*") if p.is_file())
    from correo.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    row = await store._fetchone(
        "SELECT (SELECT count(*) FROM blobs) + (SELECT count(*) FROM blob_chunks)"
    )
    assert row is not None
    return int(row[0])


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def opened(factory: Factory, path: Path) -> MailStore:
    store = factory(path)
    await store.open()
    return store


async def put(
    store: MailStore,
    data: bytes,
    targets: list[DeliveryTarget],
    queued: list[QueuedRecipient] | None = None,
) -> Delivered:
    spool = store.new_spool()
    for i in range(0, len(data), 700):
        spool.write(data[i : i + 700])
    return await store.deliver(spool, Envelope("s@x.test"), targets, queued or [])


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


@pytest.mark.parametrize("size", [0, 10, 1024, 1025, 300_000])
def test_deliver_and_read_back_small_and_large(factory: Factory, tmp_path: Path, size: int) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        delivered = await put(store, data, [DeliveryTarget("a@x.test"), DeliveryTarget("b@x.test")])
        assert len(delivered.uids) == 2
        for account in ("a@x.test", "b@x.test"):
            (info,) = await store.list_messages(account)
            assert info.size == size
            assert await read_all(store.read_message(account, "INBOX", info.uid)) == data
        await store.close()

    run(go())


def test_uids_strictly_increase_and_are_never_reused(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        target = [DeliveryTarget("a@x.test")]
        await asyncio.gather(*[put(store, b"m%d" % i, target) for i in range(50)])
        uids = [m.uid for m in await store.list_messages("a@x.test")]
        assert uids == list(range(1, 51))
        state = await store.mailbox_state("a@x.test")
        assert await store.expunge("a@x.test", "INBOX", uids[-5:]) == 5
        await put(store, b"later", target)
        got = await put(store, b"late", [*target, DeliveryTarget("b@x.test", "New")])
        b_state = await store.mailbox_state("b@x.test", "New")  # made by the delivery
        assert got.validities == (state.uidvalidity, b_state.uidvalidity)  # type: ignore[attr-defined]
        await store.close()
        store = await opened(factory, tmp_path)
        after = await store.mailbox_state("a@x.test")
        assert after.uidvalidity == state.uidvalidity
        assert [m.uid for m in await store.list_messages("a@x.test")][-1] == 52
        assert after.highestmodseq > state.highestmodseq
        await store.close()

    run(go())


def test_expunge_frees_shared_bodies_only_when_unreferenced(
    factory: Factory, tmp_path: Path
) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        big = b"x" * 300_000  # past the spool's memory and one stored chunk
        await put(store, big, [DeliveryTarget("a@x.test"), DeliveryTarget("b@x.test")])
        assert await bodies_left(store, tmp_path) > 0
        await store.expunge("a@x.test", "INBOX", [1])
        assert await read_all(store.read_message("b@x.test", "INBOX", 1)) == big
        with pytest.raises(StoreError):
            await read_all(store.read_message("a@x.test", "INBOX", 1))
        await store.expunge("b@x.test", "INBOX", [1])
        assert await bodies_left(store, tmp_path) == 0
        await store.close()

    run(go())


def test_queue_entries_and_change_feed(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        state = await store.mailbox_state("a@x.test")
        waiter = asyncio.create_task(
            store.wait_for_change("a@x.test", "INBOX", state.highestmodseq, 5)
        )
        await asyncio.sleep(0.05)
        await put(
            store,
            b"Return-Path: <s@x.test>\r\nbody",
            [DeliveryTarget("a@x.test")],
            [QueuedRecipient("r@far.test", "FAILURE", None)],
        )
        assert await waiter is True
        assert await store.wait_for_change("a@x.test", "INBOX", 10**9, 0.05) is False
        (entry,) = await store.queue_list()
        assert entry.sender == "s@x.test" and entry.recipients[0][0] == "r@far.test"
        await store.close()

    run(go())


def test_crash_leftovers_are_swept(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        spool = store.new_spool()
        spool.write(b"y" * 5000)  # spilled to tmp/, never committed
        if isinstance(store, SqliteStore):  # a body file renamed in, its commit never made
            (tmp_path / "blobs" / "ab").mkdir(exist_ok=True)
            (tmp_path / "blobs" / "ab" / "orphan").write_bytes(b"never committed")
        else:  # chunks staged by a delivery that never committed, an hour ago
            await store._stage(spool)  # type: ignore[attr-defined]
            await store._write(  # type: ignore[attr-defined]
                lambda conn: _age_staging(conn)
            )
        assert await bodies_left(store, tmp_path) > 0
        await store.close()
        store = await opened(factory, tmp_path)
        assert list((tmp_path / "tmp").iterdir()) == []
        assert await bodies_left(store, tmp_path) == 0
        await store.close()

    run(go())


async def _age_staging(conn: object) -> tuple[None, list[object]]:
    await conn.execute("UPDATE blob_staging SET created = created - 7200")  # type: ignore[attr-defined]
    return None, []


def test_second_owner_is_refused(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        with pytest.raises(StoreError):
            await opened(factory, tmp_path)
        await store.close()

    run(go())


def test_queue_life_cycle(factory: Factory, tmp_path: Path) -> None:
    from correo.store.api import RecipientUpdate

    async def go() -> None:
        store = await opened(factory, tmp_path)
        spool = store.new_spool()
        spool.write(b"Return-Path: <s@x.test>\r\n" + b"Subject: q\r\n\r\n" + b"b" * 3000)
        delivered = await store.deliver(
            spool,
            Envelope("s@x.test", envid="E1", ret="HDRS"),
            [],
            [
                QueuedRecipient("r1@far.test", "FAILURE", "rfc822;r1@far.test"),
                QueuedRecipient("r2@far.test"),
            ],
            queue_skip=len(b"Return-Path: <s@x.test>\r\n"),
        )
        qid = delivered.queue_id
        assert qid is not None
        (due,) = await store.queue_due(now=10**10)
        assert due.id == qid and due.envid == "E1" and due.ret == "HDRS" and due.size == 3014
        assert [r.address for r in due.recipients] == ["r1@far.test", "r2@far.test"]
        assert due.recipients[0].orcpt == "rfc822;r1@far.test"
        body = await read_all(store.queue_read(qid))
        assert body.startswith(b"Subject: q\r\n") and len(body) == 3014
        later = 10**10 + 600
        done = await store.queue_update(
            qid,
            [
                RecipientUpdate("r1@far.test", "delivered"),
                RecipientUpdate("r2@far.test", "queued", later, "451 busy"),
            ],
        )
        assert done is False
        assert await store.queue_due(now=10**10) == []
        assert await store.queue_next_due() == later
        assert await store.queue_retry(qid, now=5.0) == 1
        (again,) = await store.queue_due(now=10)
        assert again.recipients[1].attempts == 1 and again.recipients[1].last_error == "451 busy"
        assert (
            await store.queue_update(qid, [RecipientUpdate("r2@far.test", "failed", 0, "550 no")])
            is True
        )
        assert await store.queue_get(qid) is None and await store.queue_next_due() is None
        assert await bodies_left(store, tmp_path) == 0
        await store.close()

    run(go())


def test_mailboxes_create_rename_delete(factory: Factory, tmp_path: Path) -> None:
    from correo.store.api import MailboxError

    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Work/Projects/2026", None)
        await store.create_mailbox("a@x.test", "Sent", "\\Sent")
        names = {m.name: m for m in await store.list_mailboxes("a@x.test")}
        assert set(names) == {"INBOX", "Work", "Work/Projects", "Work/Projects/2026", "Sent"}
        assert names["Sent"].special_use == "\\Sent"
        with pytest.raises(MailboxError) as info:
            await store.create_mailbox("a@x.test", "Sent")
        assert info.value.code == "ALREADYEXISTS"
        with pytest.raises(MailboxError) as info:
            await store.delete_mailbox("a@x.test", "Work")
        assert info.value.code == "HASCHILDREN"
        await store.rename_mailbox("a@x.test", "Work", "Archive/Old")
        names2 = {m.name for m in await store.list_mailboxes("a@x.test")}
        assert {"Archive/Old", "Archive/Old/Projects", "Archive/Old/Projects/2026"} <= names2
        assert "Work" not in names2
        await put(store, b"in inbox", [DeliveryTarget("a@x.test")])
        await store.rename_mailbox("a@x.test", "INBOX", "Old INBOX")
        assert await store.list_messages("a@x.test", "INBOX") == []
        assert len(await store.list_messages("a@x.test", "Old INBOX")) == 1
        await store.delete_mailbox("a@x.test", "Old INBOX")
        with pytest.raises(MailboxError):
            await store.delete_mailbox("a@x.test", "INBOX")
        await store.close()

    run(go())


def test_flags_modseq_copy_move_and_changes(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Archive")
        for i in range(3):
            await put(
                store, b"m%d" % i, [DeliveryTarget("a@x.test", flags=("\\seen",) if i == 0 else ())]
            )
        msgs = await store.list_messages("a@x.test")
        assert msgs[0].flags == ("\\Seen",)
        base = (await store.mailbox_status("a@x.test", "INBOX")).highestmodseq
        changed, failed = await store.store_flags(
            "a@x.test", "INBOX", [1, 2, 3], "add", ["\\Flagged", "$Work"]
        )
        assert [m.uid for m in changed] == [1, 2, 3] and failed == []
        assert all(m.modseq > base for m in changed)
        changed, failed = await store.store_flags(
            "a@x.test", "INBOX", [1, 2], "remove", ["$work"], unchanged_since=base
        )
        assert changed == [] and failed == [1, 2]  # modified since `base`
        status = await store.mailbox_status("a@x.test", "INBOX")
        assert (status.messages, status.unseen) == (3, 2)
        pairs = await store.copy_messages("a@x.test", "INBOX", [1, 3], "Archive")
        assert pairs == [(1, 1), (3, 2)]
        moved = await store.copy_messages("a@x.test", "INBOX", [2], "Archive", move=True)
        assert moved == [(2, 3)]
        archive = await store.list_messages("a@x.test", "Archive")
        assert archive[0].flags == ("$Work", "\\Flagged", "\\Seen")
        assert await read_all(store.read_message("a@x.test", "Archive", 3)) == b"m1"
        changes = await store.changes_since("a@x.test", "INBOX", status.highestmodseq)
        assert changes.expunged == (2,) and changes.messages == ()
        now = await store.mailbox_state("a@x.test", "INBOX")
        assert changes.highestmodseq == now.highestmodseq > status.highestmodseq
        # nothing since the latest: no rows, yet HIGHESTMODSEQ; an unknown mailbox is NO
        quiet = await store.changes_since("a@x.test", "INBOX", now.highestmodseq)
        assert (quiet.highestmodseq, quiet.messages, quiet.expunged) == (now.highestmodseq, (), ())
        await store.create_mailbox("a@x.test", "Empty")
        empty = await store.changes_since("a@x.test", "Empty", 0)
        assert (empty.messages, empty.expunged) == ((), ())
        from correo.store.api import MailboxError

        with pytest.raises(MailboxError) as info:
            await store.changes_since("a@x.test", "Nowhere", 0)
        assert info.value.code == "NONEXISTENT"
        with pytest.raises(MailboxError):
            await store.changes_since("b@x.test", "INBOX", 0)
        first = await store.take_recent("a@x.test", "Archive")
        assert first == 1 and await store.take_recent("a@x.test", "Archive") == 4
        await store.close()

    run(go())


# -- import bookkeeping: message digests -----------------------------------------------


def test_message_digests_computed_recorded_and_shared_by_copies(
    factory: Factory, tmp_path: Path
) -> None:
    import hashlib

    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Archive")
        small, large = b"small message", b"L" * 5000  # inline body and file body
        for data in (small, large):
            await put(store, data, [DeliveryTarget("a@x.test")])
        want = {1: hashlib.sha256(small).hexdigest(), 2: hashlib.sha256(large).hexdigest()}
        assert await store.message_digests("a@x.test", "INBOX") == want  # recorded at delivery
        assert await store.message_digests("a@x.test", "INBOX") == want
        await put(store, b"third", [DeliveryTarget("a@x.test", "Archive")])
        third = hashlib.sha256(b"third").hexdigest()
        await store.record_digests("a@x.test", "Archive", {1: third, 99: "0" * 64})
        assert await store.message_digests("a@x.test", "Archive") == {1: third}
        await store.copy_messages("a@x.test", "INBOX", [2], "Archive")
        got = await store.message_digests("a@x.test", "Archive")
        assert got == {1: third, 2: want[2]}
        await store.expunge("a@x.test", "INBOX", [1])
        assert await store.message_digests("a@x.test", "INBOX") == {2: want[2]}
        assert await store.message_digests("a@x.test", "Nope") == {}
        await store.close()

    run(go())


# -- outbound queue: the runner's in-flight exclusion ---------------------------------


def test_queue_due_excludes_messages_in_flight(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        ids = []
        for i in range(5):
            spool = store.new_spool()
            spool.write(b"Subject: %d\r\n\r\nx\r\n" % i)
            d = await store.deliver(spool, Envelope("s@x.test"), [], [QueuedRecipient("r@y.test")])
            assert d.queue_id is not None
            ids.append(d.queue_id)
        first = [m.id for m in await store.queue_due(now=10**10, limit=2)]
        assert first == ids[:2]
        rest = [m.id for m in await store.queue_due(now=10**10, limit=10, exclude=first)]
        assert rest == ids[2:]
        assert await store.queue_due(now=10**10, limit=10, exclude=ids) == []
        await store.close()

    run(go())


def test_change_counter_moves_with_every_commit_to_the_mailbox(
    factory: Factory, tmp_path: Path
) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        await put(store, b"Subject: a\r\n\r\nx\r\n", [DeliveryTarget("a@x.test")])
        first = store.change_counter("a@x.test", "INBOX")
        assert store.change_counter("a@x.test", "INBOX") == first  # reads change nothing
        await store.list_messages("a@x.test")
        assert store.change_counter("a@x.test", "INBOX") == first
        await store.store_flags("a@x.test", "INBOX", [1], "add", ["\\Seen"])
        second = store.change_counter("a@x.test", "INBOX")
        assert second > first
        await put(store, b"Subject: b\r\n\r\ny\r\n", [DeliveryTarget("b@x.test")])
        assert store.change_counter("a@x.test", "INBOX") == second  # another mailbox
        await store.close()

    run(go())


@pytest.mark.parametrize(
    ("needles", "expected"),
    [
        (["quartz"], {1}),
        (["xylophone", "quartz"], {1}),
        (["nowhere"], set()),
        (["ab"], {1, 2, 3}),  # shorter than a trigram: every message may match
        ([], {1, 2, 3}),
    ],
)
def test_text_index_candidates_superset_and_unindexed(
    factory: Factory, tmp_path: Path, needles: list[str], expected: set[int]
) -> None:
    """Indexed messages are filtered by trigrams; unindexed ones are always candidates."""

    async def go() -> None:
        store = await opened(factory, tmp_path)
        for body in (b"one", b"two", b"three"):
            await put(store, b"Subject: s\r\n\r\n" + body + b"\r\n", [DeliveryTarget("a@x.test")])
        maybe, unindexed = await store.text_candidates("a@x.test", "INBOX", needles)
        assert maybe == {1, 2, 3} and unindexed == {1, 2, 3}
        await store.index_text("a@x.test", "INBOX", {1: "a xylophonequartz b", 2: "plain"})
        await store.index_text("a@x.test", "INBOX", {1: "replaced? no: kept"})  # no-op
        maybe, unindexed = await store.text_candidates("a@x.test", "INBOX", needles)
        assert unindexed == {3}
        # At most what the trigrams allow, at least the true matches (a scan is exact).
        exact = {
            uid
            for uid, text in ((1, "a xylophonequartz b"), (2, "plain"))
            if all(n in text for n in needles)
        }
        assert exact | {3} <= maybe <= expected | {3}
        await store.expunge("a@x.test", "INBOX", [1])
        maybe, _ = await store.text_candidates("a@x.test", "INBOX", needles)
        assert 1 not in maybe
        await store.close()

    run(go())


# -- subscriptions and INTERNALDATE zones (schema 3) ------------------------------------


def test_subscriptions_are_names_that_outlive_their_mailbox(
    factory: Factory, tmp_path: Path
) -> None:
    """RFC 9051 §6.3.7: deleting a mailbox keeps its subscription; CREATE makes none."""

    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Mine", subscribe=False)
        await store.create_mailbox("a@x.test", "Sent", "\\Sent")  # server-made: subscribed
        assert await store.list_subscriptions("a@x.test") == ["INBOX", "Sent"]
        boxes = {b.name: b.subscribed for b in await store.list_mailboxes("a@x.test")}
        assert boxes == {"INBOX": True, "Mine": False, "Sent": True}
        await store.set_subscribed("a@x.test", "Mine", True)
        await store.set_subscribed("a@x.test", "Nowhere/yet", True)  # need not exist
        await store.delete_mailbox("a@x.test", "Mine")
        assert await store.list_subscriptions("a@x.test") == [
            "INBOX",
            "Mine",
            "Nowhere/yet",
            "Sent",
        ]
        await store.set_subscribed("a@x.test", "Mine", False)
        await store.set_subscribed("a@x.test", "Mine", False)  # idempotent
        assert "Mine" not in await store.list_subscriptions("a@x.test")
        # a client's RENAME carries the subscriptions of the mailbox and its children
        await store.create_mailbox("a@x.test", "Work/Deep")
        await store.rename_mailbox("a@x.test", "Work", "Job")
        subs = await store.list_subscriptions("a@x.test")
        assert "Job/Deep" in subs and "Work/Deep" not in subs
        await store.delete_account("a@x.test")
        assert await store.list_subscriptions("a@x.test") == []
        await store.close()

    run(go())


def test_urlauth_keys_per_mailbox_made_reset_and_removed(factory: Factory, tmp_path: Path) -> None:
    """RFC 4467 §2.2: one random key per mailbox, made once, forgotten by RESETKEY, never
    inherited by a mailbox made again under the same name or by a new owner."""
    from correo.store.api import MailboxError

    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Box")
        assert await store.urlauth_key("a@x.test", "Box") == b""
        key = await store.urlauth_key("a@x.test", "Box", create=True)
        assert len(key) == 32
        assert await store.urlauth_key("a@x.test", "Box", create=True) == key
        assert await store.urlauth_key("a@x.test", "Box") == key
        inbox = await store.urlauth_key("a@x.test", "INBOX", create=True)
        assert inbox not in (b"", key)
        with pytest.raises(MailboxError) as err:
            await store.urlauth_key("a@x.test", "Nowhere", create=True)
        assert err.value.code == "NONEXISTENT"
        with pytest.raises(MailboxError):
            await store.urlauth_reset("a@x.test", "Nowhere")
        await store.urlauth_reset("a@x.test", "Box")  # one mailbox
        assert await store.urlauth_key("a@x.test", "Box") == b""
        assert await store.urlauth_key("a@x.test", "INBOX") == inbox
        again = await store.urlauth_key("a@x.test", "Box", create=True)
        assert again not in (b"", key)
        await store.urlauth_reset("a@x.test")  # every key of the account
        assert await store.urlauth_key("a@x.test", "INBOX") == b""
        assert await store.urlauth_key("a@x.test", "Box") == b""
        await store.urlauth_key("a@x.test", "Box", create=True)
        await store.delete_mailbox("a@x.test", "Box")
        await store.create_mailbox("a@x.test", "Box")
        assert await store.urlauth_key("a@x.test", "Box") == b""  # not the old one's
        await store.urlauth_key("a@x.test", "Box", create=True)
        await store.delete_account("a@x.test")
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Box")
        assert await store.urlauth_key("a@x.test", "Box") == b""
        assert await store.urlauth_key("a@x.test", "INBOX") == b""
        await store.close()

    run(go())


def test_account_feed_counts_every_change_of_the_account(factory: Factory, tmp_path: Path) -> None:
    """NOTIFY (RFC 5465) watches a whole account: messages, mailbox names and
    subscriptions each move its counter and wake its waiters; other accounts do not."""

    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        await store.create_account("b@x.test")
        steps = [
            store.create_mailbox("a@x.test", "Box"),
            put(store, b"Subject: x\r\n\r\nx\r\n", [DeliveryTarget("a@x.test", "Box")]),
            store.set_subscribed("a@x.test", "Elsewhere", True),
            store.set_subscribed("a@x.test", "Elsewhere", False),
            store.rename_mailbox("a@x.test", "Box", "Moved"),
            store.delete_mailbox("a@x.test", "Moved"),
        ]
        for step in steps:
            before = store.account_counter("a@x.test")
            waiter = asyncio.ensure_future(store.wait_for_account("a@x.test", before, 10.0))
            await asyncio.sleep(0)
            await step
            assert await asyncio.wait_for(waiter, 5.0) is True
            assert store.account_counter("a@x.test") > before
        quiet = store.account_counter("a@x.test")
        await store.create_mailbox("b@x.test", "Theirs")
        await put(store, b"Subject: y\r\n\r\ny\r\n", [DeliveryTarget("b@x.test", "Theirs")])
        assert store.account_counter("a@x.test") == quiet
        assert await store.wait_for_account("a@x.test", quiet, 0.05) is False
        assert await store.wait_for_account("a@x.test", quiet - 1, 10.0) is True  # at once
        await store.close()

    run(go())


def test_internal_date_keeps_its_zone_through_copy_and_flags(
    factory: Factory, tmp_path: Path
) -> None:
    """RFC 9051 §2.3.3: the zone APPEND gave is kept; deliveries get the server's zone."""
    from correo.store.api import local_zone

    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account("a@x.test")
        await store.create_mailbox("a@x.test", "Other")
        spool = store.new_spool()
        spool.write(b"Subject: z\r\n\r\nbody\r\n")
        await store.deliver(
            spool,
            Envelope(""),
            [DeliveryTarget("a@x.test")],
            internal_date=837596665.0,
            internal_zone=-420,
        )
        await put(store, b"Subject: smtp\r\n\r\nx\r\n", [DeliveryTarget("a@x.test")])
        first, second = await store.list_messages("a@x.test")
        assert (first.internal_date, first.zone) == (837596665.0, -420)
        assert second.zone == local_zone(second.internal_date)
        changed, _ = await store.store_flags("a@x.test", "INBOX", [1], "add", ["\\Seen"])
        assert changed[0].zone == -420
        await store.copy_messages("a@x.test", "INBOX", [1], "Other")
        (copied,) = await store.list_messages("a@x.test", "Other")
        assert copied.zone == -420
        feed = await store.changes_since("a@x.test", "INBOX", 0)
        assert {m.uid: m.zone for m in feed.messages}[1] == -420
        await store.close()

    run(go())


def test_schema_2_store_is_migrated_on_open(tmp_path: Path) -> None:
    """Subscription marks become rows; old messages get zone 0 (+0000)."""
    import sqlite3

    async def make() -> None:
        store = SqliteStore(tmp_path)
        await store.open()
        await store.create_mailbox("a@x.test", "Kept")
        await store.create_mailbox("a@x.test", "Dropped")
        await put(store, b"Subject: old\r\n\r\nx\r\n", [DeliveryTarget("a@x.test")])
        await store.close()

    run(make())
    conn = sqlite3.connect(tmp_path / "mail.db")
    conn.execute("DROP TABLE subscriptions")
    conn.execute("ALTER TABLE messages DROP COLUMN zone")
    conn.execute("UPDATE mailboxes SET subscribed = (name != 'Dropped')")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()

    async def check() -> None:
        store = SqliteStore(tmp_path)
        await store.open()
        assert await store.list_subscriptions("a@x.test") == ["INBOX", "Kept"]
        (info,) = await store.list_messages("a@x.test")
        assert info.zone == 0
        await store.close()

    run(check())
    conn = sqlite3.connect(tmp_path / "mail.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()


# -- two store instances on one database; large bodies in bounded pieces -----------------


def test_concurrent_appends_from_two_instances_get_unique_increasing_uids(
    factory: Factory, tmp_path: Path
) -> None:
    """Two stores on one database (two nodes; for SQLite, the server and a CLI process)
    appending into one mailbox at once: no UID is reused, UIDs and MODSEQs only grow."""

    async def go() -> None:
        first = await opened(factory, tmp_path / "node1")
        if isinstance(first, SqliteStore):  # one SQLite file: the second opens it too
            second: MailStore = SqliteStore(tmp_path / "node1")
            await second.open()
        else:
            second = await opened(factory, tmp_path / "node2")
        await first.create_account("a@x.test")
        target = [DeliveryTarget("a@x.test")]
        delivered = await asyncio.gather(
            *[put(store, b"m%d" % i, target) for i in range(40) for store in (first, second)]
        )
        uids = sorted(d.uids[0][1] for d in delivered)  # type: ignore[attr-defined]
        assert uids == list(range(1, 81))
        for store in (first, second):
            listed = await store.list_messages("a@x.test")
            assert [m.uid for m in listed] == uids
            # MODSEQ grows with the UID: a later UID was committed later
            modseqs = [m.modseq for m in listed]
            assert modseqs == sorted(modseqs) and len(set(modseqs)) == len(modseqs)
        state = await second.mailbox_state("a@x.test")
        assert state.uidnext == 81 and state.exists == 80
        await second.close()
        await first.close()

    run(go())


def test_a_multi_mib_message_streams_in_bounded_pieces(factory: Factory, tmp_path: Path) -> None:
    """Written and read back in pieces: memory stays far below the message's size."""
    import hashlib
    import tracemalloc

    size = 6 * 1024 * 1024 + 12345
    piece = bytes(range(256)) * 256  # 64 KiB

    async def go() -> None:
        store = await opened(factory, tmp_path)
        tracemalloc.start()
        try:
            spool = store.new_spool()
            digest = hashlib.sha256()
            left = size
            while left:
                part = piece[: min(left, len(piece))]
                spool.write(part)
                digest.update(part)
                left -= len(part)
            await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget("a@x.test")])
            got = hashlib.sha256()
            pieces = 0
            async for chunk in store.read_message("a@x.test", "INBOX", 1, chunk_size=65536):
                assert 0 < len(chunk) <= 65536
                got.update(chunk)
                pieces += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert got.hexdigest() == digest.hexdigest()
        assert pieces >= size // 65536
        assert peak < 3 * 1024 * 1024, peak  # never the whole 6 MiB at once
        # a range across a stored chunk boundary (256 KiB) reads exactly that range
        start, end = 256 * 1024 - 10, 256 * 1024 + 10
        ranged = await read_all(store.read_message("a@x.test", "INBOX", 1, 7, start, end))
        whole = (piece * (size // len(piece) + 1))[:size]
        assert ranged == whole[start:end]
        (info,) = await store.list_messages("a@x.test")
        assert info.size == size
        await store.close()

    run(go())


# -- account removal (correo user del): everything at once, or set aside -----------------


async def _filled(store: MailStore, account: str) -> None:
    """Mail (bodies shared with b@x.test), a folder, a script, vacation and junk data."""
    for size in (10, 300_000):  # an inline body, and one past the spool and a chunk
        await put(store, b"Subject: s\r\n\r\n" + b"x" * size, [DeliveryTarget(account)])
    await put(
        store, b"Subject: shared\r\n\r\nx", [DeliveryTarget(account), DeliveryTarget("b@x.test")]
    )
    await store.create_mailbox(account, "Folder")
    await store.sieve_put(account, "main", 'redirect "old@elsewhere.test";')
    await store.sieve_activate(account, "main")
    assert not await store.vacation_seen(account, "h", "s@x.test", 7)
    await store.junk_learn(account, ["tok1", "tok2"], spam=True)


async def _nothing_left(store: MailStore, account: str) -> None:
    assert await store.list_mailboxes(account) == []
    assert await store.list_subscriptions(account) == []
    assert await store.sieve_list(account) == []
    assert await store.sieve_active(account) is None
    assert not await store.vacation_seen(account, "h", "s@x.test", 7)  # forgotten
    assert await store.junk_counts(account, ["tok1"]) == (0, 0, {})


def test_delete_account_takes_everything_but_shared_bodies(
    factory: Factory, tmp_path: Path
) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        await _filled(store, "a@x.test")
        await store.delete_account("a@x.test")
        await _nothing_left(store, "a@x.test")
        (kept,) = await store.list_messages("b@x.test")  # b's copy of the shared body
        assert await read_all(store.read_message("b@x.test", "INBOX", kept.uid)) == (
            b"Subject: shared\r\n\r\nx"
        )
        assert await store.kept_accounts() == []
        await store.delete_account("b@x.test")
        assert await bodies_left(store, tmp_path) == 0
        await store.close()

    run(go())


def test_set_aside_moves_everything_under_a_name_no_address_can_have(
    factory: Factory, tmp_path: Path
) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        await _filled(store, "a@x.test")
        tombstone = await store.set_aside_account("a@x.test")
        assert tombstone is not None and tombstone.startswith("a@x.test (deleted ")
        await _nothing_left(store, "a@x.test")
        await store.create_account("a@x.test")  # the address starts again, empty
        assert await store.list_messages("a@x.test") == []
        assert {m.name for m in await store.list_mailboxes(tombstone)} >= {"INBOX", "Folder"}
        assert len(await store.list_messages(tombstone)) == 3
        assert await store.sieve_active(tombstone) == ("main", 'redirect "old@elsewhere.test";')
        assert await store.vacation_seen(tombstone, "h", "s@x.test", 7)
        assert (await store.junk_counts(tombstone, ["tok1"]))[0] == 1
        assert await store.kept_accounts() == [(tombstone, 3)]
        assert await store.set_aside_account("nobody@x.test") is None
        await store.close()

    run(go())


def test_tls_certificates_are_kept_replaced_and_listed(factory: Factory, tmp_path: Path) -> None:
    """ACME certificates live in the store: every node (and the CLI) sees the same one."""
    from correo.store.api import TlsCertificate

    async def go() -> None:
        store = await opened(factory, tmp_path)
        assert await store.tls_cert_get("mail.x.test") is None
        assert await store.tls_cert_list() == []
        first = TlsCertificate(
            "mail.x.test",
            ("mail.x.test", "mta-sts.x.test"),
            b"",
            b"",
            1000.0,
            renew_at=1060.0,
            failures=1,
            last_error="mail.x.test: connection refused",
        )
        await store.tls_cert_put(first)
        account = TlsCertificate("account https://ca.test/dir", (), b"", b"KEY\x00\xff", 999.5)
        await store.tls_cert_put(account)
        await store.close()
        store = await opened(factory, tmp_path)  # durable across a restart
        assert await store.tls_cert_get("mail.x.test") == first
        issued = TlsCertificate(
            "mail.x.test", first.names, b"-----CHAIN-----\n", b"-----KEY-----\n", 2000.0, 3000.0
        )
        await store.tls_cert_put(issued)
        assert await store.tls_cert_get("mail.x.test") == issued
        assert await store.tls_cert_list() == [account, issued]
        await store.close()

    run(go())
