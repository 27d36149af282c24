"""METADATA entries in the store (SQLite and PostgreSQL, RFC 5464): server and mailbox
levels, subtrees, all-or-nothing sets under the entry limit, RENAME and DELETE."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from correo.store.api import MailboxError
from tests.store.test_contract import Factory, factory, opened, run  # noqa: F401

A = "alice@x.test"
B = "bob@x.test"


def test_metadata_levels_subtrees_rename_delete(factory: Factory, tmp_path: Path) -> None:  # noqa: F811
    async def go() -> None:
        store = await opened(factory, tmp_path)
        for account in (A, B):
            await store.create_account(account)
        await store.create_mailbox(A, "Work")
        await store.metadata_set(A, None, {"/private/comment": b"me", "/shared/x/y": b"\x00\xff"})
        await store.metadata_set(A, "Work", {"/private/color": b"red", "/private/color/dark": b"1"})
        await store.metadata_set(A, "Work", {"/private/colorful": b"no"})
        assert await store.metadata_get(A, None, ["/private/comment"]) == {
            "/private/comment": b"me"
        }
        assert await store.metadata_get(A, None, ["/shared/x"]) == {"/shared/x/y": b"\x00\xff"}
        # "/private/color" covers itself and "/private/color/…", never "/private/colorful"
        assert await store.metadata_get(A, "Work", ["/private/color"]) == {
            "/private/color": b"red",
            "/private/color/dark": b"1",
        }
        assert await store.metadata_get(A, "INBOX", ["/private"]) == {}  # levels apart
        assert await store.metadata_get(B, None, ["/private", "/shared"]) == {}  # users apart
        with pytest.raises(MailboxError) as nonexistent:
            await store.metadata_get(A, "Nope", ["/private/color"])
        assert nonexistent.value.code == "NONEXISTENT"
        with pytest.raises(MailboxError):
            await store.metadata_set(A, "Nope", {"/private/color": b"x"})
        await store.metadata_set(A, "Work", {"/private/color": None, "/private/none": None})
        assert await store.metadata_get(A, "Work", ["/private/color"]) == {
            "/private/color/dark": b"1"
        }
        await store.rename_mailbox(A, "Work", "Job")  # entries follow the mailbox
        assert await store.metadata_get(A, "Job", ["/private"]) == {
            "/private/color/dark": b"1",
            "/private/colorful": b"no",
        }
        await store.close()
        store = await opened(factory, tmp_path)  # kept across a restart
        await store.delete_mailbox(A, "Job")
        await store.create_mailbox(A, "Job")  # a new mailbox of the old name starts empty
        assert await store.metadata_get(A, "Job", ["/private"]) == {}
        await store.metadata_set(B, None, {"/private/b": b"bob's"})
        await store.delete_account(A)  # an account made again under the name starts empty
        await store.create_account(A)
        assert await store.metadata_get(A, None, ["/private", "/shared"]) == {}
        assert await store.metadata_get(B, None, ["/private"]) == {"/private/b": b"bob's"}
        await store.close()

    run(go())


def test_metadata_limit_all_or_nothing(factory: Factory, tmp_path: Path) -> None:  # noqa: F811
    async def go() -> None:
        store = await opened(factory, tmp_path)
        await store.create_account(A)
        await store.metadata_set(A, None, {f"/private/e{i}": b"v" for i in range(3)}, max_entries=4)
        with pytest.raises(MailboxError) as many:
            await store.metadata_set(
                A, "INBOX", {"/private/a": b"1", "/private/b": b"2"}, max_entries=4
            )
        assert many.value.code == "METADATA TOOMANY"
        assert await store.metadata_get(A, "INBOX", ["/private"]) == {}  # nothing kept
        # replacing and removing within the limit is fine
        await store.metadata_set(
            A,
            None,
            {"/private/e0": b"new", "/private/e1": None, "/private/e9": b"9"},
            max_entries=3,
        )
        got = await store.metadata_get(A, None, ["/private"])
        assert got == {"/private/e0": b"new", "/private/e2": b"v", "/private/e9": b"9"}
        # racing sets at the limit: the count never passes it
        await store.create_mailbox(A, "Race")
        results = await asyncio.gather(
            *(
                store.metadata_set(A, "Race", {f"/private/r{i}": b"x"}, max_entries=5)
                for i in range(6)
            ),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 2
        assert all(r is None or isinstance(r, MailboxError) for r in results)
        await store.close()

    run(go())
