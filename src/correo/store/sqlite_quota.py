"""Quotas of :class:`correo.store.sqlite.SqliteStore` (RFC 9208 STORAGE and MESSAGE).

Usage is kept by triggers on ``messages``, so every path that adds or removes a copy
(delivery, APPEND, COPY/MOVE, EXPUNGE, mailbox and account removal, restores and store
copies) keeps it exact without knowing of quotas.  Enforcement reads the usage inside
the write's own transaction: the writer thread (and SQLite's write lock, for other
processes) runs one write at a time, so two writes can never both pass a limit.

``quotas.storage`` and ``quotas.messages`` hold the account's own limits: NULL for the
server's default (``[delivery] quota``), -1 for none, else the limit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from correo.store.api import DeliveryTarget, QueuedRecipient, Quota, QuotaExceededError, QuotaLimit

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["QUOTA_SCHEMA", "QuotaOps", "prepare_quotas", "raw_limit"]

QUOTA_SCHEMA = """
CREATE TABLE IF NOT EXISTS quotas (
    account_id INTEGER PRIMARY KEY, storage INTEGER, messages INTEGER,
    used_storage INTEGER NOT NULL DEFAULT 0, used_messages INTEGER NOT NULL DEFAULT 0);
CREATE TRIGGER IF NOT EXISTS quota_add AFTER INSERT ON messages BEGIN
    INSERT INTO quotas (account_id, used_storage, used_messages)
    SELECT account_id, NEW.size, 1 FROM mailboxes WHERE id = NEW.mailbox_id
    ON CONFLICT (account_id) DO UPDATE SET
        used_storage = used_storage + excluded.used_storage, used_messages = used_messages + 1;
END;
CREATE TRIGGER IF NOT EXISTS quota_remove AFTER DELETE ON messages BEGIN
    UPDATE quotas SET used_storage = used_storage - OLD.size, used_messages = used_messages - 1
    WHERE account_id = (SELECT account_id FROM mailboxes WHERE id = OLD.mailbox_id);
END;
CREATE TRIGGER IF NOT EXISTS quota_forget AFTER DELETE ON accounts BEGIN
    DELETE FROM quotas WHERE account_id = OLD.id;
END;
"""


def prepare_quotas(conn: sqlite3.Connection) -> None:
    """Create the table and its triggers; a store made before them gets its usage
    counted once, in the same transaction, so no write slips between count and trigger."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        fresh = (
            conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='quotas'")
        ).fetchone() is None
        for statement in _statements(QUOTA_SCHEMA):
            conn.execute(statement)
        if fresh:
            conn.execute(
                "INSERT INTO quotas (account_id, used_storage, used_messages)"
                " SELECT x.account_id, coalesce(sum(m.size), 0), count(m.uid) FROM mailboxes x"
                " LEFT JOIN messages m ON m.mailbox_id = x.id GROUP BY x.account_id"
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """The script's statements (a trigger body holds semicolons of its own)."""
    out: list[str] = []
    current = ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current)
            current = ""
    return out


def raw_limit(value: QuotaLimit) -> int | None:
    """The stored form of a limit: NULL for the default, -1 for none."""
    if value == "default":
        return None
    if value is None:
        return -1
    if value < 0:
        raise ValueError("a quota limit is not negative")
    return int(value)


def effective(raw: int | None, default: int | None) -> tuple[int | None, bool]:
    """(limit, from the default) of a stored limit."""
    if raw is None:
        return default, True
    return (None if raw < 0 else int(raw)), False


class QuotaOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    _quota_default: tuple[int | None, int | None] = (None, None)
    _quota_observer: Callable[[str], None] | None = None

    if TYPE_CHECKING:
        _loop: asyncio.AbstractEventLoop | None

        def _reader(self) -> sqlite3.Connection: ...
        def _read_now(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _account_event(self, conn: sqlite3.Connection, account: str) -> AfterCommit: ...
        def _account_id(
            self, conn: sqlite3.Connection, account: str, create: bool
        ) -> int | None: ...

    def set_default_quota(self, storage: int | None, messages: int | None) -> None:
        self._quota_default = (storage, messages)

    def observe_quota(self, observer: Callable[[str], None] | None) -> None:
        self._quota_observer = observer

    def _quota_of(self, row: Sequence[Any] | None) -> Quota:
        raw_storage, raw_messages, used_storage, used_messages = (
            row if row is not None else (None, None, 0, 0)
        )
        storage, storage_default = effective(raw_storage, self._quota_default[0])
        messages, messages_default = effective(raw_messages, self._quota_default[1])
        return Quota(
            storage,
            messages,
            int(used_storage),
            int(used_messages),
            storage_default,
            messages_default,
        )

    _QUOTA_ROW = (
        "SELECT q.storage, q.messages, q.used_storage, q.used_messages FROM quotas q"
        " JOIN accounts a ON a.id = q.account_id WHERE a.name=?"
    )

    async def get_quota(self, account: str) -> Quota:
        def read() -> Quota:
            return self._quota_of(self._reader().execute(self._QUOTA_ROW, (account,)).fetchone())

        quota: Quota = self._read_now(read)
        return quota

    async def quota_refusal(self, account: str, size: int, count: int = 1) -> bool | None:
        """Always a fresh read: in process, it costs less than keeping a copy fresh."""
        return (await self.get_quota(account)).refusal(size, count)

    async def set_quota(self, account: str, storage: QuotaLimit, messages: QuotaLimit) -> Quota:
        values = (raw_limit(storage), raw_limit(messages))

        def op(conn: sqlite3.Connection) -> tuple[Quota, list[AfterCommit]]:
            account_id = self._account_id(conn, account, create=True)
            conn.execute(
                "INSERT INTO quotas (account_id, storage, messages) VALUES (?, ?, ?)"
                " ON CONFLICT (account_id) DO UPDATE SET storage=excluded.storage,"
                " messages=excluded.messages",
                (account_id, *values),
            )
            quota = self._quota_of(conn.execute(self._QUOTA_ROW, (account,)).fetchone())
            return quota, [self._account_event(conn, account)]

        quota: Quota = await self._write(op)
        return quota

    # -- inside writes (the writer thread) ------------------------------------------------

    def _quota_admit(
        self,
        conn: sqlite3.Connection,
        targets: Sequence[DeliveryTarget],
        size: int,
        fallback: Mapping[str, Sequence[QueuedRecipient]] | None,
    ) -> tuple[list[DeliveryTarget], dict[str, bool], list[str]]:
        """(targets to file, refused account -> permanent, accounts crossing 90 %).

        With ``fallback`` None the first refusal raises QuotaExceededError.
        """
        copies: dict[str, int] = {}
        for t in targets:
            if t.quota:
                copies[t.account] = copies.get(t.account, 0) + 1
        refused: dict[str, bool] = {}
        crossed: list[str] = []
        for account, count in copies.items():
            quota = self._quota_of(conn.execute(self._QUOTA_ROW, (account,)).fetchone())
            verdict = quota.refusal(size * count, count)
            if verdict is not None:  # permanent only when one copy alone is too large
                verdict = quota.refusal(size) is True
            else:
                if quota.crossed(size * count, count):
                    crossed.append(account)
                continue
            if fallback is None:
                raise QuotaExceededError(account, verdict)
            refused[account] = verdict
        kept = [t for t in targets if t.account not in refused or not t.quota]
        return kept, refused, crossed

    def _quota_added(self, conn: sqlite3.Connection, account: str, size: int, count: int) -> bool:
        """After a write added ``size`` octets in ``count`` messages (COPY): raise
        QuotaExceededError when the usage now passes a limit (the savepoint is rolled
        back); True when it crossed 90 %."""
        if count <= 0:
            return False
        quota = self._quota_of(conn.execute(self._QUOTA_ROW, (account,)).fetchone())
        before = Quota(
            quota.storage,
            quota.messages,
            quota.used_storage - size,
            quota.used_messages - count,
        )
        verdict = before.refusal(size, count)
        if verdict is not None:
            raise QuotaExceededError(account, verdict)
        return before.crossed(size, count)

    def _quota_warn_later(self, accounts: Sequence[str]) -> AfterCommit:
        """After the commit: tell the observer (on the event loop) of each crossing."""
        loop = self._loop
        observer = self._quota_observer

        def action() -> None:
            if observer is None or loop is None:
                return
            for account in accounts:
                loop.call_soon_threadsafe(observer, account)

        return action
