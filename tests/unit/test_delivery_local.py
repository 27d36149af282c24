"""LocalDelivery against a real store and directory (no sockets): Sieve actions,
junk verdicts, loop bounds, LMTP per-recipient deferral, implicit keep on failure."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

from correo.config import Config, JunkSettings
from correo.delivery.local import LocalDelivery, LocalRecipient
from correo.directory import SqliteDirectory
from correo.dns import FakeResolver
from correo.log import get_logger
from correo.store.api import INBOX, Envelope, StoreError
from correo.store.sqlite import SqliteStore

A, B = "alice@example.test", "bob@example.test"
MSG = (
    b"Return-Path: <dave@remote.test>\r\nReceived: from x\r\nX-Spam-Score: -99\r\n"
    b"From: dave@remote.test\r\nTo: alice@example.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@remote.test>\r\n\r\nBody text.\r\n"
)
SKIP = len(b"Return-Path: <dave@remote.test>\r\n")


def scenario(
    tmp_path: Path, body: Callable[[LocalDelivery, SqliteStore], Awaitable[None]], **junk: object
) -> None:
    async def go() -> None:
        store = SqliteStore(tmp_path / "store")
        await store.open()
        directory = SqliteDirectory(tmp_path / "directory.db")
        directory.add_domain("example.test")
        directory.add_user(A, "pw-alice-123")
        directory.add_user(B, "pw-bob-1234")
        config = Config(
            data_dir=tmp_path,
            hostname="mx.example.test",
            listen={},
            junk=dataclasses.replace(JunkSettings(), **junk),  # type: ignore[arg-type]
        )
        resolver = FakeResolver()
        resolver.add("1.0.0.127.zen.test", "A", "127.0.0.2")
        mda = LocalDelivery(config, store, directory, get_logger(), resolver=resolver)
        try:
            await body(mda, store)
        finally:
            directory.close()
            await store.close()

    asyncio.run(go())


async def send(
    mda: LocalDelivery,
    store: SqliteStore,
    rcpts: list[str],
    refusal: str = "all",
    data: bytes = MSG,
    peer: str = "127.0.0.1",
):  # type: ignore[no-untyped-def]
    spool = store.new_spool()
    spool.write(data)
    return await mda.deliver(
        spool,
        Envelope("dave@remote.test", peer=peer),
        [LocalRecipient(r.replace("+work", ""), r) for r in rcpts],
        queue_skip=SKIP,
        refusal=refusal,  # type: ignore[arg-type]
    )


async def body_of(store: SqliteStore, account: str, mailbox: str = INBOX) -> list[bytes]:
    out = []
    for info in await store.list_messages(account, mailbox):
        out.append(b"".join([c async for c in store.read_message(account, mailbox, info.uid)]))
    return out


def test_no_script_inbox_and_forged_spam_header_replaced(tmp_path: Path) -> None:
    async def body(mda: LocalDelivery, store: SqliteStore) -> None:
        report = await send(mda, store, [A])
        assert [o.code for o in report.outcomes] == [250]
        [stored] = await body_of(store, A)
        assert stored.startswith(b"Return-Path: <dave@remote.test>\r\nX-Spam-Score: 0.0\r\n")
        assert b"-99" not in stored

    scenario(tmp_path, body)


def test_dnsbl_verdict_files_into_junk_unless_sieve_keeps(tmp_path: Path) -> None:
    async def body(mda: LocalDelivery, store: SqliteStore) -> None:
        await send(mda, store, [A])
        assert len(await body_of(store, A, "Junk")) == 1
        script = (
            'require ["spamtest", "relational", "comparator-i;ascii-numeric"];\n'
            'if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { keep; }'
        )
        await store.sieve_put(B, "s", script)
        await store.sieve_activate(B, "s")
        await send(mda, store, [B])
        assert len(await body_of(store, B)) == 1  # explicit keep wins over the verdict

    scenario(tmp_path, body, dnsbl=("zen.test",), dnsbl_score=6.0)


def test_lmtp_mode_defers_one_recipient_and_refuses_another(tmp_path: Path) -> None:
    async def body(mda: LocalDelivery, store: SqliteStore) -> None:
        await store.sieve_put(B, "s", 'require "reject";\nreject "go away";')
        await store.sieve_activate(B, "s")
        original = store.sieve_active

        async def failing(account: str):  # type: ignore[no-untyped-def]
            if account == "carol@example.test":
                raise StoreError("disk on fire")
            return await original(account)

        store.sieve_active = failing  # type: ignore[method-assign]
        report = await send(mda, store, [A, B, "carol@example.test"], refusal="each")
        assert [o.code for o in report.outcomes] == [250, 550, 451]
        assert "go away" in report.outcomes[1].text
        assert len(await body_of(store, A)) == 1 and await body_of(store, B) == []

    scenario(tmp_path, body)


def test_smtp_mode_all_refuse_gives_one_reply(tmp_path: Path) -> None:
    async def body(mda: LocalDelivery, store: SqliteStore) -> None:
        await store.sieve_put(A, "s", 'require "ereject";\nereject "no thanks";')
        await store.sieve_activate(A, "s")
        report = await send(mda, store, [A])
        assert report.refused is not None and report.refused.code == 550
        assert await body_of(store, A) == []
        # With another recipient accepting, the refusal becomes a notice to the sender.
        report = await send(mda, store, [A, B])
        assert report.refused is None and len(await body_of(store, B)) == 1
        queue = await store.queue_list()
        assert any(r[0] == "dave@remote.test" for e in queue for r in e.recipients)

    scenario(tmp_path, body)


def test_redirect_loop_is_bounded(tmp_path: Path) -> None:
    async def body(mda: LocalDelivery, store: SqliteStore) -> None:
        await store.sieve_put(A, "s", 'redirect "elsewhere@remote.test";')
        await store.sieve_activate(A, "s")
        marks = b"".join(b"X-Correo-Redirected: %d x\r\n" % i for i in range(5))
        looped = MSG.replace(b"Received:", marks + b"Received:")
        await send(mda, store, [A], data=looped)
        assert len(await body_of(store, A)) == 1  # kept, not redirected again
        await send(mda, store, [A])
        [entry] = await store.queue_list()
        assert entry.recipients[0][0] == "elsewhere@remote.test"
        queued = b"".join([c async for c in store.queue_read(entry.id)])
        assert queued.startswith(b"X-Spam-Score") and b"X-Correo-Redirected: 1" in queued

    scenario(tmp_path, body)


def test_subaddress_and_broken_script_keep(tmp_path: Path) -> None:
    async def body(mda: LocalDelivery, store: SqliteStore) -> None:
        await store.create_mailbox(A, "work")
        await store.sieve_put(A, "s", "this is not sieve")
        await store.sieve_activate(A, "s")
        await send(mda, store, ["alice+work@example.test"])
        assert len(await body_of(store, A, "work")) == 1

    scenario(tmp_path, body)


def test_vacation_reply_queued_for_remote_sender_once(tmp_path: Path) -> None:
    async def body(mda: LocalDelivery, store: SqliteStore) -> None:
        await store.sieve_put(A, "s", 'require "vacation";\nvacation "Back soon.";')
        await store.sieve_activate(A, "s")
        await send(mda, store, [A])
        await send(mda, store, [A])
        entries = await store.queue_list()
        assert len(entries) == 1 and entries[0].sender == ""
        reply = b"".join([c async for c in store.queue_read(entries[0].id)])
        assert b"Subject: Auto: hello" in reply and b"In-Reply-To: <m1@remote.test>" in reply

    scenario(tmp_path, body)
