"""METADATA entries of a deleted mailbox (RFC 5464) stop counting against the entry
limit at the account's next write, on SQLite and PostgreSQL; the server-level entries
(box 0) are never swept with them."""

from __future__ import annotations

from pathlib import Path

from tests.store.test_contract import Factory, factory, opened, run  # noqa: F401

A = "alice@x.test"


def test_a_deleted_mailboxs_entries_leave_the_limit(factory: Factory, tmp_path: Path) -> None:  # noqa: F811
    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account(A)
        await store.create_mailbox(A, "Old")
        await store.metadata_set(A, None, {"/private/s": b"server"}, max_entries=3)
        await store.metadata_set(A, "Old", {"/private/a": b"1", "/private/b": b"2"}, max_entries=3)
        await store.delete_mailbox(A, "Old")
        # 1 server entry + 2 new ones: at the limit only if Old's two are gone
        await store.metadata_set(
            A, "INBOX", {"/private/c": b"3", "/private/d": b"4"}, max_entries=3
        )
        assert await store.metadata_get(A, None, ["/private"]) == {"/private/s": b"server"}
        got = await store.metadata_get(A, "INBOX", ["/private"])
        assert got == {"/private/c": b"3", "/private/d": b"4"}
        await store.close()

    run(go())
