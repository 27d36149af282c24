"""The PostgreSQL store's change feed: in-process wake-ups and LISTEN/NOTIFY across nodes.

A commit wakes this process's waiters at once and queues its mailbox ids for one
``NOTIFY correo_changes`` that other nodes' listeners receive.  The notification only
carries ids ("node:1,2,3"), or the name of an account whose other state changed
("node@account": Sieve scripts, quota limits, JMAP records, which the CLI and other
nodes change too); waiters read the changes themselves from the tables, so a
lost notification (a listener reconnecting, a node that died after its commit) loses
nothing: sessions still look now and then, and a listener that reconnects wakes every
waiter to catch up.

Notifications are sent after the commit, on a connection of their own with
``synchronous_commit`` off: a NOTIFY inside the mail transaction would take PostgreSQL's
global notification lock through the commit's WAL flush, serialising every commit of the
cluster.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from typing import Any, Final

import psycopg

__all__ = ["CHANNEL", "ChangeFeed"]

CHANNEL: Final = "correo_changes"
_MAX_PAYLOAD: Final = 7000  # bytes; PostgreSQL's limit is 8000
_MAX_IDS: Final = 100_000  # remembered mailbox id -> name pairs (bounded memory)
_PROBE_EVERY: Final = 30.0  # seconds of silence before the listener checks its connection

Key = tuple[str, str]


class ChangeFeed:
    """Waiters by (account, mailbox); commit counters; the cross-node channel."""

    def __init__(self, url: str, *, listen: bool = True) -> None:
        self.url = url
        self.node = secrets.token_hex(6)
        self.listen = listen
        self.versions: dict[Key, int] = {}
        self.waiters: dict[Key, set[asyncio.Future[None]]] = {}
        self.account_versions: dict[str, int] = {}  # NOTIFY: any change of the account
        self.account_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._keys: dict[int, Key] = {}
        self._pending: set[int] = set()
        self._pending_accounts: set[str] = set()
        self._sender: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._send_conn: psycopg.AsyncConnection[Any] | None = None
        self._closed = False
        self.listening = asyncio.Event()
        #: Told of every account whose mail changed (None: any account may have).
        self.on_change: Callable[[str | None], None] | None = None
        #: Told of every account another node announced a change of (None: any may
        #: have changed unheard): the body cache's mailbox names are forgotten.
        self.on_remote: Callable[[str | None], None] | None = None

    async def start(self) -> None:
        if self.listen:
            self._listener = asyncio.create_task(self._listen(), name="correo-pg-listen")

    async def close(self) -> None:
        self._closed = True
        if self._sender is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._sender), 2.0)
            except (TimeoutError, Exception):
                self._sender.cancel()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._send_conn is not None:
            await self._send_conn.close()
            self._send_conn = None

    def remember(self, mailbox_id: int, key: Key) -> None:
        """Learn which mailbox an id names, so notifications about it reach its waiters."""
        if len(self._keys) >= _MAX_IDS and mailbox_id not in self._keys:
            self._keys.clear()  # re-learnt from the next lookups
        self._keys[mailbox_id] = key

    def committed(self, touched: Iterable[tuple[int, Key]]) -> None:
        """After a local commit: count it, wake local waiters, tell the other nodes."""
        keys = []
        for mailbox_id, key in touched:
            self.remember(mailbox_id, key)
            self._pending.add(mailbox_id)
            keys.append(key)
        self._bump(keys)
        self._start_sending()

    def account_committed(self, account: str) -> None:
        """After a local commit of the account's state that no mailbox id names (Sieve
        scripts, quota limits, records): wake local waiters and tell the other nodes."""
        self.account_changed(account)
        self._pending_accounts.add(account)
        self._start_sending()

    def _start_sending(self) -> None:
        pending = self._pending or self._pending_accounts
        if pending and not self._closed and (self._sender is None or self._sender.done()):
            self._sender = asyncio.create_task(self._send(), name="correo-pg-notify")

    def _bump(self, keys: Iterable[Key]) -> None:
        accounts = set()
        for key in keys:
            self.versions[key] = self.versions.get(key, 0) + 1
            accounts.add(key[0])
            for future in self.waiters.pop(key, ()):
                if not future.done():
                    future.set_result(None)
        for account in accounts:
            self.account_changed(account)

    def account_changed(self, account: str) -> None:
        """A change of the account this node made and no mailbox id names (a
        subscription): counted and woken here; other nodes see it when they look."""
        self.account_versions[account] = self.account_versions.get(account, 0) + 1
        if self.on_change is not None:
            self.on_change(account)
        for future in self.account_waiters.pop(account, ()):
            if not future.done():
                future.set_result(None)

    def wake_all(self) -> None:
        """Every waiter looks again (after the listener lost notifications)."""
        if self.on_remote is not None:
            self.on_remote(None)
        if self.on_change is not None:
            self.on_change(None)
        self._bump(list(self.waiters))
        for account in list(self.account_waiters):
            self.account_changed(account)

    # -- across nodes ---------------------------------------------------------------

    async def _send(self) -> None:
        while self._pending or self._pending_accounts:
            ids, self._pending = sorted(self._pending), set()
            accounts, self._pending_accounts = sorted(self._pending_accounts), set()
            payloads: list[str] = []
            text = ""
            for mailbox_id in ids:
                piece = str(mailbox_id)
                if text and len(text) + len(piece) + 1 > _MAX_PAYLOAD:
                    payloads.append(text)
                    text = ""
                text = f"{text},{piece}" if text else piece
            if text:
                payloads.append(f"{self.node}:{text}")
            # One notification per account: a name is short (an address, 254 octets)
            payloads += [f"{self.node}@{a}" for a in accounts if len(a.encode()) < _MAX_PAYLOAD]
            try:
                conn = await self._sender_connection()
                for payload in payloads:
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except (psycopg.Error, OSError):
                # Best effort: the other nodes' sessions poll and catch up anyway.
                if self._send_conn is not None:
                    await self._send_conn.close()
                    self._send_conn = None
                return

    async def _sender_connection(self) -> psycopg.AsyncConnection[Any]:
        if self._send_conn is None or self._send_conn.closed:
            self._send_conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, options="-c synchronous_commit=off"
            )
        return self._send_conn

    async def _listen(self) -> None:
        delay = 0.2
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            except (psycopg.Error, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                delay = 0.2
                self.listening.set()
                self.wake_all()  # anything committed while we were not listening
                while not self._closed:
                    async for note in conn.notifies(timeout=_PROBE_EVERY):
                        self._received(note.payload)
                    # A quiet channel, or a dead peer? A database host gone without
                    # closing the socket is noticed here, and the loop reconnects.
                    await asyncio.wait_for(conn.execute("SELECT 1"), _PROBE_EVERY)
            except (psycopg.Error, OSError):
                self.listening.clear()
                await asyncio.sleep(delay)
            finally:
                await conn.close()

    def _received(self, payload: str) -> None:
        node, _, ids = payload.partition(":")
        if "@" in node:  # "node@account": the account's other state changed
            node, _, account = payload.partition("@")
            if node != self.node and account:
                if self.on_remote is not None:
                    self.on_remote(account)
                self.account_changed(account)
            return
        if node == self.node:
            return  # our own commit: already counted and woken
        keys = []
        for piece in ids.split(","):
            if piece.isdigit():
                key = self._keys.get(int(piece))
                if key is not None:
                    keys.append(key)
        if self.on_remote is not None:
            for account in {key[0] for key in keys}:
                self.on_remote(account)
        self._bump(keys)
