"""Sending identities and submissions (``records``/``record_put``) on both stores."""

from __future__ import annotations

from pathlib import Path

from tests.store.test_contract import Factory, factory, opened, run

__all__ = ["factory"]


def test_records_created_changed_removed_and_told_apart(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            assert await store.records("a@x.test", "identity") == (0, [])
            one = await store.record_put("a@x.test", "identity", "I1", '{"n": 1}')
            two = await store.record_put("a@x.test", "identity", "I2", '{"n": 2}')
            assert (one, two) == (1, 2)
            await store.record_put("b@x.test", "identity", "I9", "{}")  # another account
            await store.record_put("a@x.test", "submission", "S1", "{}")  # another kind
            counter, live = await store.records("a@x.test", "identity")
            assert counter == 2 and [(r.id, r.data) for r in live] == [
                ("I1", '{"n": 1}'),
                ("I2", '{"n": 2}'),
            ]
            three = await store.record_put("a@x.test", "identity", "I1", '{"n": 3}')
            four = await store.record_put("a@x.test", "identity", "I2", None)
            assert (three, four) == (3, 4)
            # removing what is not there changes nothing
            assert await store.record_put("a@x.test", "identity", "I7", None) == 4
            counter, changed = await store.records("a@x.test", "identity", since=2)
            assert counter == 4
            seen = {r.id: (r.created, r.removed) for r in changed}
            assert seen == {"I1": (1, False), "I2": (2, True)}
            _, live = await store.records("a@x.test", "identity")
            assert [r.id for r in live] == ["I1"]
            # keep: the oldest live ones beyond it become tombstones
            for n in range(3):
                await store.record_put("a@x.test", "submission", f"S{n + 2}", "{}", keep=2)
            _, live = await store.records("a@x.test", "submission")
            assert sorted(r.id for r in live) == ["S3", "S4"]
        finally:
            await store.close()
        store = await opened(factory, tmp_path)  # durable across a reopen
        try:
            counter, live = await store.records("a@x.test", "identity")
            assert counter == 4 and [(r.id, r.data) for r in live] == [("I1", '{"n": 3}')]
        finally:
            await store.close()

    run(go())


def test_record_get_reads_one_live_record_by_its_key(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            assert await store.record_get("a@x.test", "submission", "S1") is None
            await store.record_put("a@x.test", "submission", "S1", '{"n": 1}')
            await store.record_put("a@x.test", "submission", "S2", '{"n": 2}')
            await store.record_put("a@x.test", "submission", "S1", '{"n": 3}')
            got = await store.record_get("a@x.test", "submission", "S1")
            assert got is not None
            assert (got.id, got.data, got.created, got.changed) == ("S1", '{"n": 3}', 1, 3)
            assert not got.removed
            # the key is (account, kind, id): neither another account nor another kind
            assert await store.record_get("b@x.test", "submission", "S1") is None
            assert await store.record_get("a@x.test", "identity", "S1") is None
            await store.record_put("a@x.test", "submission", "S2", None)  # a tombstone now
            assert await store.record_get("a@x.test", "submission", "S2") is None
        finally:
            await store.close()

    run(go())


def test_expunged_digests_name_what_an_expunge_or_move_removed(
    factory: Factory, tmp_path: Path
) -> None:
    from correo.store.api import DeliveryTarget
    from tests.store.test_contract import put

    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            inbox = [DeliveryTarget("a@x.test", "INBOX")]
            for n in range(3):
                await put(store, f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), inbox)
            digests = await store.message_digests("a@x.test", "INBOX")  # records them
            before = (await store.mailbox_status("a@x.test", "INBOX")).highestmodseq
            await store.expunge("a@x.test", "INBOX", [1])
            await store.create_mailbox("a@x.test", "Other")
            await store.copy_messages("a@x.test", "INBOX", [2], "Other", move=True)
            gone = await store.expunged_digests("a@x.test", "INBOX", before)
            assert gone == {1: digests[1], 2: digests[2]}
            after = (await store.mailbox_status("a@x.test", "INBOX")).highestmodseq
            assert await store.expunged_digests("a@x.test", "INBOX", after) == {}
            await store.delete_mailbox("a@x.test", "Other")
            await store.create_mailbox("a@x.test", "Other")
            assert await store.expunged_digests("a@x.test", "Other", 0) == {}
        finally:
            await store.close()
        store = await opened(factory, tmp_path)  # kept across a restart
        try:
            assert set(await store.expunged_digests("a@x.test", "INBOX", before)) == {1, 2}
        finally:
            await store.close()

    run(go())


def test_records_go_with_the_account(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            await store.record_put("a@x.test", "identity", "I1", "{}")
            await store.record_put("b@x.test", "identity", "I1", "{}")
            kept = await store.set_aside_account("b@x.test")
            assert kept is not None and await store.records("b@x.test", "identity") == (0, [])
            assert (await store.records(kept, "identity"))[1][0].id == "I1"
            await store.delete_account("a@x.test")
            assert await store.records("a@x.test", "identity") == (0, [])
        finally:
            await store.close()

    run(go())
