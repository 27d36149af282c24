"""LocalDelivery caches the active Sieve script by account name: an address removed and
given to someone new (``correo user del`` then ``user add``, another process) must not
see the old owner's script, however soon the next message comes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from correo.config import Config
from correo.delivery.local import LocalDelivery, LocalRecipient
from correo.directory import SqliteDirectory
from correo.dns import FakeResolver
from correo.log import get_logger
from correo.store.api import Envelope
from correo.store.sqlite import SqliteStore

A, B = "alice@example.test", "bob@example.test"
MSG = (
    b"Return-Path: <dave@remote.test>\r\nFrom: dave@remote.test\r\nTo: alice@example.test\r\n"
    b"Subject: hello\r\nMessage-ID: <m1@remote.test>\r\n\r\nBody text.\r\n"
)
SKIP = len(b"Return-Path: <dave@remote.test>\r\n")


async def send(mda: LocalDelivery, store: SqliteStore, to: str) -> int | None:
    spool = store.new_spool()
    spool.write(MSG)
    report = await mda.deliver(
        spool, Envelope("dave@remote.test"), [LocalRecipient(to, to)], queue_skip=SKIP
    )
    return report.queue_id  # set when a redirect was queued


def test_a_re_created_address_does_not_run_the_old_owners_cached_script(tmp_path: Path) -> None:
    async def go() -> None:
        store = SqliteStore(tmp_path / "store")
        await store.open()
        server = SqliteDirectory(tmp_path / "directory.db")  # the server's view
        server.add_domain("example.test")
        server.add_user(A, "pw-alice-123")
        server.add_user(B, "pw-bob-1234")
        config = Config(data_dir=tmp_path, hostname="mx.example.test", listen={})
        mda = LocalDelivery(config, store, server, get_logger(), resolver=FakeResolver())
        try:
            await store.sieve_put(A, "fwd", 'redirect "old-owner@elsewhere.test";')
            await store.sieve_activate(A, "fwd")
            assert server.resolve(A) is not None
            assert await send(mda, store, A) is not None  # redirected; the script is cached
            with SqliteDirectory(tmp_path / "directory.db") as cli:  # another process, at once
                cli.del_user(A)
                await store.delete_account(A)
                cli.add_user(A, "pw-new-owner-1")
                await store.create_account(A)
            assert server.resolve(A) is not None  # the next RCPT sees the new directory
            assert await send(mda, store, A) is None  # not redirected
            assert len(await store.list_messages(A)) == 1  # kept in the new INBOX
        finally:
            server.close()
            await store.close()

    asyncio.run(go())
