"""JMAP push: Server-Sent Events (RFC 8620 §7.3) and JMAP over WebSocket (RFC 8887).

Every stream of an account joins one :class:`_Watch` of it (:class:`PushHub`): one task
waits on the store's account feed (:meth:`MailStore.wait_for_account`: mail, Sieve
scripts, quota limits, identities and submissions, whoever wrote them — ManageSieve, the
CLI, the queue, another node) and looks at the mailboxes' change counters and this
process's JMAP writes twice a second (no I/O); it reads the states of every type the
account has when any of them moved, and every 15 s regardless, for a change whose
notice was lost (a node that died between its commit and its NOTIFY).  A thousand
streams cost one read per change, and each stream only waits on an event.  A
StateChange names the types whose state moved.  A client that stops reading is dropped
after 30 s; the streams end when the server shuts down.
"""

from __future__ import annotations

import asyncio
import hashlib
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
    decode_json,
    encode_json,
)
from correo.web.jmap_mail import ExpungeIndex, MailView
from correo.web.jmap_quota import quota_state
from correo.web.jmap_sieve import sieve_state
from correo.web.jmap_submission import record_state
from correo.web.jmap_vacation import vacation_state

__all__ = ["HUB", "TYPES", "PushHub", "eventsource", "websocket"]

_POLL = 0.5  # seconds between looks at the in-process change counters
_REFRESH = 15.0  # seconds between reads of the store (a lost notice of a change)
_GAP = 0.05  # seconds at least between two reads (a burst of commits is one read)
_SEND_TIMEOUT = 30.0
_MAIL = ("Mailbox", "Email", "Thread")
# Every type an account has (RFC 8620 §7.1, RFC 8621 §1.5, RFC 9425, RFC 9661)
TYPES = (*_MAIL, "EmailDelivery", "Identity", "EmailSubmission", "VacationResponse",
         "Quota", "SieveScript")  # fmt: skip
_MAX_PING = 3600  # seconds: the longest ping interval granted (RFC 8620 §7.3)


class _Watch:
    """One account's states, read by one task for every push stream of the account.

    The task wakes at once on the store's account feed; the mailboxes' counters and the
    JMAP writes of this process are looked at twice a second (no I/O); the states are
    read when any moved, or every 15 s.
    """

    def __init__(self, ctx: ServerContext, index: ExpungeIndex, account: str) -> None:
        self.ctx = ctx
        self.index = index
        self.account = account
        self.view = MailView(ctx.store, account, index)
        self.states: dict[str, str] = {}
        self.users = 0
        self.task: asyncio.Task[None] | None = None
        self.first: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        self._names: list[str] = []
        self._counters: tuple[int, ...] = ()

    def _count(self) -> tuple[int, ...]:
        store = self.ctx.store
        mail = tuple(store.change_counter(self.account, n) for n in self._names)
        generation = self.index.generations.get(self.account, 0)
        return (store.account_counter(self.account), generation, *mail)

    async def read(self) -> None:
        """Every type's state now (one read of each, shared by all the streams)."""
        store, account = self.ctx.store, self.account
        counters = self._count()
        self.view.forget()
        boxes = await self.view.boxes()
        mail = await self.view.state()
        deliveries = hashlib.sha256(
            repr(sorted((b.status.uidvalidity, b.status.uidnext) for b in boxes)).encode()
        ).hexdigest()[:16]
        states = dict.fromkeys(_MAIL, mail)
        states["EmailDelivery"] = "d" + deliveries  # moves when a message arrives (§1.5)
        states["Identity"] = await record_state(store, account, "identity")
        states["EmailSubmission"] = await record_state(store, account, "submission")
        states["VacationResponse"] = await vacation_state(store, account)
        states["Quota"] = await quota_state(store, account)
        states["SieveScript"] = await sieve_state(store, account)
        names = [b.name for b in boxes]
        if names != self._names:  # counters of other mailboxes: look from now on
            self._names = names
            counters = self._count()
        self._counters = counters
        if states != self.states:
            self.states = states
            woken, self._woken = self._woken, asyncio.Event()
            woken.set()

    async def run(self) -> None:
        """Until cancelled (the last stream left, or the server stops: :class:`PushHub`)."""
        loop = asyncio.get_running_loop()
        store = self.ctx.store
        last = loop.time()
        while True:
            # the account feed wakes at once; the other counters are looked at each _POLL
            await store.wait_for_account(self.account, self._counters[0], _POLL)
            now = loop.time()
            if self._count() == self._counters and now - last < _REFRESH:
                continue
            if now - last < _GAP:
                await asyncio.sleep(last + _GAP - now)
            last = loop.time()
            try:
                await self.read()
            except StoreError as exc:
                self.ctx.log.info("jmap.push_read_failed", user=self.account, error=str(exc))
                await asyncio.sleep(_POLL)  # the counters still differ: not at once again

    async def wait(self, states: dict[str, str], timeout: float | None) -> None:
        """Until the states differ from ``states`` (or ``timeout``, or the server stops)."""
        if self.states != states:
            return
        woken = self._woken
        try:
            async with asyncio.timeout(timeout):
                await woken.wait()
        except TimeoutError:
            pass


class PushHub:
    """The watched accounts of one server: a stream joins its account's watch."""

    def __init__(self, ctx: ServerContext, index: ExpungeIndex, stopping: asyncio.Event):
        self.ctx = ctx
        self.index = index
        self.stopping = stopping
        self._watches: dict[str, _Watch] = {}
        self._ender: asyncio.Task[None] | None = None

    async def _end(self) -> None:
        """When the server stops: every watch stops and wakes its streams (they end)."""
        await self.stopping.wait()
        for watch in list(self._watches.values()):
            if watch.task is not None:
                watch.task.cancel()
            watch._woken.set()

    async def join(self, account: str) -> _Watch:
        while True:  # a watch its last stream left while this one waited is not taken
            watch = self._watches.get(account)
            if watch is None:
                watch = self._watches[account] = _Watch(self.ctx, self.index, account)
                watch.first = asyncio.get_running_loop().create_task(watch.read())
            assert watch.first is not None
            try:
                await asyncio.shield(watch.first)
            except StoreError:
                if self._watches.get(account) is watch:
                    del self._watches[account]
                raise
            if self._watches.get(account) is watch:
                break
        watch.users += 1
        loop = asyncio.get_running_loop()
        if self._ender is None:
            self._ender = loop.create_task(self._end())
        if watch.task is None:
            watch.task = loop.create_task(watch.run())
        return watch

    def leave(self, watch: _Watch) -> None:
        watch.users -= 1
        if watch.users <= 0:
            if self._watches.get(watch.account) is watch:
                del self._watches[watch.account]
            if watch.task is not None:
                watch.task.cancel()


HUB = web.AppKey("jmap_push_hub", PushHub)


def _change(ident: str, states: dict[str, str], wanted: set[str]) -> dict[str, Any]:
    """A StateChange (RFC 8620 §7.1) of the ``wanted`` types in ``states``."""
    changed = {t: s for t, s in states.items() if t in wanted}
    return {"@type": "StateChange", "changed": {ident: changed}}


def _differ(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    return {t: s for t, s in new.items() if old.get(t) != s}


def push_state(states: dict[str, str]) -> str:
    """One token for every type's state (RFC 8887 §4.3.5.1 pushState)."""
    return hashlib.sha256(repr(sorted(states.items())).encode()).hexdigest()[:24]


# -- EventSource (RFC 8620 §7.3) ------------------------------------------------------


async def eventsource(request: web.Request) -> web.StreamResponse:
    account = await _authenticate(request)
    app = request.app
    types = request.query.get("types", "*")
    wanted = set(TYPES) if types == "*" else set(types.split(","))
    close_after = request.query.get("closeafter", "no") == "state"
    try:
        ping = int(request.query.get("ping", "0"))
    except ValueError:
        ping = 0
    # RFC 8620 §7.3: the server may move it into its own range (a 400-digit one made
    # the first wait's deadline an OverflowError)
    ping = 0 if ping <= 0 else min(max(ping, 5), _MAX_PING)
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
    hub = app[HUB]
    watch = await hub.join(account)
    ident = account_id(account)
    loop = asyncio.get_running_loop()
    last_ping = loop.time()
    sent = watch.states
    try:
        while not app[STOPPING].is_set():
            await watch.wait(sent, None if not ping else last_ping + ping - loop.time())
            if app[STOPPING].is_set():
                break
            fresh, sent = _differ(sent, watch.states), watch.states
            if any(t in wanted for t in fresh):
                if not await _event(response, "state", _change(ident, fresh, wanted)):
                    break
                if close_after:
                    break
            if ping and loop.time() - last_ping >= ping:
                last_ping = loop.time()
                if not await _event(response, "ping", {"@type": "Ping", "interval": ping}):
                    break
    finally:
        hub.leave(watch)
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

    async def send(value: dict[str, Any], octets: int = 0) -> None:
        text = (await encode_json(value, octets)).decode()
        async with lock, asyncio.timeout(_SEND_TIMEOUT):
            await ws.send_str(text)

    async def pushing(wanted: set[str], known: str | None) -> None:
        hub = app[HUB]
        watch = await hub.join(account)
        ident = account_id(account)
        sent = watch.states
        try:
            if known is not None and known != push_state(sent):  # RFC 8887 §4.3.5.2
                await send({**_change(ident, sent, wanted), "pushState": push_state(sent)})
            while not app[STOPPING].is_set():
                await watch.wait(sent, None)
                if app[STOPPING].is_set():
                    break
                fresh, sent = _differ(sent, watch.states), watch.states
                if any(t in wanted for t in fresh):
                    await send({**_change(ident, fresh, wanted), "pushState": push_state(sent)})
        except (TimeoutError, ConnectionError) as exc:  # a client gone or slow
            ctx.log.info("jmap.push_ended", user=account, error=type(exc).__name__)
            await ws.close()
        finally:
            hub.leave(watch)

    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                await ws.close(code=1003, message=b"JMAP frames are text")  # RFC 8887 §4.2
                break
            try:
                value = await decode_json(message.data)
            except RequestError as exc:
                await send(_problem(exc, None))
                continue
            kind = value.get("@type") if isinstance(value, dict) else None
            request_id = value.get("id") if isinstance(value, dict) else None
            if kind == "Request":
                try:
                    with _Slot(
                        app[BUSY], account, limits.max_concurrent_requests, "maxConcurrentRequests"
                    ):
                        parsed = parse_request(value, limits, _KNOWN)
                        octets: list[int] = []
                        answer = await _run(
                            ctx,
                            app[INDEX],
                            limits,
                            account,
                            parsed,
                            peer=request.remote or "",
                            octets=octets,
                        )
                except RequestError as exc:
                    await send(_problem(exc, request_id))
                    continue
                answer["@type"] = "Response"
                answer["sessionState"] = _session_state(account, limits)
                if isinstance(request_id, str):
                    answer["requestId"] = request_id  # RFC 8887 §4.3.3
                await send(answer, sum(octets))
            elif kind == "WebSocketPushEnable":  # RFC 8887 §4.3.5.2
                types = value.get("dataTypes")
                if types is not None and not isinstance(types, list):  # String[]|null
                    # a number or a bool here raised out of the loop and ended the socket
                    problem = RequestError("notRequest", "dataTypes is a list or null")
                    await send(_problem(problem, request_id))
                    continue
                wanted = set(TYPES) if types is None else {str(t) for t in types}
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
