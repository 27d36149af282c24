"""SEARCH after a mailbox is deleted and made again under the same name.

The new mailbox reuses the old one's UIDs under a new UIDVALIDITY (RFC 9051 §2.3.1.1):
text the background indexer had queued or buffered for the old messages must never be
written under the new ones, or SEARCH BODY misses new mail and finds mail that is gone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from correo.delivery.facts import facts_from_bytes, load_tree
from correo.delivery.textindex import indexable, indexer_for
from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore
from tests.conftest import Server
from tests.server.imap_helpers import imap, message, unique

A = "a@x.test"


def _mail(word: str) -> bytes:
    return f"From: ann@y.test\r\nTo: {A}\r\nSubject: s\r\n\r\n{word}\r\n".encode()


async def _deliver(store: SqliteStore, box: str, data: bytes) -> int:
    spool = store.new_spool()
    spool.write(data)
    delivered = await store.deliver(
        spool, Envelope(sender="s@y.test"), [DeliveryTarget(A, box)], facts=facts_from_bytes(data)
    )
    return delivered.uids[0][1]


def test_text_queued_for_a_deleted_mailbox_is_not_written_under_its_successor(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path)
        await store.open()
        try:
            await store.create_account(A)
            await store.create_mailbox(A, "Box")
            old = _mail("alphaword")
            uid = await _deliver(store, "Box", old)
            await store.delete_mailbox(A, "Box")
            await store.create_mailbox(A, "Box")
            new = _mail("betaword")
            assert await _deliver(store, "Box", new) == uid
            # In the indexer's order of events: the old message was queued (its bytes in
            # hand) and not yet taken when its mailbox was deleted; the new message's
            # text came in hand too (an APPEND writes it straight to the buffer).
            indexer = indexer_for(store)
            indexer.add([(A, "Box", uid)], (old, facts_from_bytes(old)))
            indexer.forget(A, "Box")  # what DELETE and RENAME do in IMAP and JMAP
            text = indexable(new, load_tree(facts_from_bytes(new)))
            assert text is not None
            indexer.write(A, "Box", {uid: text})
            await indexer.drain()
            await store._text_committer.submit(lambda conn: (None, []))  # FIFO: written
            maybe, unindexed = await store.text_candidates(A, "Box", ["alphaword"])
            assert (maybe, unindexed) == (set(), set())
            maybe, unindexed = await store.text_candidates(A, "Box", ["betaword"])
            assert (maybe, unindexed) == ({uid}, set())
        finally:
            await store.close()

    asyncio.run(main())


def test_search_body_after_delete_and_create_finds_only_the_new_mail(server: Server) -> None:
    box = unique("recreate")
    client = imap(server)
    try:
        for round_ in range(6):
            for word in ("alpha", "beta"):
                client.delete(box)
                assert client.create(box)[0] == "OK"
                for i in range(4):
                    body = f"{word}word{round_}x{i}\r\n"
                    assert client.append(box, None, None, message(body=body))[0] == "OK"
            assert client.select(box)[0] == "OK"
            typ, found = client.search(None, "BODY", f"betaword{round_}x")
            assert (typ, found) == ("OK", [b"1 2 3 4"]), round_
            typ, found = client.search(None, "BODY", f"alphaword{round_}x")
            assert (typ, found) == ("OK", [b""]), round_
            client.unselect()
    finally:
        client.logout()
