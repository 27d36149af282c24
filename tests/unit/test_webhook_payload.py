"""The ``received`` payload from a stored message, the signed links, address matching and
the retry schedule: in process, against a real SQLite store."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import time
from email.message import EmailMessage
from pathlib import Path

from correo.config import Config, WebhookSettings
from correo.delivery.facts import facts_from_bytes
from correo.log import Logger
from correo.store.api import DeliveryTarget, Envelope, WebhookCall
from correo.store.sqlite import SqliteStore
from correo.webhooks.events import matches
from correo.webhooks.links import AttachmentRef, sign, verify
from correo.webhooks.payload import message_payload
from correo.webhooks.sender import WebhookSender, backoff, signature

ACCOUNT = "bob@example.test"


def crlf(msg: EmailMessage) -> bytes:
    return msg.as_bytes().replace(b"\n", b"\r\n")


def stored(tmp_path: Path, data: bytes, *, facts: bool = True) -> tuple[SqliteStore, int]:
    async def go() -> tuple[SqliteStore, int]:
        store = SqliteStore(tmp_path / "store", recover=True)
        await store.open()
        spool = store.new_spool()
        spool.write(data)
        done = await store.deliver(
            spool,
            Envelope("s@x.test"),
            [DeliveryTarget(ACCOUNT)],
            facts=facts_from_bytes(data) if facts else None,
        )
        return store, done.uids[0][1]

    return asyncio.run(go())


def payload(store: SqliteStore, uid: int, hook: WebhookSettings) -> dict[str, object]:
    links: list[int] = []

    def link(index: int) -> tuple[str | None, float]:
        links.append(index)
        return f"https://h/{index}", 99.0

    async def go() -> dict[str, object]:
        try:
            return await message_payload(store, ACCOUNT, "INBOX", uid, hook, link)
        finally:
            await store.close()

    return asyncio.run(go())


def test_bodies_are_cut_at_text_limit_and_inline_attachments_share_one_budget(
    tmp_path: Path,
) -> None:
    msg = EmailMessage()
    msg["Subject"] = "=?utf-8?q?caf=C3=A9?="
    msg.set_content("é" * 5000)
    msg.add_alternative("<p>" + "x" * 5000 + "</p>", subtype="html")
    for n in range(3):
        msg.add_attachment(
            b"%d" % n * 600, maintype="application", subtype="x-test", filename=f"{n}.bin"
        )
    forwarded = EmailMessage()
    forwarded["Subject"] = "inner"
    forwarded.set_content("inner body")
    msg.add_attachment(forwarded)
    store, uid = stored(tmp_path, crlf(msg))
    hook = WebhookSettings(
        url="http://x/", events=("received",), text_limit=1024, inline_limit=1300
    )
    out = payload(store, uid, hook)
    assert out["subject"] == "café"
    assert out["text"] == "é" * 1024 and out["text_truncated"] is True
    assert isinstance(out["html"], str) and len(out["html"]) == 1024 and out["html_truncated"]
    attachments = out["attachments"]
    assert isinstance(attachments, list) and len(attachments) == 4
    first, second, third, inner = attachments
    assert base64.b64decode(first["content"]) == b"0" * 600
    assert base64.b64decode(second["content"]) == b"1" * 600
    assert "content" not in third and third["url"] == "https://h/2"  # over the budget
    assert inner["content_type"] == "message/rfc822"  # a forwarded message is one part
    assert inner["url"] == "https://h/3"  # larger than the 100 bytes left


def test_a_message_stored_without_facts_is_parsed_again(tmp_path: Path) -> None:
    msg = EmailMessage()
    msg["Subject"] = "plain"
    msg.set_content("just text\n")
    store, uid = stored(tmp_path, crlf(msg), facts=False)
    out = payload(store, uid, WebhookSettings(url="http://x/", events=("received",)))
    assert out["text"] == "just text\n" and out["html"] is None and out["attachments"] == []


def test_a_deleted_message_is_sent_as_null(tmp_path: Path) -> None:
    msg = EmailMessage()
    msg.set_content("gone soon\n")
    store, uid = stored(tmp_path, crlf(msg))
    hook = WebhookSettings(url="http://x/", events=("received",))

    async def go() -> dict[str, object] | None:
        try:
            state = await store.mailbox_state(ACCOUNT, "INBOX")
            data = {"account": ACCOUNT, "mailbox": "INBOX", "uid": uid}
            config = Config(tmp_path, "localhost", {})
            sender = WebhookSender(lambda: config, store, Logger(), base_url=lambda: "")
            present = await sender._message({**data, "uidvalidity": state.uidvalidity}, hook)
            assert present is not None and present["text"] == "gone soon\n"
            replaced = await sender._message({**data, "uidvalidity": state.uidvalidity + 1}, hook)
            assert replaced is None
            await store.expunge(ACCOUNT, "INBOX", [uid])
            return await sender._message({**data, "uidvalidity": state.uidvalidity}, hook)
        finally:
            await store.close()

    assert asyncio.run(go()) is None


def test_links_are_bound_to_their_key_fields_and_expiry() -> None:
    key = b"k" * 32
    ref = AttachmentRef("bob@example.test", "INBOX", 7, 42, 1, time.time() + 60)
    token = sign(key, ref)
    got = verify(key, token, time.time())
    assert got is not None and got.expires == int(ref.expires)
    assert (got.account, got.mailbox, got.uidvalidity, got.uid, got.index) == (
        "bob@example.test",
        "INBOX",
        7,
        42,
        1,
    )
    assert verify(b"x" * 32, token, time.time()) is None  # another store's key
    assert verify(key, token, ref.expires + 1) is None  # expired
    mac = token.rsplit(".", 1)[1]
    other = sign(key, AttachmentRef("eve@example.test", "INBOX", 7, 42, 1, ref.expires))
    assert verify(key, f"{other.rsplit('.', 1)[0]}.{mac}", time.time()) is None
    assert verify(key, "a" * 5000, time.time()) is None
    assert verify(key, "not-a-token", time.time()) is None


def test_address_matching_and_the_retry_schedule() -> None:
    hook = WebhookSettings(url="http://x/", events=("received",), addresses=("Sales@Example.test",))
    assert matches(hook, "ann@example.test", "sales@example.test")
    assert matches(hook, "ann@example.test", "SALES+eu@example.test")
    assert matches(hook, "sales@example.test", "info@example.test")  # the account itself
    assert not matches(hook, "ann@example.test", "ann@example.test")
    assert matches(WebhookSettings(url="http://x/", events=("received",)), "a@b.test", "a@b.test")
    steps = [
        backoff(WebhookSettings(retry_initial=30.0, retry_max=3600.0), n) for n in range(1, 10)
    ]
    assert steps == [30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]
    expected = hmac.new(b"s", b"id.1.{}", hashlib.sha256).hexdigest()
    assert signature("s", "id", "1", b"{}") == "sha256=" + expected


def test_a_call_that_cannot_be_prepared_counts_as_a_failed_attempt(tmp_path: Path) -> None:
    """A bug or a damaged row must end (give_up), not hold its lease for ever."""
    hook = WebhookSettings(url="http://127.0.0.1:9/x", events=("received",), retry_initial=600.0)
    config = Config(tmp_path, "localhost", {}, webhooks=(hook,))

    async def go() -> None:
        store = SqliteStore(tmp_path / "store", recover=True)
        await store.open()
        log = io.StringIO()
        sender = WebhookSender(lambda: config, store, Logger(log, "info"), base_url=lambda: "")
        try:
            await store.webhook_add([WebhookCall("k", hook.url, "received", b"{oops")], time.time())
            sender.start()
            deadline = time.monotonic() + 10
            while "event=webhook.failed" not in log.getvalue():
                assert time.monotonic() < deadline, log.getvalue()
                await asyncio.sleep(0.02)
            assert "event=webhook.crashed" in log.getvalue()
            (entry,) = await store.webhook_list()
            assert entry.attempts == 1 and entry.last_error == "internal error preparing the call"
            assert entry.next_attempt > time.time() + 500
        finally:
            await sender.stop()
            await store.close()

    asyncio.run(go())
