"""The Spool part of the MailStore contract, on SQLite and PostgreSQL.

Delivery reads a spooled message back (the header for Sieve, the whole of it for a copy)
and splices header fields in (Authentication-Results, DKIM-Signature) only through the
Spool API, so these hold for every store's spools, in memory and spilled to a file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from correo.store.api import DeliveryTarget, Envelope, QueuedRecipient, spool_insert, spool_read
from tests.store.test_contract import Factory, factory, opened, read_all, run

__all__ = ["factory"]  # the fixture, parametrised over both stores

# The stores of these tests keep 1,024 bytes in memory: the large case spills.
SIZES = [0, 300, 1024, 1025, 300_000]


def _message(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"z" * (size % 256)


@pytest.mark.parametrize("size", SIZES)
def test_a_spool_reads_back_what_was_written(factory: Factory, tmp_path: Path, size: int) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        data = _message(size)
        spool = store.new_spool()
        for i in range(0, len(data), 700):
            spool.write(data[i : i + 700])
        assert spool.in_memory == (size <= 1024)
        assert spool.size == size
        assert spool.read() == data
        assert spool.read(5, 1030) == data[5:1030]
        assert spool.read(size + 10, size + 20) == b""
        assert await spool_read(spool, 100, None) == data[100:]
        pieces = list(spool.chunks(3, 4096))
        assert b"".join(pieces) == data[3:]
        assert all(0 < len(p) <= 4096 for p in pieces)
        spool.discard()
        await store.close()

    run(go())


@pytest.mark.parametrize("size", SIZES)
def test_inserted_fields_are_delivered_and_queued(
    factory: Factory, tmp_path: Path, size: int
) -> None:
    """Trace and signature fields spliced in after the Return-Path reach the mailbox,
    and the queued copy starts after the Return-Path (queue_skip)."""

    async def go() -> None:
        store = await opened(factory, tmp_path)
        return_path = b"Return-Path: <s@x.test>\r\n"
        rest = b"Subject: s\r\n\r\n" + _message(size)
        added = b"DKIM-Signature: v=1; d=x.test\r\nAuthentication-Results: mx; none\r\n"
        spool = store.new_spool()
        spool.write(return_path + rest)
        await spool_insert(spool, len(return_path), added)
        whole = return_path + added + rest
        assert spool.size == len(whole)
        assert await spool_read(spool) == whole
        delivered = await store.deliver(
            spool,
            Envelope("s@x.test"),
            [DeliveryTarget("a@x.test")],
            [QueuedRecipient("r@remote.test")],
            queue_skip=len(return_path),
        )
        ((_, uid),) = delivered.uids
        assert await read_all(store.read_message("a@x.test", "INBOX", uid)) == whole
        assert delivered.queue_id is not None
        assert await read_all(store.queue_read(delivered.queue_id)) == added + rest
        await store.close()

    run(go())
