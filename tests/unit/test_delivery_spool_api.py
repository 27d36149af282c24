"""Delivery reads and rewrites spools only through the Spool API.

A store whose spools are not the embedded store's own class must get the same message:
before, every read of such a spool came back empty, so a Sieve redirect stored and
queued a message without its header or body, and a second header group an empty copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

from correo.config import Config
from correo.delivery.local import LocalDelivery, LocalRecipient
from correo.directory import SqliteDirectory
from correo.log import get_logger
from correo.store.api import (
    INBOX,
    Delivered,
    DeliveryTarget,
    Envelope,
    MessageFacts,
    QueuedRecipient,
    Spool,
)
from correo.store.sqlite import SqliteStore

A = "alice@example.test"
RETURN_PATH = b"Return-Path: <dave@remote.test>\r\n"
MSG = (
    RETURN_PATH + b"Received: from x\r\nFrom: dave@remote.test\r\nTo: alice@example.test\r\n"
    b"Subject: hello\r\nMessage-ID: <m1@remote.test>\r\n\r\n" + b"Body line.\r\n" * 50
)


class ListSpool:
    """A spool of another kind: pieces in a list (as a store with its own spools has)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.size = 0
        self.in_memory = True

    def write(self, data: bytes) -> None:
        self.data += data
        self.size = len(self.data)

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        return bytes(self.data[start:end])

    def chunks(self, start: int = 0, chunk_size: int = 65536) -> Iterator[bytes]:
        for i in range(start, len(self.data), chunk_size):
            yield bytes(self.data[i : i + chunk_size])

    def insert(self, offset: int, data: bytes) -> None:
        self.data[offset:offset] = data
        self.size = len(self.data)

    def discard(self) -> None:
        self.data = bytearray()


class ListSpoolStore(SqliteStore):
    """The embedded store, handing out ListSpools and filing them through its own."""

    def new_spool(self) -> Spool:
        return ListSpool()

    async def deliver(  # type: ignore[override]
        self,
        spool: Spool,
        envelope: Envelope,
        targets: Sequence[DeliveryTarget],
        queued: Sequence[QueuedRecipient] = (),
        **kwargs: object,
    ) -> Delivered:
        own = super().new_spool()
        for chunk in spool.chunks():
            own.write(chunk)
        spool.discard()
        return await super().deliver(own, envelope, targets, queued, **kwargs)  # type: ignore[arg-type]


async def _read(store: SqliteStore, account: str, mailbox: str, uid: int) -> bytes:
    return b"".join([c async for c in store.read_message(account, mailbox, uid)])


def test_sieve_redirect_copy_of_a_foreign_spool_is_the_whole_message(tmp_path: Path) -> None:
    async def go() -> None:
        store = ListSpoolStore(tmp_path / "store")
        await store.open()
        directory = SqliteDirectory(tmp_path / "directory.db")
        directory.add_domain("example.test")
        directory.add_user(A, "pw-alice-123")
        config = Config(data_dir=tmp_path, hostname="mx.example.test", listen={})
        mda = LocalDelivery(config, store, directory, get_logger())
        try:
            await store.sieve_put(
                A, "s", 'require "copy";\nredirect :copy "bob@remote.test";\nkeep;'
            )
            await store.sieve_activate(A, "s")
            spool = store.new_spool()
            spool.write(MSG)
            facts: MessageFacts | None = None
            report = await mda.deliver(
                spool,
                Envelope("dave@remote.test"),
                [LocalRecipient(A, A)],
                queue_skip=len(RETURN_PATH),
                facts=facts,
            )
            assert [o.code for o in report.outcomes] == [250]
            (info,) = await store.list_messages(A, INBOX)
            stored = await _read(store, A, INBOX, info.uid)
            # Return-Path first, our fields (junk verdict, redirect marker), then the
            # message as it was sent
            assert stored.startswith(RETURN_PATH)
            assert b"\r\nX-Correo-Redirected: 1 " + A.encode() + b"\r\n" in stored
            assert stored.endswith(MSG[len(RETURN_PATH) :])
            (entry,) = await store.queue_list()
            queued = b"".join([c async for c in store.queue_read(entry.id)])
            assert queued == stored[len(RETURN_PATH) :]  # the queued copy lacks Return-Path
        finally:
            directory.close()
            await store.close()

    asyncio.run(go())
