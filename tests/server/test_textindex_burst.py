"""The background indexer keeps up with a burst of deliveries on a busy loop.

Sessions acknowledge several messages per loop turn during an SMTP burst; an indexer
that extracts one message per turn falls behind, its bodies in hand run out and the
rest are read back from the store afterwards at several times the cost. It works in
slices instead, still yielding to the sessions, so the backlog at the end of the burst
stays a fraction of the burst, and every message is then indexed, on a real store.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from correo.delivery.facts import facts_from_bytes
from correo.delivery.textindex import index_delivered, indexer_for
from correo.store.api import Delivered, DeliveryTarget, Envelope, MessageFacts
from correo.store.sqlite import SqliteStore

ACCOUNT = "a@x.test"
TURNS = 80  # loop turns of the burst
PER_TURN = 5  # messages acknowledged in each
BUSY = 0.001  # seconds of session work in each turn


async def _deliver(store: SqliteStore, i: int) -> tuple[Delivered, bytes, MessageFacts]:
    data = (
        f"From: ann@y.test\r\nTo: {ACCOUNT}\r\nSubject: burst {i}\r\n\r\n"
        f"word{i}x alpha beta gamma alpha beta\r\n"
    ).encode()
    facts = facts_from_bytes(data)
    spool = store.new_spool()
    spool.write(data)
    delivered = await store.deliver(
        spool, Envelope(sender="s@y.test"), [DeliveryTarget(ACCOUNT)], facts=facts
    )
    return delivered, data, facts


def test_indexer_keeps_up_with_a_burst_on_a_busy_loop(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path)
        await store.open()
        try:
            await store.create_account(ACCOUNT)
            stored = await asyncio.gather(*(_deliver(store, i) for i in range(TURNS * PER_TURN)))
            indexer = indexer_for(store)
            for turn in range(TURNS):
                for delivered, data, facts in stored[turn * PER_TURN : (turn + 1) * PER_TURN]:
                    index_delivered(store, delivered, (data, facts))
                end = time.perf_counter() + BUSY
                while time.perf_counter() < end:  # the sessions' work of this turn
                    pass
                await asyncio.sleep(0)
            # one message a turn (the old pace) leaves at least TURNS * (PER_TURN - 1)
            # behind; slices do several a turn (5-75 left on a quiet machine, about 200
            # with the cores shared by a whole test run)
            backlog = len(indexer.pending)
            assert backlog < TURNS * (PER_TURN - 1), backlog
            await indexer.drain()
            await store._text_committer.submit(lambda conn: (None, []))  # FIFO: written
            uids = {d.uids[0][1] for d, _, _ in stored}
            maybe, unindexed = await store.text_candidates(ACCOUNT, "INBOX", ["alpha"])
            assert unindexed == set() and maybe == uids
            maybe, _ = await store.text_candidates(ACCOUNT, "INBOX", ["word7x"])
            assert maybe == {stored[7][0].uids[0][1]}
        finally:
            await store.close()

    asyncio.run(main())
