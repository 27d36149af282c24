"""Many small bodies in one read (SQLite and PostgreSQL): what a FETCH of bodies for
many messages asks the store for, instead of one read per message."""

from __future__ import annotations

from pathlib import Path

from correo.store.api import DeliveryTarget
from tests.store.test_contract import Factory, factory, opened, put, run  # noqa: F401

A = "a@x.test"


def test_read_inlines(factory: Factory, tmp_path: Path) -> None:  # noqa: F811
    async def go() -> None:
        store = await opened(factory, tmp_path)
        # under the test stores' spool_memory (1 KB): kept inline by both stores
        bodies = [b"Subject: m%d\r\n\r\n" % i + b"line %d\r\n" % i * (i * 20) for i in range(5)]
        big = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 40_000 + b"\r\n"  # 640 KB
        for body in [*bodies, big]:
            await put(store, body, [DeliveryTarget(A)])
        uids = [m.uid for m in await store.list_messages(A)]
        got = await store.read_inlines(A, "INBOX", uids)
        # every small body, byte for byte; a big one only if the store keeps it inline
        assert {u: got[u] for u in uids[:5]} == dict(zip(uids[:5], bodies, strict=True))
        assert got.get(uids[5], big) == big
        assert set(got) <= set(uids)
        await store.expunge(A, "INBOX", uids[:2])
        after = await store.read_inlines(A, "INBOX", uids[:3])
        assert after == {uids[2]: bodies[2]}  # expunged ones are left out
        assert await store.read_inlines(A, "INBOX", []) == {}
        assert await store.read_inlines(A, "Nope", uids) == {}
        assert await store.read_inlines("nobody@x.test", "INBOX", uids) == {}
        await store.close()

    run(go())
