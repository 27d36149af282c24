"""Mail events into queued webhook calls, written durably before anyone is told.

* ``received`` (and ``delivered`` for a local recipient of an authenticated submission)
  is queued by local delivery right after the commit that filed the message and before
  the SMTP/LMTP reply: a crash in between leaves the sender without its 250, so it sends
  again and the call is queued then (at least once, never lost).
* ``delivered``, ``bounced`` and ``deferred`` of the outbound queue are queued before
  the queue records the outcome, as delay and failure notices are: a crash in between
  repeats the attempt and the call, never loses it.

A call's payload is its event's data; for ``received`` it names the stored copy, and
the sender expands it into the parsed message at each attempt (``payload.py``), so the
queue holds a few hundred bytes per call whatever the size of the mail.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from correo.config import Config, WebhookSettings
from correo.store.api import (
    Delivered,
    Envelope,
    MailStore,
    QueuedMessage,
    RecipientUpdate,
    WebhookCall,
)

__all__ = ["EVENTS", "QUEUE_DELIVERY", "WebhookEvents", "matches"]

EVENTS = ("delivered", "bounced", "deferred", "received")
#: Set by the queue runner in the task of its local deliveries: their ``delivered`` is
#: the queue's own outcome (:meth:`WebhookEvents.queue_outcome`), not reported twice.
QUEUE_DELIVERY: ContextVar[bool] = ContextVar("correo_queue_delivery", default=False)


def _norm(address: str) -> str:
    return address.strip().strip("<>").lower()


def matches(hook: WebhookSettings, account: str, address: str) -> bool:
    """Whether a copy for ``account``, sent to ``address``, triggers ``received``: an
    empty ``addresses`` takes every local recipient; otherwise the address as sent, the
    same without its +detail, or the account must be listed (aliases by the alias)."""
    if not hook.addresses:
        return True
    wanted = {_norm(a) for a in hook.addresses}
    rcpt = _norm(address)
    local, at, domain = rcpt.rpartition("@")
    base = f"{local.split('+', 1)[0]}{at}{domain}" if "+" in local[1:] else rcpt
    return bool({rcpt, base, _norm(account)} & wanted)


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookEvents:
    """The hooks local delivery and the queue runner call; ``config`` is read at each
    event, so a reload (SIGHUP) that changes ``[[webhooks]]`` applies to the next one."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: MailStore,
        *,
        wakeup: asyncio.Event | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.wakeup = wakeup
        self.clock = clock or time.time

    def _hooks(self, event: str) -> list[WebhookSettings]:
        return [h for h in self.config().webhooks if event in h.events]

    async def _add(self, calls: Sequence[WebhookCall]) -> None:
        if not calls:
            return
        await self.store.webhook_add(calls, self.clock())
        if self.wakeup is not None:
            self.wakeup.set()

    async def local_delivered(
        self,
        envelope: Envelope,
        recipients: Sequence[tuple[str, str]],
        delivered: Delivered,
    ) -> None:
        """After a local delivery committed: ``recipients`` are (account, address) of the
        copies it filed; ``delivered`` is reported for authenticated senders' mail."""
        received = self._hooks("received")
        own = envelope.authenticated is not None and not QUEUE_DELIVERY.get()
        sent = self._hooks("delivered") if own else []
        if not received and not sent:
            return
        copies: dict[str, tuple[str, int]] = {}
        for target, uid in delivered.uids:
            copies.setdefault(target.account, (target.mailbox, uid))
        uidvalidity: dict[tuple[str, str], int] = {}
        calls: list[WebhookCall] = []
        for hook in received:
            by_account: dict[str, list[str]] = {}
            for account, address in recipients:
                if account in copies and matches(hook, account, address):
                    by_account.setdefault(account, []).append(address)
            for account, addresses in by_account.items():
                mailbox, uid = copies[account]
                if (account, mailbox) not in uidvalidity:
                    state = await self.store.mailbox_state(account, mailbox)
                    uidvalidity[(account, mailbox)] = state.uidvalidity
                data = {
                    "account": account,
                    "mailbox": mailbox,
                    "uidvalidity": uidvalidity[(account, mailbox)],
                    "uid": uid,
                    "envelope": {"mail_from": envelope.sender, "rcpt_to": addresses},
                }
                calls.append(WebhookCall(str(uuid.uuid4()), hook.url, "received", _json(data)))
        for hook in sent:
            for account, address in recipients:
                if account not in copies:
                    continue
                data = {
                    "sender": envelope.sender,
                    "recipient": address,
                    "status": "2.0.0",
                    "diagnostic": f"delivered to the mailbox {copies[account][0]}",
                    "remote_mta": None,
                    "queue_id": None,
                    "attempts": 1,
                }
                calls.append(WebhookCall(str(uuid.uuid4()), hook.url, "delivered", _json(data)))
        await self._add(calls)

    async def queue_outcome(
        self, message: QueuedMessage, updates: Sequence[RecipientUpdate]
    ) -> None:
        """Before the queue records ``updates`` of one attempt at ``message``."""
        kinds = {"delivered": "delivered", "failed": "bounced", "queued": "deferred"}
        calls: list[WebhookCall] = []
        state = {r.address: r for r in message.recipients}
        for update in updates:
            event = kinds.get(update.status)
            if event is None or not update.counted:
                continue
            hooks = self._hooks(event)
            if not hooks:
                continue
            before = state.get(update.address)
            data: dict[str, Any] = {
                "sender": message.sender,
                "recipient": update.address,
                "queue_id": message.id,
                "envid": message.envid,
                "diagnostic": update.last_error,
                "attempts": (before.attempts if before is not None else 0) + 1,
                "queued_at": message.created,
            }
            if event == "deferred":
                data["next_attempt"] = update.next_attempt
            payload = _json(data)
            calls += [WebhookCall(str(uuid.uuid4()), h.url, event, payload) for h in hooks]
        await self._add(calls)
