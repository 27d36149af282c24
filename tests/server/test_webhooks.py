"""Webhooks end to end: a real server, real SMTP in, and an aiohttp receiver in the test.

The receiver fails the first attempts and then accepts; every attempt's signature is
checked as an application would (docs/webhooks.md), the ``received`` payload's bodies
and attachments are compared with what was sent, an attachment link is downloaded from
the https listener, and a pending call survives ``kill -9`` and keeps its id.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import signal
import smtplib
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from correo.webhooks.links import AttachmentRef, sign
from tests.conftest import PASSWORDS, Server, client_tls, correo, make_data_dir
from tests.server.cluster_helpers import CaptureMx

SECRET = "test-secret-1"
ALICE, BOB = "alice@example.test", "bob@example.test"
BIG = bytes(range(256)) * 40  # 10 KiB: above the inline limit, sent as a link
SMALL = b"tiny attachment\n"


@dataclass
class Call:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An aiohttp server on a free port in its own thread; answers 503 ``fail`` times."""

    fail: int = 0
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    def start(self) -> Receiver:
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            status = 503 if self.fail > 0 else 204
            self.fail -= 1
            self.calls.append(Call(dict(request.headers), body, status))
            return web.Response(status=status, text="try later" if status == 503 else None)

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/hook", handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        assert self._loop is not None and self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, predicate: Any, timeout: float = 20.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [c for c in list(self.calls) if predicate(c)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no such call; got {[c.headers for c in self.calls]}")


def accepted(event: str) -> Any:
    return lambda c: c.status == 204 and c.headers.get("Webhook-Event") == event


def verify(call: Call) -> None:
    """What a receiving application does: recompute the HMAC, compare in constant time."""
    h = call.headers
    signed = f"{h['Webhook-Id']}.{h['Webhook-Timestamp']}.".encode() + call.body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(h["Webhook-Signature"], expected)
    assert abs(time.time() - int(h["Webhook-Timestamp"])) < 300


def webhook_server(
    tmp_path: Path, receiver: Receiver, outbound: str = "", **keys: object
) -> Server:
    data = tmp_path / "data"
    make_data_dir(data)
    if outbound:
        with (data / "correo.toml").open("a") as fh:
            fh.write(f"\n[outbound]\n{outbound}\n")
    settings = {
        "url": receiver.url,
        "events": ["received", "delivered", "bounced", "deferred"],
        "secret": SECRET,
        "retry_initial": 0.3,
        "retry_max": 0.6,
        "inline_limit": 1000,
        **keys,
    }
    lines = ["", "[[webhooks]]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    with (data / "correo.toml").open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    return Server(data)


def sample_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@elsewhere.test>"
    msg["To"] = BOB
    msg["Subject"] = "Grüße with files"
    msg["Message-ID"] = "<hook-1@elsewhere.test>"
    msg.set_content("Plain body: día\n")
    msg.add_alternative("<p>HTML <b>body</b></p>\n", subtype="html")
    msg.add_attachment(SMALL, maintype="text", subtype="plain", filename="small.txt")
    msg.add_attachment(BIG, maintype="application", subtype="octet-stream", filename="big.bin")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def fetch(url: str, port: int) -> tuple[int, bytes, dict[str, str]]:
    """GET over TLS from the https listener on 127.0.0.1 (the link names localhost)."""
    parts = urlsplit(url)
    target = f"https://127.0.0.1:{port}{parts.path}"
    try:
        with urllib.request.urlopen(target, context=client_tls(), timeout=10) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def link_key(data: Path) -> bytes:
    with sqlite3.connect(data / "store" / "mail.db") as conn:
        return bytes(conn.execute("SELECT key FROM webhook_keys").fetchone()[0])


def test_received_payload_retries_signature_and_attachment_links(tmp_path: Path) -> None:
    receiver = Receiver(fail=2).start()
    server = webhook_server(tmp_path, receiver)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail("sender@elsewhere.test", [BOB], sample_message())
        (done,) = receiver.wait(accepted("received"))
        attempts = [c for c in receiver.calls if c.headers["Webhook-Event"] == "received"]
        assert [c.status for c in attempts] == [503, 503, 204]
        assert {c.headers["Webhook-Id"] for c in attempts} == {done.headers["Webhook-Id"]}
        assert [c.headers["Webhook-Attempt"] for c in attempts] == ["1", "2", "3"]
        for c in attempts:
            verify(c)
        assert server.wait_log("event=webhook.failed")
        assert server.wait_log("event=webhook.sent")

        doc = done.json
        assert doc["id"] == done.headers["Webhook-Id"] and doc["event"] == "received"
        data = doc["data"]
        assert data["envelope"] == {"mail_from": "sender@elsewhere.test", "rcpt_to": [BOB]}
        assert data["account"] == BOB and data["mailbox"] == "INBOX"
        message = data["message"]
        assert message["subject"] == "Grüße with files"
        assert message["message_id"] == "<hook-1@elsewhere.test>"
        assert ["subject", "Grüße with files"] in message["headers"]
        assert message["text"] == "Plain body: día\n"
        assert message["html"] == "<p>HTML <b>body</b></p>\n"
        small, big = message["attachments"]
        assert (small["filename"], small["content_type"]) == ("small.txt", "text/plain")
        assert base64.b64decode(small["content"]) == SMALL and "url" not in small
        assert (big["filename"], big["content_type"]) == ("big.bin", "application/octet-stream")
        assert "content" not in big and big["url_expires"] > time.time() + 3600

        status, body, headers = fetch(big["url"], server.ports["https"])
        assert (status, body) == (200, BIG)
        assert "attachment" in headers["Content-Disposition"]
        assert "sandbox" in headers["Content-Security-Policy"]
        # a changed token, and a well-signed one past its expiry, open nothing
        token = big["url"].rsplit("/", 1)[1]
        body_part, mac = token.rsplit(".", 1)
        forged = f"{body_part}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
        assert fetch(big["url"].replace(token, forged), server.ports["https"])[0] == 404
        account, mailbox, validity, uid, index, _ = json.loads(
            base64.urlsafe_b64decode(body_part + "=" * (-len(body_part) % 4))
        )
        key = link_key(server.data)

        def link(index: int, expires: float) -> str:
            token_ = sign(key, AttachmentRef(account, mailbox, validity, uid, index, expires))
            return str(big["url"]).replace(token, token_)

        assert fetch(link(index, time.time() - 1), server.ports["https"])[0] == 404  # expired
        assert fetch(link(index, time.time() + 60), server.ports["https"])[:2] == (200, BIG)
        assert fetch(link(7, time.time() + 60), server.ports["https"])[0] == 404  # no part 7
    finally:
        assert server.stop() == 0
        receiver.stop()


def test_delivered_and_bounced_from_submission_and_the_queue(tmp_path: Path) -> None:
    receiver = Receiver().start()
    server = webhook_server(tmp_path, receiver, events=["delivered", "bounced"])
    server.start()
    try:
        msg = b"From: alice@example.test\r\nSubject: out\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
            smtp.starttls(context=client_tls())
            smtp.login(ALICE, PASSWORDS[ALICE])
            smtp.sendmail(ALICE, [BOB, "nobody@nowhere.invalid"], msg)
        (delivered,) = receiver.wait(accepted("delivered"))
        (bounced,) = receiver.wait(accepted("bounced"))
        verify(delivered)
        verify(bounced)
        d, b = delivered.json["data"], bounced.json["data"]
        assert (d["sender"], d["recipient"], d["status"]) == (ALICE, BOB, "2.0.0")
        assert (b["sender"], b["recipient"]) == (ALICE, "nobody@nowhere.invalid")
        assert b["queue_id"] > 0 and b["diagnostic"]
        assert not [c for c in receiver.calls if c.headers["Webhook-Event"] == "received"]
    finally:
        assert server.stop() == 0
        receiver.stop()


def test_queue_reports_delivered_and_deferred(tmp_path: Path) -> None:
    mx = CaptureMx()
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    routes = [f"remote.test smtp:[127.0.0.1]:{mx.port}", f"down.test smtp:[127.0.0.1]:{closed}"]
    outbound = f"transport = {json.dumps(routes)}\nretry_initial = 3600.0"
    receiver = Receiver().start()
    server = webhook_server(tmp_path, receiver, outbound, events=["delivered", "deferred"])
    server.start()
    try:
        msg = b"From: alice@example.test\r\nSubject: out\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
            smtp.starttls(context=client_tls())
            smtp.login(ALICE, PASSWORDS[ALICE])
            smtp.sendmail(ALICE, ["one@remote.test", "two@down.test"], msg)
        (delivered,) = receiver.wait(accepted("delivered"))
        (deferred,) = receiver.wait(accepted("deferred"))
        verify(delivered)
        d, f = delivered.json["data"], deferred.json["data"]
        assert (d["recipient"], d["sender"], d["attempts"]) == ("one@remote.test", ALICE, 1)
        assert d["queue_id"] == f["queue_id"] and d["queue_id"] > 0
        assert d["diagnostic"].startswith("250")
        assert f["recipient"] == "two@down.test"
        assert f["next_attempt"] > time.time() + 3000 and f["diagnostic"]
        assert [len(m.recipients) for m in mx.delivered()] == [1]  # one@ only
    finally:
        assert server.stop() == 0
        receiver.stop()
        mx.close()


def test_pending_call_survives_kill_9_and_is_retried_from_the_queue(tmp_path: Path) -> None:
    receiver = Receiver(fail=1000).start()
    server = webhook_server(tmp_path, receiver, retry_initial=3600.0, retry_max=3600.0)
    server.start()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("sender@elsewhere.test", [BOB], sample_message())
    assert server.wait_log("event=webhook.failed", timeout=20)
    (first,) = receiver.calls
    key = first.headers["Webhook-Id"]
    listed = correo(server.data, "queue", "list")
    assert listed.returncode == 0, listed.stderr
    match = re.search(
        r"^(w\d+) +webhook received .*\n.*attempts=1 next in .*id (\S+)", listed.stdout, re.M
    )
    assert match is not None, listed.stdout
    call_id = match.group(1)
    assert match.group(2) == key
    assert "Mail queue is empty" in listed.stdout  # the mail itself was delivered
    shown = correo(server.data, "queue", "show", call_id)
    assert shown.returncode == 0 and f"webhook-id: {key}" in shown.stdout
    assert '"rcpt_to"' in shown.stdout

    server.kill()  # kill -9: the call is on disk, due in an hour
    receiver.fail = 0
    restarted = Server(server.data)
    restarted.start()
    try:
        retried = correo(restarted.data, "queue", "retry", call_id)
        assert retried.returncode == 0, retried.stderr
        assert "1 webhook call(s) due now" in retried.stdout
        (done,) = receiver.wait(accepted("received"))
        assert done.headers["Webhook-Id"] == key  # the same call, not a new one
        assert done.headers["Webhook-Attempt"] == "2"
        verify(done)
        assert done.json["data"]["message"]["text"] == "Plain body: día\n"
        assert restarted.wait_log("event=webhook.sent")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = correo(restarted.data, "queue", "list")
            if "Webhook queue is empty" in listed.stdout:
                break
            time.sleep(0.2)
        assert "Webhook queue is empty" in listed.stdout
        missing = correo(restarted.data, "queue", "delete", call_id)
        assert missing.returncode != 0 and "no queued webhook call" in missing.stderr
    finally:
        assert restarted.stop() == 0
        receiver.stop()


def test_queue_delete_removes_a_call(tmp_path: Path) -> None:
    receiver = Receiver(fail=1000).start()
    server = webhook_server(tmp_path, receiver, retry_initial=3600.0, retry_max=3600.0)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail("sender@elsewhere.test", [BOB], b"Subject: x\r\n\r\nbody\r\n")
        assert server.wait_log("event=webhook.failed", timeout=20)
        listed = correo(server.data, "queue", "list").stdout
        call_id = re.search(r"^(w\d+) ", listed, re.M).group(1)  # type: ignore[union-attr]
        deleted = correo(server.data, "queue", "delete", call_id)
        assert deleted.returncode == 0 and f"deleted {call_id}" in deleted.stdout
        assert "Webhook queue is empty" in correo(server.data, "queue", "list").stdout
        bad = correo(server.data, "queue", "retry", "x1")
        assert bad.returncode != 0 and "neither a message id" in bad.stderr
    finally:
        assert server.stop() == 0
        receiver.stop()


def test_webhooks_added_by_a_reload_apply_to_the_next_message(tmp_path: Path) -> None:
    receiver = Receiver().start()
    data = tmp_path / "data"
    make_data_dir(data)
    server = Server(data)
    server.start()
    try:
        settings = f'url = "{receiver.url}"\nevents = ["received"]\naddresses = ["{BOB}"]\n'
        with (data / "correo.toml").open("a") as fh:
            fh.write(f"\n[[webhooks]]\n{settings}")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        assert server.wait_log("event=server.reloaded")
        assert "key=webhooks" not in server.log()  # applied, not left for a restart
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail("sender@elsewhere.test", [ALICE], b"Subject: a\r\n\r\nnot watched\r\n")
            smtp.sendmail("sender@elsewhere.test", [BOB], b"Subject: b\r\n\r\nwatched\r\n")
        (call,) = receiver.wait(accepted("received"))
        assert call.json["data"]["envelope"]["rcpt_to"] == [BOB]
        assert "Webhook-Signature" not in call.headers  # no secret: unsigned
        assert server.wait_log("event=webhook.sent")
        assert len(receiver.calls) == 1  # alice is not among the addresses
    finally:
        assert server.stop() == 0
        receiver.stop()
