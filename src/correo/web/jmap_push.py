"""JMAP push: Server-Sent Events (RFC 8620 §7.3) and JMAP over WebSocket (RFC 8887).

Both watch the account through :class:`StateWatcher`: the store's in-process change
counters are looked at twice a second (no I/O), and the account's state is read only
when they moved, or every 15 s for writers in other processes (the CLI, another node).
A client that stops reading is dropped after 30 s; the streams end when the server
shuts down.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web

from correo.jmap.core import RequestError, parse_request
from correo.server.context import ServerContext
from correo.store.api import StoreError
from correo.web.app import CTX, DEADLINE
from correo.web.jmap import (
    _KNOWN,
    BUSY,
    INDEX,
    LIMITS,
    STOPPING,
    _authenticate,
    _run,
    _session_state,
    _Slot,
    account_id,
)
from correo.web.jmap_mail import MailView

__all__ = ["StateWatcher", "eventsource", "websocket"]

_POLL = 0.5  # seconds between looks at the in-process change counters
_REFRESH = 15.0  # seconds between reads of the store (other processes' changes)
_SEND_TIMEOUT = 30.0
_TYPES = ("Email", "Mailbox", "Thread")


class StateWatcher:
    """The account's state, re-read when the store's change feed says it may differ."""

    def __init__(self, ctx: ServerContext, app: web.Application, account: str) -> None:
        self.ctx = ctx
        self.account = account
        self.view = MailView(ctx.store, account, app[INDEX])
        self.state = ""
        self._names: list[str] = []
        self._counters: tuple[int, ...] = ()
        self._last_read = 0.0

    async def start(self) -> str:
        await self._read()
        return self.state

    async def _read(self) -> None:
        self.view.forget()
        self.state = await self.view.state()
        self._names = [b.name for b in await self.view.boxes()]
        self._counters = self._count()
        self._last_read = asyncio.get_running_loop().time()

    def _count(self) -> tuple[int, ...]:
        return tuple(self.ctx.store.change_counter(self.account, n) for n in self._names)

    async def changed(self) -> bool:
        """Whether the state moved since the last look (which this one becomes)."""
        now = asyncio.get_running_loop().time()
        if self._count() == self._counters and now - self._last_read < _REFRESH:
            return False
        before = self.state
        await self._read()
        return self.state != before


def _change(ident: str, state: str, wanted: set[str]) -> dict[str, Any]:
    return {"@type": "StateChange", "changed": {ident: {t: state for t in _TYPES if t in wanted}}}


async def _pause(stopping: asyncio.Event) -> bool:
    """Wait one poll; True when the server is stopping."""
    try:
        await asyncio.wait_for(stopping.wait(), _POLL)
    except TimeoutError:
        return False
    return True


# -- EventSource (RFC 8620 §7.3) ------------------------------------------------------


async def eventsource(request: web.Request) -> web.StreamResponse:
    account = await _authenticate(request)
    app = request.app
    types = request.query.get("types", "*")
    wanted = set(_TYPES) if types == "*" else set(types.split(","))
    close_after = request.query.get("closeafter", "no") == "state"
    try:
        ping = int(request.query.get("ping", "0"))
    except ValueError:
        ping = 0
    ping = 0 if ping <= 0 else max(ping, 5)  # RFC 8620 §7.3: the server may raise it
    deadline = request.get(DEADLINE)
    if deadline is not None:
        deadline.reschedule(None)  # a push stream stays open; each write has a deadline
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    watcher = StateWatcher(app[CTX], app, account)
    await watcher.start()
    ident = account_id(account)
    loop = asyncio.get_running_loop()
    last_ping = loop.time()
    while not await _pause(app[STOPPING]):
        if await watcher.changed():
            if not await _event(response, "state", _change(ident, watcher.state, wanted)):
                break
            if close_after:
                break
        if ping and loop.time() - last_ping >= ping:
            last_ping = loop.time()
            if not await _event(response, "ping", {"@type": "Ping", "interval": ping}):
                break
    return response


async def _event(response: web.StreamResponse, event: str, data: dict[str, Any]) -> bool:
    """One event, or False when the client does not take it in time (or left)."""
    text = f"event: {event}\ndata: {json.dumps(data)}\n\n"
    try:
        async with asyncio.timeout(_SEND_TIMEOUT):
            await response.write(text.encode())
    except (TimeoutError, ConnectionError):
        return False
    return True


# -- WebSocket (RFC 8887) ---------------------------------------------------------------


async def websocket(request: web.Request) -> web.StreamResponse:
    account = await _authenticate(request)
    app = request.app
    ctx, limits = app[CTX], app[LIMITS]
    ws = web.WebSocketResponse(
        protocols=("jmap",),
        max_msg_size=limits.max_size_request,  # RFC 8887 §4.3: a message is one request
        heartbeat=60.0,
    )
    ready = ws.can_prepare(request)
    if not ready.ok or ready.protocol != "jmap":  # RFC 8887 §4.2: the "jmap" subprotocol
        raise web.HTTPBadRequest(text="a WebSocket with the jmap subprotocol is required\n")
    deadline = request.get(DEADLINE)
    if deadline is not None:
        deadline.reschedule(None)
    await ws.prepare(request)
    push: asyncio.Task[None] | None = None
    lock = asyncio.Lock()  # one frame at a time from the pusher and the answers

    async def send(value: dict[str, Any]) -> None:
        text = await asyncio.to_thread(json.dumps, value, ensure_ascii=False)
        async with lock, asyncio.timeout(_SEND_TIMEOUT):
            await ws.send_str(text)

    async def pushing(wanted: set[str], known: str | None) -> None:
        watcher = StateWatcher(ctx, app, account)
        state = await watcher.start()
        ident = account_id(account)
        try:
            if known is not None and known != state:  # RFC 8887 §4.3.5.2: catch up now
                await send({**_change(ident, state, wanted), "pushState": state})
            while not await _pause(app[STOPPING]):
                if await watcher.changed():
                    change = _change(ident, watcher.state, wanted)
                    await send({**change, "pushState": watcher.state})
        except (TimeoutError, ConnectionError, StoreError) as exc:  # a client gone or slow
            ctx.log.info("jmap.push_ended", user=account, error=type(exc).__name__)
            await ws.close()

    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                await ws.close(code=1003, message=b"JMAP frames are text")  # RFC 8887 §4.2
                break
            try:
                value = await asyncio.to_thread(json.loads, message.data)
            except (ValueError, RecursionError):
                await send(_problem(RequestError("notJSON", "not JSON"), None))
                continue
            kind = value.get("@type") if isinstance(value, dict) else None
            request_id = value.get("id") if isinstance(value, dict) else None
            if kind == "Request":
                try:
                    with _Slot(
                        app[BUSY], account, limits.max_concurrent_requests, "maxConcurrentRequests"
                    ):
                        parsed = parse_request(value, limits, _KNOWN)
                        answer = await _run(
                            ctx, app[INDEX], limits, account, parsed, peer=request.remote or ""
                        )
                except RequestError as exc:
                    await send(_problem(exc, request_id))
                    continue
                answer["@type"] = "Response"
                answer["sessionState"] = _session_state(account, limits)
                if isinstance(request_id, str):
                    answer["requestId"] = request_id  # RFC 8887 §4.3.3
                await send(answer)
            elif kind == "WebSocketPushEnable":  # RFC 8887 §4.3.5.2
                types = value.get("dataTypes")
                wanted = set(_TYPES) if types is None else {str(t) for t in types or ()}
                known = value.get("pushState")
                if push is not None:
                    push.cancel()
                push = asyncio.create_task(
                    pushing(wanted, known if isinstance(known, str) else None)
                )
            elif kind == "WebSocketPushDisable":  # RFC 8887 §4.3.5.3
                if push is not None:
                    push.cancel()
                    push = None
            else:
                await send(_problem(RequestError("notRequest", "unknown @type"), request_id))
    except (TimeoutError, ConnectionError):
        pass  # a client that does not take its answers, or left
    finally:
        if push is not None:
            push.cancel()
    await ws.close()
    return ws


def _problem(error: RequestError, request_id: object) -> dict[str, Any]:
    out = {"@type": "RequestError", **error.body()}  # RFC 8887 §4.3.4
    if isinstance(request_id, str):
        out["requestId"] = request_id
    return out
