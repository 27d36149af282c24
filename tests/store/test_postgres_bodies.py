"""How the PostgreSQL store keeps bodies: lz4 for the ones written after migration 47,
pglz ones from before still read back byte for byte. A real PostgreSQL (tests/pg.py).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from correo.store.api import DeliveryTarget, Envelope

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

from correo.store.postgres import PostgresStore  # noqa: E402


def body(seed: int, size: int) -> bytes:
    """Text that compresses (as mail does), over the 2 KB at which TOAST compresses."""
    rnd = random.Random(seed)
    words = [b"mail", b"server", b"folder", b"reply", b"thread", b"garden", b"river"]
    text = b" ".join(rnd.choice(words) for _ in range(size // 5))
    return b"Subject: s%d\r\n\r\n" % seed + text + b"\r\n"


def methods(url: str) -> list[str | None]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(b"SELECT pg_column_compression(data) FROM blobs ORDER BY id")
        return [row[0] for row in rows.fetchall()]


def lz4_available(url: str) -> bool:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(b"CREATE TEMP TABLE probe (b bytea COMPRESSION lz4)")
    except psycopg.Error:
        return False
    return True


async def deliver_and_read(url: str, root: Path, data: bytes) -> dict[int, bytes]:
    """Deliver ``data`` (opening the store migrates), then read every message back."""
    store = PostgresStore(url, root, recover=True)
    await store.open()
    try:
        spool = store.new_spool()
        spool.write(data)
        await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget("a@x.test")])
        read = {}
        for info in await store.list_messages("a@x.test"):
            inline = await store.read_inline("a@x.test", "INBOX", info.uid)
            chunks = store.read_message("a@x.test", "INBOX", info.uid, 4096)
            read[info.uid] = b"".join([c async for c in chunks])
            assert inline == read[info.uid]
        return read
    finally:
        await store.close()


def test_bodies_from_before_stay_pglz_and_new_ones_are_lz4(pg_url: str, tmp_path: Path) -> None:
    if not lz4_available(pg_url):
        pytest.skip("this PostgreSQL has no lz4 (before 14, or built without it)")
    first, old, new = body(1, 40_000), body(2, 60_000), body(3, 80_000)
    assert asyncio.run(deliver_and_read(pg_url, tmp_path, first)) == {1: first}
    assert methods(pg_url) == ["lz4"]
    # A database from before migration 47 (pglz), with a body written then.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(b"ALTER TABLE blobs ALTER COLUMN data SET COMPRESSION pglz")
    assert asyncio.run(deliver_and_read(pg_url, tmp_path, old))[2] == old
    assert methods(pg_url) == ["lz4", "pglz"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(b"DELETE FROM schema_version WHERE version = 47")
    # Opening migrates: the next body is lz4, the one from before reads back as it was.
    read = asyncio.run(deliver_and_read(pg_url, tmp_path, new))
    assert read == {1: first, 2: old, 3: new}
    assert methods(pg_url) == ["lz4", "pglz", "lz4"]
