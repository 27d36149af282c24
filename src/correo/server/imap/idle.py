"""IDLE (RFC 2177): untagged updates pushed while the client waits, until DONE."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from correo.imap import commands as c
from correo.imap.responses import (
    untagged,
)
from correo.server.connection import QUIET
from correo.server.imap.acl import still_readable
from correo.server.imap.notify import deliver as notify_deliver
from correo.server.imap.notify import wait as notify_wait
from correo.store.api import (
    StoreError,
)

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["cmd_idle"]

_IDLE_POLL = 30.0  # seconds between change-feed checks while idle (wake-ups are pushed)
_IDLE_RETRY = 2.0  # seconds before an idle session looks again after a store failure


# -- IDLE ---------------------------------------------------------------------


class _Settle:
    """Settles the current wait of an idle session, whichever source comes first: one
    object per session, where a closure over the future cost three (function, cell,
    tuple) for the cycle collector to walk in each of ten thousand sessions."""

    __slots__ = ("wake",)

    def __init__(self, wake: asyncio.Future[None]) -> None:
        self.wake = wake

    def __call__(self, _f: object = None) -> None:
        if not self.wake.done():
            self.wake.set_result(None)


async def cmd_idle(session: ImapSession, tag: str, cmd: c.Idle) -> None:
    session.write(session.core.idle_started())
    session.idling = True
    answered = await _idle_updates(session)
    await session.conn.flush(session.write_timeout)
    session.busy = False
    loop = asyncio.get_running_loop()
    read_task: asyncio.Task[bytes] | None = None
    # One future per wait, settled by whatever comes first (the client's input, the
    # mailbox's watch, NOTIFY, the poll timer): no asyncio.wait and its sets per wake-up,
    # which ten thousand sessions woken by one delivery would each pay.
    wake: asyncio.Future[None] = loop.create_future()
    settle = _Settle(wake)
    try:
        while True:
            view = session.view
            if session.core.buffered or (session.deflate is not None and session.deflate.backlog):
                return  # input already received (DONE may be in it): the session's _loop sees it
            if session.deflate is not None:
                session.deflate.rest()  # RFC 4978: no compressor kept while idle
            if wake.done():
                wake = settle.wake = loop.create_future()
            if read_task is None:
                read_task = asyncio.create_task(session.conn.read(1800.0))
                read_task.add_done_callback(settle, context=QUIET)
            other: asyncio.Future[Any] | None = None
            if view is not None and not answered:  # the store failed: look again soon
                timer = loop.call_later(_IDLE_RETRY, settle, context=QUIET)
            else:
                timer = loop.call_later(_IDLE_POLL, settle, context=QUIET)
                if view is not None:
                    # one store wait per mailbox for all its idle sessions (imap/shared.py)
                    session.ctx.imap.wait_for_change(
                        session.ctx.store, view.account, view.name, session.seen_counter, wake
                    )
            if session.notify is not None:
                other = notify_wait(session)  # RFC 5465 §4: the same events in IDLE
                other.add_done_callback(settle, context=QUIET)
            try:
                await wake
            finally:
                timer.cancel()
                if other is not None:
                    other.remove_done_callback(settle)
                    if other.done() and not other.cancelled():
                        other.exception()  # a failed look is retried by _idle_updates
                    other.cancel()
            if read_task.done():
                try:
                    data = read_task.result()
                except TimeoutError:
                    data = b""
                read_task = None
                if data and session.deflate is not None:
                    data = session.deflate.inflate(data)
                    if not data:
                        continue  # an incomplete deflate block, not EOF: keep idling
                session.core.receive_data(data)
                if not data:
                    session.closing = True
                return  # the session's _loop picks up IdleDone (or the next command)
            if not await still_readable(session):  # RFC 4314: its rights were taken away
                session.write(untagged("BYE", "The mailbox is no longer shared"))
                session.closing = True
                return
            answered = await _idle_updates(session)
            await notify_deliver(session)
            await session.conn.flush(session.write_timeout)
            if session.shutdown_requested:
                session.write(untagged("BYE", "Server shutting down"))
                session.closing = True
                return
    finally:
        if read_task is not None:
            read_task.remove_done_callback(settle)
            read_task.cancel()


async def _idle_updates(session: ImapSession) -> bool:
    """:meth:`_updates` while idling; False when the store could not answer (its
    database restarting). The session stays in IDLE and looks again shortly, so it
    catches up on what changed meanwhile once the store is back."""
    try:
        await session._updates()
    except StoreError as exc:
        session.ctx.log.warning("imap.idle_store_failed", session=session.id, error=str(exc))
        return False
    return True
