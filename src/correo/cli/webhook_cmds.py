"""Webhook calls in ``correo queue``: listed after the mail, named ``wN``.

``correo queue list`` shows queued webhook calls below the messages; ``show``,
``retry``, ``flush`` and ``delete`` take a call's ``wN`` where they take a message id.
A running server picks a retried call up at its next poll (about two seconds).
"""

from __future__ import annotations

import argparse
import json
import time

from correo.cli import admin
from correo.store.api import MailStore

__all__ = [
    "cmd_queue_delete",
    "cmd_queue_flush",
    "cmd_queue_list",
    "cmd_queue_show",
    "queue_ref",
]


def queue_ref(text: str) -> int | str:
    """A message id (``12``) or a webhook call (``w12``)."""
    if text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    rest = text[1:]
    if text[:1].lower() == "w" and rest.isascii() and rest.isdigit() and len(rest) < 19:
        return f"w{int(rest)}"
    raise argparse.ArgumentTypeError(f"{text!r} is neither a message id (12) nor a call (w12)")


def _call(ref: int | str | None) -> int | None:
    return int(ref[1:]) if isinstance(ref, str) else None


def _age(seconds: float) -> str:
    s = int(seconds)
    if abs(s) < 120:
        return f"{s}s"
    if abs(s) < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


def cmd_queue_list(args: argparse.Namespace) -> int:
    code = admin.cmd_queue_list(args)

    async def calls(store: MailStore) -> int:
        entries = await store.webhook_list()
        if not entries:
            print("Webhook queue is empty")
            return 0
        now = time.time()
        for e in entries:
            due = (
                "sending"
                if e.lease_until > now
                else f"next in {_age(max(0, e.next_attempt - now))}"
            )
            print(f"w{e.id:<9} webhook {e.event:<9} {_age(now - e.created):>6}  {e.url}")
            print(f"{'':28}attempts={e.attempts} {due}  id {e.key}")
            if e.last_error:
                print(f"{'':28}{e.last_error}")
        print(f"-- {len(entries)} webhook call(s)")
        return 0

    return code or admin._with_store(args, calls)


def cmd_queue_show(args: argparse.Namespace) -> int:
    call = _call(args.id)
    if call is None:
        return admin.cmd_queue_show(args)

    async def show(store: MailStore) -> int:
        e = await store.webhook_get(call)
        if e is None:
            raise admin.AdminError(f"no queued webhook call {args.id}")
        now = time.time()
        print(f"id: w{e.id}\nwebhook-id: {e.key}\nevent: {e.event}\nurl: {e.url}")
        print(f"age: {_age(now - e.created)}\nattempts: {e.attempts}")
        print(f"next attempt: in {_age(max(0, e.next_attempt - now))}")
        if e.last_error:
            print(f"last error: {e.last_error}")
        print("--")
        print(json.dumps(json.loads(e.payload), indent=1, ensure_ascii=False))
        return 0

    return admin._with_store(args, show)


def cmd_queue_flush(args: argparse.Namespace) -> int:
    """``flush [ID]`` and ``retry ID``: due now, mail or webhook calls."""
    if args.id is not None and _call(args.id) is None:
        return admin.cmd_queue_flush(args)
    call = _call(args.id)

    async def flush(store: MailStore) -> int:
        count = await store.webhook_retry(call, time.time())
        if call is not None and count == 0:
            raise admin.AdminError(f"no queued webhook call {args.id}")
        print(f"{count} webhook call(s) due now")
        return 0

    if args.id is None:  # everything: the mail first, then the calls
        admin.cmd_queue_flush(args)
    return admin._with_store(args, flush)


def cmd_queue_delete(args: argparse.Namespace) -> int:
    call = _call(args.id)
    if call is None:
        return admin.cmd_queue_delete(args)

    async def delete(store: MailStore) -> int:
        if not await store.webhook_delete(call):
            raise admin.AdminError(f"no queued webhook call {args.id}")
        print(f"deleted {args.id}")
        return 0

    return admin._with_store(args, delete)
