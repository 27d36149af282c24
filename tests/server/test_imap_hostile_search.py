"""SEARCH programs of many keys over real sockets: the event loop is never held.

The server's watchdog logs ``event=loop.blocked`` when a callback runs past 100 ms;
each test checks that it never did while the program was evaluated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore
from tests.conftest import Server, make_data_dir
from tests.server.imap_helpers import RawImap, message

ALICE = "alice@example.test"
BOB = "bob@example.test"
MANY = 3000  # messages in Bob's "many" mailbox
HUGE = 4 << 20  # octets of the body of the one message in Bob's "huge" mailbox


async def _populate(store_dir: Path) -> None:
    """Deliver straight into the store: thousands of copies in one commit."""
    store = SqliteStore(store_dir)
    await store.open()
    await store.create_account(BOB)
    await store.create_mailbox(BOB, "many")
    spool = store.new_spool()
    spool.write(message("many"))
    await store.deliver(spool, Envelope(ALICE), [DeliveryTarget(BOB, "many")] * MANY)
    await store.create_mailbox(BOB, "huge")
    spool = store.new_spool()
    spool.write(message("huge", "a few words of text\r\n" * (HUGE // 21)))
    await store.deliver(spool, Envelope(ALICE), [DeliveryTarget(BOB, "huge")])
    await store.close()


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("search") / "data"
    make_data_dir(data)
    asyncio.run(_populate(data / "store"))
    srv = Server(data)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


def client(srv: Server, user: str) -> RawImap:
    imap = RawImap(srv.ports["imaps"], timeout=30)
    imap.login(user)
    return imap


def test_search_with_many_keys_keeps_the_loop_free(mail: Server) -> None:
    """A program of 999 keys over thousands of messages is evaluated in slices."""
    a, b = client(mail, BOB), client(mail, ALICE)
    b.sock.settimeout(10)
    assert a.cmd("A", "EXAMINE many")[-1].startswith(b"A OK")
    keys = " ".join(f"UNKEYWORD k{i}" for i in range(999))
    a.send(f"B SEARCH {keys}\r\n".encode())
    assert b.cmd("C", "NOOP")[-1].startswith(b"C OK")
    out = a.until(b"B")
    assert out[-1].startswith(b"B OK"), out[-1]
    (hits,) = [line for line in out if line.startswith(b"* SEARCH")]
    assert len(hits.split()) == 2 + MANY
    a.close()
    b.close()
    mail.assert_loop_never_blocked()


def test_many_text_keys_over_a_large_message_keep_the_loop_free(mail: Server) -> None:
    """Each BODY key scans the whole text again: such a message is matched off the loop."""
    a = client(mail, BOB)
    assert a.cmd("A", "EXAMINE huge")[-1].startswith(b"A OK")
    keys = " ".join(f"NOT BODY absent{i}" for i in range(300))  # none of them required
    out = a.cmd("B", f"SEARCH {keys}")
    assert [line for line in out if line.startswith(b"* SEARCH")] == [b"* SEARCH 1"], out
    out = a.cmd("C", f"SEARCH {keys} NOT BODY WORDS")
    assert [line for line in out if line.startswith(b"* SEARCH")] == [b"* SEARCH"], out
    a.close()
    mail.assert_loop_never_blocked()
