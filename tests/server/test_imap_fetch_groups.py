"""FETCH of bodies for many messages reads their small bodies in groups (one store call
per group, a bounded cache of recent ones): the answer must be byte for byte what one
FETCH per message gives, on SQLite and on PostgreSQL, big bodies still streamed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from correo.server.imap.bodies import BodyCache
from correo.server.imap.view import MailboxView
from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore
from tests.conftest import Server
from tests.server.imap_helpers import RawImap, message, unique


def test_body_cache_is_bounded_and_skips_big_bodies() -> None:
    cache = BodyCache(max_bytes=10_000)
    for uid in range(1, 11):
        cache.put(("u", "INBOX", 1, uid), b"x" * 2_000)
    assert cache.size <= 10_000
    assert cache.get(("u", "INBOX", 1, 1)) is None  # the oldest went first
    assert cache.get(("u", "INBOX", 1, 10)) == b"x" * 2_000
    cache.put(("u", "INBOX", 1, 11), b"y" * 200_000)  # over CACHED_MAX: not kept
    assert cache.get(("u", "INBOX", 1, 11)) is None


def _grouped_equals_single(port: int) -> None:
    raw = RawImap(port)
    raw.login()
    box = unique("groups")
    raw.cmd("c", f"CREATE {box}")
    bodies = [message(f"m{i}", f"line {i}\r\n" * (i * 40 + 1)) for i in range(12)]
    bodies[5] = message("big", "z" * 76 + "\r\n" * 1 + ("q" * 76 + "\r\n") * 8_000)  # ~630 KB
    for i, data in enumerate(bodies):
        raw.send(b"a%d APPEND %s {%d+}\r\n" % (i, box.encode(), len(data)) + data + b"\r\n")
        assert raw.until(b"a%d" % i)[-1].startswith(b"a%d OK" % i)
    out = raw.cmd("s", f"SELECT {box}")
    assert out[-1].startswith(b"s OK"), out
    for items in (
        "BODY.PEEK[]",
        "(RFC822.SIZE BODY.PEEK[TEXT])",
        "BINARY.PEEK[1]",
        # whole-message plans, answered for one message without the general path
        "(UID FLAGS BODY.PEEK[]<5.100> RFC822.SIZE)",
        "(BODY.PEEK[] INTERNALDATE BODY.PEEK[]<0.10>)",
        "(RFC822 FLAGS)",
        "(MODSEQ BODY.PEEK[])",  # turns CONDSTORE on (RFC 7162 §3.1): the last one
    ):
        grouped = raw.cmd("g", f"UID FETCH 1:* {items}")
        assert grouped[-1].startswith(b"g OK"), grouped[-1]
        singles = []
        for uid in range(1, len(bodies) + 1):
            one = raw.cmd("o", f"UID FETCH {uid} {items}")
            assert one[-1].startswith(b"o OK"), one[-1]
            singles += one[:-1]
        # the first CONDSTORE-enabling command also says HIGHESTMODSEQ (RFC 7162 §3.1)
        grouped = [line for line in grouped if not line.startswith(b"* OK [HIGHESTMODSEQ")]
        assert grouped[:-1] == singles, items
    whole = raw.cmd("w", "UID FETCH 1:* BODY.PEEK[]")
    for uid, data in enumerate(bodies, 1):
        assert b"BODY[] {%d}\r\n" % len(data) + data in whole[uid - 1]
    raw.close()


def test_grouped_bodies_on_sqlite(server: Server) -> None:
    _grouped_equals_single(server.ports["imaps"])


def test_grouped_bodies_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    from tests.server.test_postgres_store import pg_node

    node = pg_node(tmp_path / "node", pg_url)
    node.start()
    try:
        _grouped_equals_single(node.ports["imaps"])
    finally:
        node.stop()


def test_body_cache_bound_follows_the_configuration() -> None:
    from correo.server.imap import bodies

    owner = _Store()
    cache = bodies.body_cache(owner)
    cache.max_bytes = 1_000_000
    for uid in range(1, 6):
        cache.put(("u", "INBOX", 1, uid), b"x" * 2_000)
    try:
        bodies.configure(4_000)  # a reload lowers the bound: the cache is trimmed at once
        assert cache.size <= 4_000 and cache.get(("u", "INBOX", 1, 5)) == b"x" * 2_000
        bodies.configure(0)  # 0: nothing is kept
        cache.put(("u", "INBOX", 1, 9), b"y" * 10)
        assert cache.size == 0 and cache.get(("u", "INBOX", 1, 9)) is None
    finally:
        bodies.configure(64 << 20)


class _Store:
    """A stand-in key for the weak mapping of caches (only its identity is used)."""


def test_fetch_with_the_body_cache_off(start_server: Callable[..., Server]) -> None:
    srv = start_server({"body_cache": "0"})
    _grouped_equals_single(srv.ports["imaps"])


class _Counted(SqliteStore):
    """The SQLite store, counting the body reads a single-message FETCH makes."""

    calls: list[tuple[int, ...]]

    async def read_inline(self, account: str, mailbox: str, uid: int) -> bytes | None:
        self.calls.append((uid,))
        return await super().read_inline(account, mailbox, uid)

    async def read_inlines(
        self, account: str, mailbox: str, uids: Sequence[int]
    ) -> dict[int, bytes]:
        self.calls.append(tuple(uids))
        return await super().read_inlines(account, mailbox, uids)


def test_a_walk_uid_by_uid_reads_ahead_and_a_jump_does_not(tmp_path: Path) -> None:
    """mbsync and offlineimap FETCH one UID after another: from the second step on, the
    next small bodies come in the same store call, bounded; a client that jumps around
    costs one read per message, as before; the bodies are the store's either way."""
    from correo.server.imap import bodies

    async def go() -> None:
        store = _Counted(tmp_path)
        store.calls = []
        await store.open()
        try:
            for i in range(40):
                spool = store.new_spool()
                spool.write(b"Subject: %d\r\n\r\n" % i + b"x" * (60_000 if i == 30 else 2_000))
                await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget("a@x.test")])
            state = await store.mailbox_state("a@x.test")
            view = MailboxView(
                "a@x.test",
                "INBOX",
                read_only=True,
                uidvalidity=state.uidvalidity,
                uidnext=state.uidnext,
                highestmodseq=state.highestmodseq,
                messages=await store.list_messages("a@x.test"),
                first_recent=10_000,
            )
            want = {u: await store.read_inline("a@x.test", "INBOX", u) for u in view.uids}
            store.calls.clear()
            assert await bodies.read_one(store, view, 5) == want[5]  # a jump: one read
            assert store.calls == [(5,)]
            for uid in range(6, 24):  # the walk: 6 and the next 16 in one call
                assert await bodies.read_one(store, view, uid) == want[uid]
            assert store.calls[1] == tuple(range(6, 6 + 1 + bodies.WALK_MESSAGES))
            assert store.calls[2][0] == 23 and len(store.calls) == 3
            store.calls.clear()
            assert await bodies.read_one(store, view, 2) == want[2]  # a jump back
            assert await bodies.read_one(store, view, 4) == want[4]  # and forward
            assert store.calls == [(2,), (4,)]
            assert await bodies.read_one(store, view, 33) == want[33]  # read ahead at 23
            assert store.calls == [(2,), (4,)]
            cache = bodies.body_cache(store)
            cache.max_bytes = 0  # no cache: nothing read ahead
            cache.trim()
            store.calls.clear()
            assert await bodies.read_one(store, view, 35) == want[35]
            assert await bodies.read_one(store, view, 36) == want[36]
            assert store.calls == [(35,), (36,)]
        finally:
            await store.close()

    asyncio.run(go())
