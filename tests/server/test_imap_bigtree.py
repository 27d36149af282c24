"""Part trees of 10,000 parts, as releases before Limits.max_parts stored them.

Loading such a tree takes 60-130 ms and walking it (SEARCH body text, TEXT over every
part's header) far longer; FETCH, SEARCH, SORT, THREAD and JMAP must do that off the
event loop and answer as before. The server's watchdog logs ``event=loop.blocked``
when a callback computes past 100 ms; each test checks that it never did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from correo.delivery.facts import facts_from_bytes, facts_of
from correo.message.structure import Limits, StructureBuilder
from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore
from tests.conftest import Server, make_data_dir
from tests.server.imap_helpers import RawImap, message
from tests.server.jmap_helpers import Jmap

ALICE = "alice@example.test"
BOX = "bigtree"
PARTS = 10_000
NEEDLE_PART = 7_777  # the one part whose body holds the needle
BEACON_PART = 9_001  # the one part whose header holds the beacon


def big_message() -> bytes:
    out = [
        b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: many parts\r\n"
        b"Date: Mon, 01 Jan 2024 09:00:00 +0000\r\nMessage-ID: <many@example.test>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n'
    ]
    for n in range(1, PARTS + 1):
        about = b"beacon" if n == BEACON_PART else b"note %d" % n
        word = b"needle" if n == NEEDLE_PART else b"hay"
        out.append(
            b"--zz\r\nContent-Type: text/plain; charset=us-ascii; format=flowed\r\n"
            b'Content-Disposition: inline; filename="part%d.txt"\r\n'
            b"Content-ID: <part%d@example.test>\r\nContent-Description: %s\r\n\r\n"
            b"part %d of many %s\r\n" % (n, n, about, n, word)
        )
    out.append(b"--zz--\r\n")
    return b"".join(out)


async def _populate(store_dir: Path) -> None:
    """The big message with facts as an older release made them, then a small one."""
    store = SqliteStore(store_dir)
    await store.open()
    try:
        await store.create_account(ALICE)
        await store.create_mailbox(ALICE, BOX)
        data = big_message()
        builder = StructureBuilder(Limits(max_parts=2 * PARTS))
        builder.feed(data)
        facts = facts_of(builder.finish())
        assert facts.tree.count(b'{"o":') == PARTS + 1
        small = message("Re: many parts", "hay\r\n", extra="In-Reply-To: <many@example.test>\r\n")
        for raw, f in ((data, facts), (small, facts_from_bytes(small))):
            spool = store.new_spool()
            spool.write(raw)
            await store.deliver(spool, Envelope(ALICE), [DeliveryTarget(ALICE, BOX)], facts=f)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("bigtree") / "data"
    make_data_dir(data)
    asyncio.run(_populate(data / "store"))
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def client(srv: Server) -> RawImap:
    imap = RawImap(srv.ports["imaps"], timeout=60)
    imap.login(ALICE)
    assert imap.cmd("S", f"EXAMINE {BOX}")[-1].startswith(b"S OK")
    return imap


def ok(out: list[bytes]) -> list[bytes]:
    assert out[-1].split()[1:2] == [b"OK"], out[-1]
    return out[:-1]


def test_fetch_a_part_and_the_structure(srv: Server) -> None:
    imap = client(srv)
    out = ok(imap.cmd("F", "FETCH 1 (BODY.PEEK[5000] BODY.PEEK[5000.MIME])"))
    joined = b"".join(out)
    assert b"BODY[5000] {21}\r\npart 5000 of many hay " in joined
    assert b"Content-ID: <part5000@example.test>\r\n" in joined
    out = ok(imap.cmd("G", "FETCH 1 (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    joined = b"".join(out)
    assert joined.count(b'("text" "plain" ("charset" "us-ascii" "format" "flowed")') == PARTS
    assert b"Subject: many parts" in joined
    out = ok(imap.cmd("H", "FETCH 1 (BINARY.PEEK[9999] BINARY.SIZE[9999])"))
    joined = b"".join(out)
    assert b"part 9999 of many hay" in joined and b"BINARY.SIZE[9999] 21" in joined
    imap.close()
    srv.assert_loop_never_blocked()


def test_search_body_and_text_over_every_part(srv: Server) -> None:
    imap = client(srv)
    for key, hits in (
        ("BODY needle", b"1"),
        ("BODY hay", b"1 2"),
        ("TEXT beacon", b"1"),  # a part's header: TEXT reads every header (as Dovecot)
        ("BODY beacon", b""),
        ("TEXT nowhere", b""),
        ("OR BODY needle SUBJECT many", b"1 2"),
    ):
        out = ok(imap.cmd("S", f"SEARCH {key}"))
        assert out == [b"* SEARCH" + (b" " + hits if hits else b"")], key
    imap.close()
    srv.assert_loop_never_blocked()


def test_sort_and_thread(srv: Server) -> None:
    imap = client(srv)
    assert ok(imap.cmd("S", "SORT (REVERSE DATE) UTF-8 ALL")) == [b"* SORT 2 1"]
    assert ok(imap.cmd("R", "SORT (SUBJECT) UTF-8 ALL")) == [b"* SORT 1 2"]  # same base
    assert ok(imap.cmd("T", "THREAD REFERENCES UTF-8 ALL")) == [b"* THREAD (1 2)"]
    assert ok(imap.cmd("U", "THREAD ORDEREDSUBJECT UTF-8 ALL")) == [b"* THREAD (1 2)"]
    imap.close()
    srv.assert_loop_never_blocked()


def test_jmap_email_get_and_part_download(srv: Server) -> None:
    jmap = Jmap(srv)
    got = jmap.call(
        "Email/get",
        ids=jmap.email_ids(BOX),
        properties=["subject", "size", "preview", "bodyStructure"],
    )
    (big,) = [e for e in got["list"] if e["subject"] == "many parts"]
    assert big["size"] == len(big_message())
    assert big["preview"] == "part 1 of many hay"
    subs = big["bodyStructure"]["subParts"]
    assert len(subs) == PARTS and subs[499]["name"] == "part500.txt"
    for n in (1, 500, 1000):  # streamed from the stored tree
        url = jmap.session["downloadUrl"].format(
            accountId=jmap.account, blobId=subs[n - 1]["blobId"], name="p.txt", type="text/plain"
        )
        url = url.replace("https://localhost", "https://127.0.0.1")
        url = jmap.base + url.partition(str(jmap.base.rpartition(":")[2]))[2]
        raw = jmap.http.get(url, timeout=60)
        assert raw.status_code == 200 and raw.content == b"part %d of many hay" % n
    srv.assert_loop_never_blocked()
