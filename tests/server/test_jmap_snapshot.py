"""The account snapshot JMAP keeps, brought up to date from each mailbox's changes (a
kept listing spliced where bisection finds the changed UIDs, the Emails and the kept
query orders patched from what came and went), equals one made afresh from the store:
over a real SQLite store, across deliveries out of date order, flag changes, expunges,
copies and moves between mailboxes, each checked after every step."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from correo.store.api import DeliveryTarget, Envelope, MailStore
from correo.store.sqlite import SqliteStore
from correo.web import jmap_mail
from correo.web.jmap_mail import ExpungeIndex, MailView, Snapshot

ACCOUNT = "a@x.test"
NEWEST = json.dumps([None, [{"property": "receivedAt", "isAscending": False}], False])
BY_SIZE = json.dumps([None, [{"property": "size", "isAscending": True}, {"property": "id"}], False])


def _message(n: int) -> bytes:
    return (
        f"From: s{n}@x.test\r\nTo: {ACCOUNT}\r\nSubject: message {n}\r\n"
        f"Message-ID: <{n}@x.test>\r\n\r\n" + "body " * (1 + n * 37 % 300) + "\r\n"
    ).encode()


async def _deliver(store: MailStore, n: int, box: str, when: float) -> None:
    spool = store.new_spool()
    spool.write(_message(n))
    await store.deliver(
        spool, Envelope("s@x.test"), [DeliveryTarget(ACCOUNT, box)], [], internal_date=when
    )


def _shape(snapshot: Snapshot) -> dict[str, list[tuple[Any, ...]]]:
    """Each Email's rows as (mailbox, UID, flags, MODSEQ, digest), in mailbox order."""
    return {
        digest: [
            (r.box.name, r.info.uid, tuple(sorted(r.info.flags)), r.info.modseq, r.digest)
            for r in email.rows
        ]
        for digest, email in snapshot.emails.items()
    }


def _sorted(snapshot: Snapshot, key: str) -> list[str]:
    emails = list(snapshot.emails.values())
    if key == NEWEST:
        emails.sort(key=lambda e: -e.first.info.internal_date)
        return [e.id for e in emails]
    return [e.id for e in sorted(emails, key=lambda e: (e.first.info.size, e.id))]


def _order_keys(snapshot: Snapshot, ids: list[str], key: str) -> list[Any]:
    first = {e.id: e.first.info for e in snapshot.emails.values()}
    if key == NEWEST:
        return [-first[i].internal_date for i in ids]
    return [(first[i].size, i) for i in ids]


async def _check(store: MailStore, index: ExpungeIndex) -> None:
    kept = await MailView(store, ACCOUNT, index).snapshot()
    fresh = await MailView(store, ACCOUNT, ExpungeIndex()).snapshot()
    assert kept.key == fresh.key
    assert _shape(kept) == _shape(fresh)
    for key in (NEWEST, BY_SIZE):
        ids = kept.order(key)
        if ids is None:  # sorted again (too many changes): the next query keeps it
            ids = _sorted(kept, key)
            kept.keep_order(key, ids)
        assert sorted(ids) == sorted(e.id for e in fresh.emails.values())
        keys = _order_keys(kept, ids, key)
        assert keys == sorted(keys)
        assert keys == _order_keys(fresh, _sorted(fresh, key), key)


async def _scenario(root: Path, used: dict[str, int]) -> None:
    store = SqliteStore(root, spool_memory=1024, recover=True)
    await store.open()
    try:
        await store.create_mailbox(ACCOUNT, "Archive")
        rng = random.Random(13)
        index = ExpungeIndex()
        for n in range(40):  # the first snapshot lists them all
            await _deliver(store, n, "INBOX", 1_700_000_000 + rng.randrange(10**6))
        await _check(store, index)  # keeps both orders, carried from here on
        assert (await MailView(store, ACCOUNT, index).snapshot()).order(NEWEST) is not None
        uids = [m.uid for m in await store.list_messages(ACCOUNT, "INBOX")]
        steps = 0
        for n in range(40, 70):
            step = n % 6
            if step == 0:  # a delivery out of date order
                await _deliver(store, n, "INBOX", 1_700_000_000 + rng.randrange(10**6))
            elif step == 1:  # flags
                await store.store_flags(ACCOUNT, "INBOX", rng.sample(uids, 3), "add", ["\\Seen"])
            elif step == 2:  # an expunge
                await store.expunge(ACCOUNT, "INBOX", [uids.pop(rng.randrange(len(uids)))])
            elif step == 3:  # a copy: the same Email in two mailboxes
                await store.copy_messages(ACCOUNT, "INBOX", [rng.choice(uids)], "Archive")
            elif step == 4:  # a move
                uid = uids.pop(rng.randrange(len(uids)))
                await store.copy_messages(ACCOUNT, "INBOX", [uid], "Archive", move=True)
            else:  # a delivery of the same octets again, and one to the other mailbox
                await _deliver(store, n - 5, "INBOX", 1_600_000_000 + n)
                await _deliver(store, n, "Archive", 1_700_000_000 + rng.randrange(10**6))
            uids = [m.uid for m in await store.list_messages(ACCOUNT, "INBOX")]
            await _check(store, index)
            steps += 1
        assert steps == 30
        assert used["spliced"] >= 30 and used["taken out"] >= 20, used  # the paths tried
        assert len((await MailView(store, ACCOUNT, index).snapshot()).emails) > 40
    finally:
        await store.close()


def test_kept_snapshot_equals_a_fresh_one_after_every_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = {"spliced": 0, "taken out": 0}
    splice, take_out = jmap_mail._splice, jmap_mail._take_out

    def counted_splice(*args: Any) -> Any:
        used["spliced"] += 1
        return splice(*args)

    def counted_take_out(*args: Any) -> Any:
        out = take_out(*args)
        used["taken out"] += out is not None
        return out

    monkeypatch.setattr(jmap_mail, "_splice", counted_splice)
    monkeypatch.setattr(jmap_mail, "_take_out", counted_take_out)
    asyncio.run(_scenario(tmp_path, used))
