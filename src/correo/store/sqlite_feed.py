"""The SQLite store's account feed: changes of an account's state that no mailbox names.

Sieve scripts, quota limits and JMAP records (identities, submissions) change through
the server (ManageSieve, JMAP, the queue) and through the CLI, a process of its own.
Each such write adds a row ``(seq, account, node)`` to ``account_feed`` in its own
transaction and, after the commit, counts the account in :meth:`account_counter` and
wakes its waiters at once.  While anyone waits on an account, this process looks at the
newest ``seq`` ten times a second (one indexed read, no thread hop) and wakes the
accounts other processes wrote; the rows themselves say only *who* changed, the
waiters read *what* from the tables, so the newest 1,000 rows are enough (a look that
falls further behind wakes every waiter).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from correo.store.committer import AfterCommit

__all__ = ["FEED_SCHEMA", "FeedOps"]

FEED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS account_feed ("
    " seq INTEGER PRIMARY KEY, account TEXT NOT NULL, node TEXT NOT NULL)"
)
_KEEP = 1000  # newest rows kept
_LOOK_EVERY = 0.1  # seconds between looks while someone waits


class FeedOps:
    """Mixed into SqliteStore, which provides the helpers and state declared here."""

    if TYPE_CHECKING:
        _account_versions: dict[str, int]
        _account_waiters: dict[str, set[asyncio.Future[None]]]
        _loop: asyncio.AbstractEventLoop | None

        def _reader(self) -> sqlite3.Connection: ...

    _feed_node = ""  # this process's rows (made on first use)
    _feed_seen = -1  # the newest seq looked at; -1: not looked yet
    _feed_task: asyncio.Task[None] | None = None

    def _node(self) -> str:
        if not self._feed_node:
            self._feed_node = secrets.token_hex(6)
        return self._feed_node

    def _account_event(self, conn: sqlite3.Connection, account: str) -> AfterCommit:
        """Writer thread, inside a write: record that ``account`` changed; the returned
        action (after the commit) counts it and wakes this process's waiters."""
        conn.execute(FEED_SCHEMA)  # inside the batch: executescript would commit
        seq = conn.execute(
            "INSERT INTO account_feed (account, node) VALUES (?, ?)", (account, self._node())
        ).lastrowid
        if seq is not None and seq % 100 == 0:
            conn.execute("DELETE FROM account_feed WHERE seq <= ?", (seq - _KEEP,))
        loop = self._loop

        def action() -> None:
            self._account_versions[account] = self._account_versions.get(account, 0) + 1
            if loop is not None:
                loop.call_soon_threadsafe(self._wake_accounts, [account])

        return action

    def _wake_accounts(self, accounts: list[str]) -> None:
        for account in accounts:
            for future in self._account_waiters.pop(account, ()):
                if not future.done():
                    future.set_result(None)

    def _feed_top(self) -> int:
        try:
            row = self._reader().execute("SELECT max(seq) FROM account_feed").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0  # nothing written yet
            raise
        return int(row[0] or 0)

    def _feed_baseline(self) -> None:
        """Event loop, before the first count is handed out: the rows so far are old."""
        if self._feed_seen < 0:
            try:
                self._feed_seen = self._feed_top()
            except sqlite3.Error:
                self._feed_seen = 0

    def _feed_look(self) -> None:
        """Event loop: count and wake the accounts other processes wrote since the last look."""
        top = self._feed_top()
        seen = self._feed_seen
        if top <= seen:
            return
        rows = (
            self._reader()
            .execute(
                "SELECT seq, account, node FROM account_feed WHERE seq > ? ORDER BY seq LIMIT ?",
                (seen, _KEEP + 1),
            )
            .fetchall()
        )
        self._feed_seen = top
        if len(rows) > _KEEP or not rows or (seen > 0 and int(rows[0][0]) > seen + 1):
            accounts = set(self._account_waiters)  # fell behind: everyone looks again
        else:
            accounts = {str(a) for _, a, node in rows if node != self._feed_node}
        for account in accounts:
            self._account_versions[account] = self._account_versions.get(account, 0) + 1
        self._wake_accounts(sorted(accounts))

    def _feed_watch(self) -> None:
        """Event loop, when someone starts waiting: look now and then while anyone does."""
        if self._feed_task is None or self._feed_task.done():
            self._feed_task = asyncio.get_running_loop().create_task(
                self._feed_looking(), name="correo-sqlite-feed"
            )

    async def _feed_looking(self) -> None:
        self._feed_baseline()
        while self._account_waiters:
            await asyncio.sleep(_LOOK_EVERY)
            try:
                self._feed_look()
            except sqlite3.Error:
                pass  # the waiters time out and look at the store themselves

    def _feed_stop(self) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
            self._feed_task = None
