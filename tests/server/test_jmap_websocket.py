"""JMAP over WebSocket (RFC 8887) against a real server, with aiohttp's client: requests
and responses matched by id, push after an IMAP change, and the protocol's refusals."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.conftest import Server
from tests.server.imap_helpers import imap, message
from tests.server.jmap_helpers import USING, Jmap
from tests.server.push_helpers import basic

ALICE = "alice@example.test"


def _url(server: Server) -> str:
    return f"wss://127.0.0.1:{server.ports['https']}/jmap/ws/"


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 10)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    value: dict[str, Any] = json.loads(message.data)
    return value


async def _pushed(ws: aiohttp.ClientWebSocketResponse, account: str, state: str) -> dict[str, Any]:
    """The StateChange that announces ``state`` (the IMAP login's own may come first)."""
    pushed = await _receive(ws)
    while pushed["changed"][account].get("Email") != state:
        pushed = await _receive(ws)
    return pushed


def test_requests_and_push_over_one_websocket(server: Server) -> None:
    jmap = Jmap(server)
    capability = jmap.session["capabilities"]["urn:ietf:params:jmap:websocket"]
    assert capability["supportsPush"] is True and capability["url"].endswith("/jmap/ws/")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with (
            aiohttp.ClientSession(headers=basic(ALICE)) as http,
            http.ws_connect(_url(server), protocols=("jmap",), ssl=False) as ws,
        ):
            assert ws.protocol == "jmap"
            request = {
                "@type": "Request",
                "id": "r1",
                "using": USING,
                "methodCalls": [["Core/echo", {"ok": 1}, "c0"]],
            }
            await ws.send_str(json.dumps(request))
            answer = await _receive(ws)
            await ws.send_str(json.dumps({"@type": "Request", "id": "r2", "using": ["urn:x"],
                                          "methodCalls": []}))  # fmt: skip
            problem = await _receive(ws)
            await ws.send_str(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
            # The pusher starts from the state it reads after the enable, which says
            # nothing when it has; a change made before that is not pushed, so the
            # change is made again until one is, rather than after a fixed wait.
            for _ in range(5):
                box = imap(server)
                await asyncio.to_thread(
                    box.append, "INBOX", "", '"01-Jan-2024 10:00:00 +0000"', message("ws push")
                )
                box.logout()
                state = (await asyncio.to_thread(jmap.call, "Mailbox/get", ids=[]))["state"]
                try:
                    pushed = await asyncio.wait_for(_pushed(ws, jmap.account, state), 5)
                except TimeoutError:
                    continue
                return answer, problem, pushed
            raise AssertionError("no change was pushed")

    answer, problem, pushed = asyncio.run(scenario())
    assert answer["@type"] == "Response" and answer["requestId"] == "r1"
    assert answer["methodResponses"] == [["Core/echo", {"ok": 1}, "c0"]]
    assert problem["@type"] == "RequestError" and problem["requestId"] == "r2"
    assert problem["type"].endswith(":unknownCapability")
    assert pushed["@type"] == "StateChange" and jmap.account in pushed["changed"]
    assert pushed["changed"][jmap.account]["Email"] == jmap.call("Mailbox/get", ids=[])["state"]
    assert pushed["changed"][jmap.account]["Mailbox"] == pushed["changed"][jmap.account]["Email"]
    assert isinstance(pushed["pushState"], str) and pushed["pushState"]


def test_websocket_refusals(server: Server) -> None:
    async def scenario() -> tuple[int, int | None, int]:
        async with aiohttp.ClientSession(headers=basic(ALICE)) as http:
            try:  # RFC 8887 §4.2: without the jmap subprotocol there is no WebSocket
                async with http.ws_connect(_url(server), ssl=False):
                    no_protocol = 101
            except aiohttp.WSServerHandshakeError as exc:
                no_protocol = exc.status
            async with http.ws_connect(_url(server), protocols=("jmap",), ssl=False) as ws:
                await ws.send_bytes(b"\x00binary")  # JMAP messages are text frames
                closed = await asyncio.wait_for(ws.receive(), 10)
                code = ws.close_code if closed.type == aiohttp.WSMsgType.CLOSE else None
        async with aiohttp.ClientSession() as anonymous:
            try:
                async with anonymous.ws_connect(_url(server), protocols=("jmap",), ssl=False):
                    unauthenticated = 101
            except aiohttp.WSServerHandshakeError as exc:
                unauthenticated = exc.status
        return no_protocol, code, unauthenticated

    no_protocol, code, unauthenticated = asyncio.run(scenario())
    assert no_protocol == 400
    assert code == 1003
    assert unauthenticated == 401
