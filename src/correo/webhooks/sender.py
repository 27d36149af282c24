"""Makes the queued webhook calls: POST, retry with backoff, give up after ``give_up``.

Each attempt takes the call under a lease (:meth:`MailStore.webhook_due`), so on
PostgreSQL one node makes it; a 2xx answer removes it, anything else (a refused
connection, a timeout, a 5xx, a redirect) counts a failure and sets the next attempt
``retry_initial`` x 2^n seconds later, at most ``retry_max``, until ``give_up`` seconds
after the event, when the call is dropped with a ``webhook.expired`` line.  Every
attempt carries the same ``Webhook-Id`` (the idempotency id) and, with a ``secret``, a
``Webhook-Signature``: HMAC-SHA256 over ``id.timestamp.body`` (docs/webhooks.md).

aiohttp's client with a deadline per attempt and the answer read up to 64 KiB; the
payload of a ``received`` call is read and parsed in bounded pieces, off the loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from correo import __version__
from correo.config import Config, WebhookSettings
from correo.log import Logger
from correo.store.api import MailStore, StoreError, WebhookEntry
from correo.webhooks.links import PATH, AttachmentRef, sign
from correo.webhooks.payload import message_payload

__all__ = ["MAX_ANSWER", "WebhookSender", "backoff", "listener_url", "signature"]

MAX_ANSWER = 64 * 1024  # bytes of an answer read (the rest is not waited for)
_MAX_INFLIGHT = 20


def backoff(hook: WebhookSettings, failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones (1, 2, …)."""
    return float(min(hook.retry_max, hook.retry_initial * 2 ** min(failures - 1, 40)))


def listener_url(hostname: str, bound: dict[str, list[tuple[str, int]]]) -> str:
    """``https://HOSTNAME[:PORT]`` of the first https listener, or "" when there is none."""
    https = bound.get("https")
    if not https:
        return ""
    port = https[0][1]
    return f"https://{hostname}" + ("" if port == 443 else f":{port}")


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The ``Webhook-Signature`` value: ``sha256=`` and the hex HMAC of id.timestamp.body."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class WebhookSender:
    """``start()``/``stop()`` from the server; ``wakeup`` is set when a call is queued."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: MailStore,
        log: Logger,
        *,
        base_url: Callable[[], str],
        wakeup: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
        poll: float = 2.0,
    ) -> None:
        self.config = config
        self.store = store
        self.log = log
        self.base_url = base_url  # https://HOST:PORT of the https listener, or ""
        self.wakeup = wakeup or asyncio.Event()
        self.clock = clock
        self.poll = poll
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._main: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._key: bytes | None = None
        self._stopping = False

    def start(self) -> None:
        tls = ssl.create_default_context()  # https:// endpoints: verified, TLS 1.2+
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        config = self.config()
        if config.outbound.ca_file:  # a private CA, as for the outbound MTA
            tls.load_verify_locations(str(config.path(config.outbound.ca_file)))
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=_MAX_INFLIGHT, ssl=tls),
            headers={"User-Agent": f"correo/{__version__}"},
        )
        self._main = asyncio.create_task(self._loop(), name="webhook-sender")

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        if self._main is not None:
            self._main.cancel()
            await asyncio.gather(self._main, return_exceptions=True)
        tasks = list(self._inflight.values())
        if tasks:  # an answer on its way is worth a moment; the lease covers the rest
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _loop(self) -> None:
        first = True  # at start, take this node's calls an earlier run left leased
        while not self._stopping:
            next_due: float | None = None
            try:
                if self.config().webhooks:  # none configured: calls wait for a reload
                    next_due = await self.store.webhook_next_due()
                    if first or (next_due is not None and next_due <= self.clock()):
                        await self._fill()  # a write (the lease): only when one is due
                        next_due = await self.store.webhook_next_due()
                        first = False
            except (StoreError, OSError) as exc:
                self.log.error("webhook.store_error", error=str(exc))
            delay = self.poll
            now = self.clock()
            if next_due is not None and next_due > now:
                delay = min(delay, next_due - now)
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), max(0.01, delay))
            except TimeoutError:
                pass

    async def _fill(self) -> None:
        room = _MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        hooks = self.config().webhooks
        lease = 2 * max((h.timeout for h in hooks), default=30.0) + 60.0
        due = await self.store.webhook_due(self.clock(), room, list(self._inflight), lease)
        for entry in due:
            if entry.id in self._inflight:
                continue
            task = asyncio.create_task(self._attempt(entry), name=f"webhook-{entry.id}")
            self._inflight[entry.id] = task
            task.add_done_callback(functools.partial(self._finished, entry.id))

    def _finished(self, webhook_id: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(webhook_id, None)
        self.wakeup.set()

    # -- one attempt -------------------------------------------------------------------

    async def _attempt(self, entry: WebhookEntry) -> None:
        hook = next((h for h in self.config().webhooks if h.url == entry.url), None)
        try:
            if hook is None:  # removed from [[webhooks]] since: nobody wants it now
                await self.store.webhook_delete(entry.id)
                self.log.warning(
                    "webhook.dropped", id=f"w{entry.id}", url=entry.url, reason="not configured"
                )
                return
            try:
                error = await self._post(entry, hook)
            except (StoreError, OSError, asyncio.CancelledError):
                raise
            except Exception as exc:  # a bug: counted as a failed attempt, so it ends
                self.log.error("webhook.crashed", id=f"w{entry.id}", error=repr(exc)[:300])
                error = "internal error preparing the call"
            if error is None:
                await self.store.webhook_done(entry.id)
                return
            failures = entry.attempts + 1
            wait = backoff(hook, failures)
            now = self.clock()
            if now + wait > entry.created + hook.give_up:
                await self.store.webhook_delete(entry.id)
                self.log.warning(
                    "webhook.expired",
                    id=f"w{entry.id}",
                    key=entry.key,
                    kind=entry.event,
                    url=entry.url,
                    attempts=failures,
                    error=error,
                )
                return
            await self.store.webhook_failed(entry.id, now + wait, error)
            self.log.info(
                "webhook.failed",
                id=f"w{entry.id}",
                key=entry.key,
                kind=entry.event,
                url=entry.url,
                attempts=failures,
                error=error,
                retry_in=round(wait, 1),
            )
        except (StoreError, OSError) as exc:  # the lease runs out; another attempt follows
            self.log.error("webhook.store_error", id=f"w{entry.id}", error=str(exc))

    async def _post(self, entry: WebhookEntry, hook: WebhookSettings) -> str | None:
        """One POST; None when answered 2xx, else why it failed."""
        assert self._http is not None
        body = await self._body(entry, hook)
        stamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "Webhook-Id": entry.key,
            "Webhook-Timestamp": stamp,
            "Webhook-Event": entry.event,
            "Webhook-Attempt": str(entry.attempts + 1),
        }
        if hook.secret:
            headers["Webhook-Signature"] = signature(hook.secret, entry.key, stamp, body)
        started = time.monotonic()
        try:
            async with (
                asyncio.timeout(hook.timeout),
                self._http.post(
                    entry.url, data=body, headers=headers, allow_redirects=False
                ) as answer,
            ):
                text = await _read_capped(answer)
                status = answer.status
        except TimeoutError:
            return f"no answer within {hook.timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        ms = round((time.monotonic() - started) * 1000)
        if 200 <= status < 300:
            self.log.info(
                "webhook.sent",
                id=f"w{entry.id}",
                key=entry.key,
                kind=entry.event,
                url=entry.url,
                status=status,
                attempts=entry.attempts + 1,
                ms=ms,
            )
            return None
        snippet = text[:200].decode("utf-8", "replace").replace("\n", " ").strip()
        return f"HTTP {status}{': ' + snippet if snippet else ''}"

    async def _body(self, entry: WebhookEntry, hook: WebhookSettings) -> bytes:
        data: dict[str, Any] = json.loads(entry.payload)
        if entry.event == "received":
            data["message"] = await self._message(data, hook)
        document = {
            "id": entry.key,
            "event": entry.event,
            "created": datetime.fromtimestamp(entry.created, UTC).isoformat(),
            "data": data,
        }
        if entry.event != "received":
            return json.dumps(document, ensure_ascii=False).encode()
        return await asyncio.to_thread(lambda: json.dumps(document, ensure_ascii=False).encode())

    async def _message(self, data: dict[str, Any], hook: WebhookSettings) -> dict[str, Any] | None:
        """The parsed message, or None when it is no longer stored where it was filed."""
        account, mailbox = str(data["account"]), str(data["mailbox"])
        uid, uidvalidity = int(data["uid"]), int(data["uidvalidity"])
        try:
            state = await self.store.mailbox_state(account, mailbox)
        except StoreError:
            return None
        if state.uidvalidity != uidvalidity:
            return None
        if self._key is None:
            self._key = await self.store.webhook_key()
        key, base = self._key, (hook.files_url or self.base_url()).rstrip("/")
        expires = self.clock() + hook.link_expiry

        def link(index: int) -> tuple[str | None, float]:
            if not base:
                return None, 0.0
            ref = AttachmentRef(account, mailbox, uidvalidity, uid, index, expires)
            return f"{base}{PATH}{sign(key, ref)}", expires

        try:
            return await message_payload(self.store, account, mailbox, uid, hook, link)
        except StoreError:
            return None


async def _read_capped(answer: aiohttp.ClientResponse) -> bytes:
    """Up to :data:`MAX_ANSWER` bytes of the answer; what follows is not waited for."""
    data = bytearray()
    async for chunk in answer.content.iter_chunked(16384):
        data += chunk
        if len(data) >= MAX_ANSWER:
            break
    return bytes(data[:MAX_ANSWER])
