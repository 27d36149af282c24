"""FETCH speed paths: the shared WireCache, batched metadata rendering, inline body reads.

The fast paths must answer byte for byte what the plain path would: these tests pin
the responses (sequence numbers, flags, \\Recent, MODSEQ, literals) and the cache's
memory bound.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from correo.delivery.facts import facts_from_bytes
from correo.server.imap.fetch import WireCache, _Wire, _wire_size
from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore
from tests.conftest import Server
from tests.server.imap_helpers import RawImap, message, unique

# -- WireCache: bounded in bytes -------------------------------------------------------


def _fill(cache: WireCache, key: tuple[str, str, int], uids: range, size: int) -> None:
    box = cache.box(key)
    added = 0
    for uid in uids:
        wire = box[uid] = _Wire()
        wire.envelope = b"x" * size
        added += _wire_size(wire)
    cache.grew(key, added)


def test_cache_drops_least_recently_used_mailbox_first() -> None:
    cache = WireCache(max_bytes=10_000)
    a, b, c = ("u", "A", 1), ("u", "B", 2), ("u", "C", 3)
    _fill(cache, a, range(1, 11), 100)  # ~3,000 bytes each
    _fill(cache, b, range(1, 11), 100)
    cache.box(a)  # A used again: B is now the oldest
    _fill(cache, c, range(1, 21), 100)
    assert cache.size <= cache.max_bytes
    assert cache.box(a) and cache.box(c)
    assert not cache.box(b)  # dropped (and recreated empty by box())


def test_cache_trims_a_mailbox_bigger_than_the_bound() -> None:
    cache = WireCache(max_bytes=10_000)
    key = ("u", "INBOX", 7)
    _fill(cache, key, range(1, 101), 200)  # ~40,000 bytes asked
    box = cache.box(key)
    assert cache.size <= cache.max_bytes
    assert 0 < len(box) < 100
    assert 100 in box and 1 not in box  # the oldest entries went first
    assert cache.size == sum(_wire_size(w) for w in box.values())


def test_cache_ignores_growth_of_a_dropped_mailbox() -> None:
    cache = WireCache(max_bytes=1_000)
    cache.grew(("u", "gone", 1), 500)  # its box was never made (or already dropped)
    assert cache.size == 0


# -- store read paths ------------------------------------------------------------------


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _store_with(tmp_path: Path, bodies: list[bytes]) -> SqliteStore:
    store = SqliteStore(tmp_path, spool_memory=4096)
    await store.open()
    for body in bodies:
        spool = store.new_spool()
        spool.write(body)
        await store.deliver(
            spool,
            Envelope("s@x.test"),
            [DeliveryTarget("a@x.test")],
            facts=facts_from_bytes(body),
        )
    return store


def test_fetch_facts_without_tree_and_sparse_uids(tmp_path: Path) -> None:
    bodies = [message(f"subject {i}") for i in range(12)]

    async def go() -> None:
        store = await _store_with(tmp_path, bodies)
        try:
            full = await store.fetch_facts("a@x.test", "INBOX", range(1, 13))
            lean = await store.fetch_facts("a@x.test", "INBOX", range(1, 13), tree=False)
            assert sorted(full) == sorted(lean) == list(range(1, 13))
            for uid in full:
                assert full[uid].tree and lean[uid].tree == b""
                assert full[uid].envelope == lean[uid].envelope
                assert b"subject %d" % (uid - 1) in lean[uid].envelope
            # dense but with holes (a range scan filtered) and sparse (an IN list)
            holes = await store.fetch_facts("a@x.test", "INBOX", [2, 3, 5, 6], tree=False)
            assert sorted(holes) == [2, 3, 5, 6]
            sparse = await store.fetch_facts("a@x.test", "INBOX", [12, 1, 99], tree=False)
            assert sorted(sparse) == [1, 12]
        finally:
            await store.close()

    _run(go())


def test_read_inline_small_and_file_backed(tmp_path: Path) -> None:
    small = message("small")
    big = message("big", "y" * 20_000 + "\r\n")  # above spool_memory: kept as a file

    async def go() -> None:
        store = await _store_with(tmp_path, [small, big])
        try:
            assert await store.read_inline("a@x.test", "INBOX", 1) == small
            assert await store.read_inline("a@x.test", "INBOX", 2) is None
            with pytest.raises(Exception, match="does not exist"):
                await store.read_inline("a@x.test", "INBOX", 3)
        finally:
            await store.close()

    _run(go())


# -- end to end: the fast paths answer what the RFC asks --------------------------------


def _select(raw: RawImap, box: str) -> None:
    raw.cmd("s", f"SELECT {box}")


def _fetch_lines(out: list[bytes]) -> list[bytes]:
    return [line for line in out if line.startswith(b"* ") and b" FETCH " in line]


def test_repeated_fetch_is_identical_and_flags_stay_current(server: Server) -> None:
    raw = RawImap(server.ports["imaps"])
    raw.login()
    box = unique("fcache")
    raw.cmd("c", f"CREATE {box}")
    for i in range(5):
        data = message(f"cached {i}")
        raw.send(b"a%d APPEND %s {%d+}\r\n" % (i, box.encode(), len(data)) + data + b"\r\n")
        assert raw.until(b"a%d" % i)[-1].startswith(b"a%d OK" % i)
    _select(raw, box)
    items = "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"
    first = _fetch_lines(raw.cmd("f1", f"FETCH 1:* {items}"))
    again = _fetch_lines(raw.cmd("f2", f"FETCH 1:* {items}"))
    assert first == again and len(first) == 5
    for seq, line in enumerate(first, 1):
        assert line.startswith(b"* %d FETCH (UID " % seq)
        assert b'"cached %d"' % (seq - 1) in line
        assert re.search(rb'INTERNALDATE "[ \d]\d-\w{3}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', line)
    raw.cmd("st", "STORE 2 +FLAGS.SILENT (\\Flagged)")
    after = _fetch_lines(raw.cmd("f3", f"FETCH 1:* {items}"))
    assert b"\\Flagged" in after[1] and b"\\Flagged" not in after[0]
    assert after[1].split(b"ENVELOPE")[1] == first[1].split(b"ENVELOPE")[1]
    # a sparse UID set: sequence numbers still right, UID added by UID FETCH
    sparse = _fetch_lines(raw.cmd("f4", "UID FETCH 2,4 (FLAGS BODYSTRUCTURE)"))
    assert [line.split(b" ")[1] for line in sparse] == [b"2", b"4"]
    assert all(b"UID " in line and b'BODYSTRUCTURE ("text" "plain"' in line for line in sparse)
    # after an expunge the same cached items come with the new sequence numbers
    raw.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    raw.cmd("e", "EXPUNGE")
    shifted = _fetch_lines(raw.cmd("f5", f"FETCH 1:* {items}"))
    assert len(shifted) == 4
    assert shifted[0].startswith(b"* 1 FETCH (UID 2 ") and b'"cached 1"' in shifted[0]
    condstore = _fetch_lines(raw.cmd("f6", "FETCH 1:2 (ENVELOPE) (CHANGEDSINCE 1)"))
    assert all(re.search(rb"MODSEQ \(\d+\)\)\r?$", line) for line in condstore), condstore
    raw.close()


def test_rev1_recent_and_bodies_through_fast_paths(server: Server) -> None:
    raw = RawImap(server.ports["imaps"])
    raw.login()
    box = unique("frecent")
    raw.cmd("c", f"CREATE {box}")
    bodies = [message("one"), message("two", "z" * 70_000 + "\r\n")]
    for i, data in enumerate(bodies):
        raw.send(b"a%d APPEND %s {%d+}\r\n" % (i, box.encode(), len(data)) + data + b"\r\n")
        raw.until(b"a%d" % i)
    _select(raw, box)  # rev1 session: both messages are \Recent here
    lines = _fetch_lines(raw.cmd("f", "FETCH 1:* (FLAGS)"))
    assert all(b"\\Recent" in line for line in lines), lines
    for uid, data in enumerate(bodies, 1):
        out = raw.cmd("b", f"UID FETCH {uid} BODY.PEEK[]")
        assert out[0].startswith(b"* %d FETCH (" % uid) and b"UID %d" % uid in out[0]
        assert b"BODY[] {%d}\r\n" % len(data) + data in out[0] and out[0].endswith(b")")
        part = raw.cmd("p", f"UID FETCH {uid} (BODY.PEEK[]<5.10> RFC822.SIZE)")
        assert b"BODY[]<5> {10}\r\n" + data[5:15] + b" RFC822.SIZE %d " % len(data) in part[0]
    raw.close()


def test_rev1_recent_only_on_the_messages_this_session_claimed(server: Server) -> None:
    """FETCH FLAGS formats each flag set once: messages with the same flags differ by
    \\Recent, which only the messages that arrived since the last SELECT carry."""
    first = RawImap(server.ports["imaps"])
    first.login()
    box = unique("frecmix")
    first.cmd("c", f"CREATE {box}")
    for i in range(3):
        data = message(f"old {i}")
        first.send(b"a%d APPEND %s {%d+}\r\n" % (i, box.encode(), len(data)) + data + b"\r\n")
        first.until(b"a%d" % i)
    _select(first, box)  # claims \Recent for the three
    first.cmd("u", "UNSELECT")
    data = message("new")
    first.send(b"a9 APPEND %s {%d+}\r\n" % (box.encode(), len(data)) + data + b"\r\n")
    first.until(b"a9")
    second = RawImap(server.ports["imaps"])
    second.login()
    _select(second, box)  # only the fourth is \Recent here
    lines = _fetch_lines(second.cmd("f", "UID FETCH 1:* (UID FLAGS)"))
    assert [b"\\Recent" in line for line in lines] == [False, False, False, True], lines
    assert lines[3] == b"* 4 FETCH (UID 4 FLAGS (\\Recent))", lines
    first.close()
    second.close()
