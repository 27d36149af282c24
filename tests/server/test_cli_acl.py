"""``correo acl set|delete|list``: the installed entry point sharing mailboxes, with
the entries IMAP reads (checked in the store), and clear errors for bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from correo.store.factory import store_for_data
from tests.conftest import make_data_dir
from tests.server.test_cli_daily import run

ALICE = "alice@example.test"
BOB = "bob@example.test"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    make_data_dir(folder)

    async def prepare() -> None:
        store = store_for_data(folder)
        await store.open()
        try:
            await store.create_account(ALICE)
            await store.create_mailbox(ALICE, "Team")
        finally:
            await store.close()

    asyncio.run(prepare())
    return folder


def _entries(data: Path) -> dict[str, str]:
    async def read() -> dict[str, str]:
        store = store_for_data(data)
        await store.open()
        try:
            return await store.acl_get(ALICE, "Team")
        finally:
            await store.close()

    return asyncio.run(read())


def test_set_list_delete(data: Path) -> None:
    d = ("--data", str(data))
    r = run(*d, "acl", "list", ALICE)
    assert r.returncode == 0 and r.stdout == f"{ALICE} shares no mailbox\n", r
    r = run(*d, "acl", "set", ALICE, "Team", BOB, "lr")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{ALICE} Team: {BOB} now holds lr\n"
    r = run(*d, "acl", "set", ALICE, "Team", BOB.upper(), "+ws")  # the directory's spelling
    assert r.stdout == f"{ALICE} Team: {BOB} now holds lrsw\n", r
    r = run(*d, "acl", "set", ALICE, "Team", "anyone", "l")
    assert r.returncode == 0, r.stderr
    assert _entries(data) == {BOB: "lrsw", "anyone": "l"}
    r = run(*d, "acl", "list", ALICE)
    listed = f"Team: {ALICE} lrswipkxtea (owner)\nTeam: anyone l\nTeam: {BOB} lrsw\n"
    assert r.stdout == listed, r.stdout
    r = run(*d, "acl", "delete", ALICE, "Team", BOB)
    assert r.stdout == f"{ALICE} Team: removed the rights of {BOB}\n", r
    r = run(*d, "acl", "delete", ALICE, "Team", BOB)
    assert "held no rights; nothing changed" in r.stdout, r
    assert _entries(data) == {"anyone": "l"}


def test_bad_input_is_one_clear_line(data: Path) -> None:
    d = ("--data", str(data))
    for args, said in (
        (
            ["set", ALICE, "Team", BOB, "lz"],
            "RIGHTS: unknown right 'z' (use letters of lrswipkxtea)",
        ),
        (["set", ALICE, "Nope", BOB, "l"], f"{ALICE} has no mailbox Nope"),
        (["set", ALICE, "Team", "nobody@example.test", "l"], "no user nobody@example.test"),
        (["set", "nobody@example.test", "Team", BOB, "l"], "no user nobody@example.test"),
        (["set", ALICE, "Team", ALICE, "l"], "the owner always holds every right"),
        (["list", ALICE, "Nope"], f"{ALICE} has no mailbox Nope"),
    ):
        r = run(*d, "acl", *args)
        assert r.returncode == 2, (args, r)
        assert r.stderr == f"correo: {said}\n", (args, r.stderr)
    assert _entries(data) == {}
