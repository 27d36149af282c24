"""An https:// webhook endpoint: its certificate is verified (system CAs plus [outbound]
ca_file); one from an unknown CA is a failed attempt, retried later, never sent to."""

from __future__ import annotations

import asyncio
import io
import ssl
import time
from pathlib import Path

from aiohttp import web

from correo.config import Config, OutboundSettings, WebhookSettings
from correo.log import Logger
from correo.store.api import WebhookCall
from correo.store.sqlite import SqliteStore
from correo.webhooks.sender import WebhookSender
from tests.pki import TestCA


async def tls_receiver(ca: TestCA, folder: Path, seen: list[bytes]) -> tuple[web.AppRunner, int]:
    ca.issue("localhost", folder / "cert.pem", folder / "key.pem")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(folder / "cert.pem", folder / "key.pem")

    async def handle(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def test_https_endpoints_are_verified_against_the_configured_ca(tmp_path: Path) -> None:
    trusted, stranger = TestCA(tmp_path / "ca"), TestCA(tmp_path / "other")

    async def go() -> None:
        seen: list[bytes] = []
        good, good_port = await tls_receiver(trusted, tmp_path / "ca", seen)
        bad, bad_port = await tls_receiver(stranger, tmp_path / "other", seen)
        hooks = tuple(
            WebhookSettings(url=f"https://localhost:{port}/hook", events=("bounced",), timeout=10)
            for port in (good_port, bad_port)
        )
        config = Config(
            tmp_path,
            "localhost",
            {},
            outbound=OutboundSettings(ca_file=str(trusted.cert_path)),
            webhooks=hooks,
        )
        store = SqliteStore(tmp_path / "store", recover=True)
        await store.open()
        log = io.StringIO()
        sender = WebhookSender(lambda: config, store, Logger(log, "info"), base_url=lambda: "")
        try:
            calls = [WebhookCall(f"k{n}", h.url, "bounced", b"{}") for n, h in enumerate(hooks)]
            await store.webhook_add(calls, time.time())
            sender.start()
            deadline = time.monotonic() + 20
            left = None
            while left is None or left.attempts < 1:
                assert time.monotonic() < deadline, log.getvalue()
                await asyncio.sleep(0.05)
                queued = await store.webhook_list()  # the sent call is gone from it
                left = queued[0] if len(queued) == 1 else None
            assert len(seen) == 1  # the trusted endpoint only
            assert left.url == hooks[1].url and left.attempts == 1
            assert "certificate" in left.last_error.lower()
        finally:
            await sender.stop()
            await store.close()
            await good.cleanup()
            await bad.cleanup()

    asyncio.run(go())
