"""The background indexer forgets exactly a deleted or renamed mailbox's queued texts.

``forget`` takes the mailbox and those below it (the store's ``/`` hierarchy), never a
sibling that only shares the name's beginning nor another account's mailbox of the same
name: those are still indexed, on a real store.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from correo.delivery.facts import facts_from_bytes
from correo.delivery.textindex import indexer_for
from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore

A = "a@x.test"
B = "b@x.test"


async def _deliver(store: SqliteStore, account: str, box: str, word: str) -> int:
    data = f"From: ann@y.test\r\nTo: {account}\r\nSubject: s\r\n\r\n{word}\r\n".encode()
    spool = store.new_spool()
    spool.write(data)
    delivered = await store.deliver(
        spool,
        Envelope(sender="s@y.test"),
        [DeliveryTarget(account, box)],
        facts=facts_from_bytes(data),
    )
    return delivered.uids[0][1]


def test_forget_drops_the_mailbox_and_those_below_only(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path)
        await store.open()
        try:
            boxes = [(A, "Box"), (A, "Box/Sub"), (A, "Boxer"), (B, "Box")]
            for account in (A, B):
                await store.create_account(account)
            for account, box in boxes:
                await store.create_mailbox(account, box)
            targets = [
                (account, box, await _deliver(store, account, box, "gammaword"))
                for account, box in boxes
            ]
            indexer = indexer_for(store)
            for target in targets:
                indexer.add([target])
            indexer.forget(A, "Box")
            kept = [t for t in targets if t[:2] in {(A, "Boxer"), (B, "Box")}]
            assert [t in indexer.pending for t in targets] == [t in kept for t in targets]
            assert len(indexer.pending) == len(kept)
            await indexer.drain()
            await store._text_committer.submit(lambda conn: (None, []))  # FIFO: written
            for account, box, uid in targets:
                maybe, unindexed = await store.text_candidates(account, box, ["gammaword"])
                assert uid in maybe, (account, box)
                # forgotten: left unindexed, for the search-time backfill
                assert (uid in unindexed) == ((account, box, uid) not in kept), (account, box)
            assert len(indexer.pending) == 0
        finally:
            await store.close()

    asyncio.run(main())
