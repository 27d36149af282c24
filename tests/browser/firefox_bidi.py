"""Debian's Firefox ESR for Playwright: a stand-in for the browser binary that starts
``firefox-esr`` and sits between Playwright and Firefox's WebDriver BiDi endpoint.

Playwright drives an unmodified Firefox over WebDriver BiDi (its ``moz-firefox``
channel), but at every new context it sends ``emulation.setMediaFeaturesOverride``, a
command younger than the ESR in Debian, which refuses it and with it the context. The
tests emulate no media feature, so this relay answers that one command with success
itself and passes every other message through unchanged, both ways.

Run as ``python firefox_bidi.py FIREFOX-ARGS...`` (``CORREO_FIREFOX`` names the binary,
``/usr/bin/firefox-esr`` by default); it prints the line Playwright waits for with its
own address.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import sys

import aiohttp
from aiohttp import web

FIREFOX = os.environ.get("CORREO_FIREFOX", "/usr/bin/firefox-esr")
ANSWERED = {"emulation.setMediaFeaturesOverride"}  # unknown to the ESR; nothing to emulate
_LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


async def _relay(upstream_base: str, request: web.Request) -> web.WebSocketResponse:
    client = web.WebSocketResponse(max_msg_size=0)
    await client.prepare(request)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(upstream_base + request.path, max_msg_size=0) as upstream,
    ):

        async def down() -> None:
            async for message in upstream:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                await client.send_str(message.data)
            await client.close()

        task = asyncio.create_task(down())
        async for message in client:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            command = json.loads(message.data)
            if command.get("method") in ANSWERED:
                answer = {"type": "success", "id": command.get("id"), "result": {}}
                await client.send_str(json.dumps(answer))
                continue
            await upstream.send_str(message.data)
        task.cancel()
    return client


async def main(args: list[str]) -> int:
    firefox = await asyncio.create_subprocess_exec(
        FIREFOX, *args, stderr=asyncio.subprocess.PIPE, stdout=None
    )
    assert firefox.stderr is not None
    runner: web.AppRunner | None = None
    while line := await firefox.stderr.readline():
        text = line.decode(errors="replace")
        found = _LISTENING.search(text)
        if found is None or runner is not None:
            sys.stderr.write(text)
            sys.stderr.flush()
            continue
        upstream = found.group(1).rstrip("/")
        app = web.Application()
        app.router.add_get("/{tail:.*}", functools.partial(_relay, upstream))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sys.stderr.write(f"WebDriver BiDi listening on ws://127.0.0.1:{port}\n")
        sys.stderr.flush()
    code = await firefox.wait()
    if runner is not None:
        await runner.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
