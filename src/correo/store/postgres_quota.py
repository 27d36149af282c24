"""Quotas of the PostgreSQL store (RFC 9208 STORAGE and MESSAGE), safe across nodes.

As in the embedded store (``sqlite_quota.py``), usage is kept by triggers on
``messages`` — here statement-level ones over transition tables, so a bulk EXPUNGE or a
mailbox removal updates each account's row once — and every path that adds or removes a
copy keeps it exact.  Enforcement locks the account's ``quotas`` row (``FOR UPDATE``)
in the writing transaction before reading the usage: a second writer, on this node or
another, waits for the first to commit and then reads what it left, so two writers
never both pass a limit.  The trigger's update of the same row needs no further lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from correo.store.api import (
    DeliveryTarget,
    QueuedRecipient,
    Quota,
    QuotaExceededError,
    QuotaLimit,
)
from correo.store.postgres_base import Conn, PgBase, Row
from correo.store.sqlite_quota import effective, raw_limit

if TYPE_CHECKING:
    from correo.store.postgres_commit import PgAfterCommit

__all__ = ["QUOTA_MIGRATION", "PgQuotaOps"]

#: The table, the triggers that keep usage, and the usage of mail stored before them.
QUOTA_MIGRATION: Final = """
CREATE TABLE quotas (
    account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    storage bigint, messages bigint,
    used_storage bigint NOT NULL DEFAULT 0, used_messages bigint NOT NULL DEFAULT 0);
CREATE FUNCTION quota_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO quotas AS q (account_id, used_storage, used_messages)
        SELECT x.account_id, sum(n.size), count(*) FROM quota_new n
        JOIN mailboxes x ON x.id = n.mailbox_id GROUP BY x.account_id ORDER BY x.account_id
        ON CONFLICT (account_id) DO UPDATE SET
            used_storage = q.used_storage + EXCLUDED.used_storage,
            used_messages = q.used_messages + EXCLUDED.used_messages;
    ELSE
        UPDATE quotas q SET used_storage = q.used_storage - d.s,
            used_messages = q.used_messages - d.n
        FROM (SELECT x.account_id, sum(o.size) AS s, count(*) AS n FROM quota_old o
              JOIN mailboxes x ON x.id = o.mailbox_id GROUP BY x.account_id) d
        WHERE q.account_id = d.account_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER quota_add AFTER INSERT ON messages REFERENCING NEW TABLE AS quota_new
    FOR EACH STATEMENT EXECUTE FUNCTION quota_count();
CREATE TRIGGER quota_remove AFTER DELETE ON messages REFERENCING OLD TABLE AS quota_old
    FOR EACH STATEMENT EXECUTE FUNCTION quota_count();
INSERT INTO quotas (account_id, used_storage, used_messages)
SELECT a.id, coalesce(sum(m.size), 0), count(m.uid) FROM accounts a
LEFT JOIN mailboxes x ON x.account_id = a.id LEFT JOIN messages m ON m.mailbox_id = x.id
GROUP BY a.id;
"""

_LOCK: Final = (
    "SELECT a.name, q.storage, q.messages, q.used_storage, q.used_messages FROM quotas q"
    " JOIN accounts a ON a.id = q.account_id WHERE a.name = ANY(%s::text[])"
    " ORDER BY q.account_id FOR UPDATE OF q"
)
_ROW: Final = (
    "SELECT q.storage, q.messages, q.used_storage, q.used_messages FROM quotas q"
    " JOIN accounts a ON a.id = q.account_id WHERE a.name = %s"
)


#: Seconds a copy of an account's quota may answer an early check (RCPT, before filing).
PRECHECK_TTL: Final = 1.0
_MAX_COPIES: Final = 10_000


class PgQuotaOps(PgBase):
    """Mixed into PostgresStore."""

    _quota_default: tuple[int | None, int | None] = (None, None)
    _quota_observer: Callable[[str], None] | None = None
    _quota_copies: dict[str, tuple[float, Quota]]  # account -> (when read, quota)

    def set_default_quota(self, storage: int | None, messages: int | None) -> None:
        self._quota_default = (storage, messages)
        self._forget_quota(None)

    async def quota_refusal(self, account: str, size: int, count: int = 1) -> bool | None:
        """Two SELECTs a message (RCPT, then before filing) cost about as much as the
        delivery itself, so a fit may come from a copy at most ``PRECHECK_TTL`` old,
        refreshed by this node's deliveries and dropped by the change feed when the
        account's mail changes (here or on another node); the delivery statement checks
        the locked row again, so a stale copy never lets a message past its quota."""
        copy = self._quota_copies.get(account)
        if (
            copy is not None
            and time.monotonic() - copy[0] < PRECHECK_TTL
            and copy[1].refusal(size, count) is None
        ):
            return None
        quota = await self.get_quota(account)
        self._keep_quota(account, quota)
        return quota.refusal(size, count)

    def _keep_quota(self, account: str, quota: Quota) -> None:
        if len(self._quota_copies) >= _MAX_COPIES and account not in self._quota_copies:
            self._quota_copies.clear()
        self._quota_copies[account] = (time.monotonic(), quota)

    def _forget_quota(self, account: str | None) -> None:
        """The feed's hook: the account's usage changed (None: any account's may have)."""
        if account is None:
            self._quota_copies.clear()
        else:
            self._quota_copies.pop(account, None)

    def observe_quota(self, observer: Callable[[str], None] | None) -> None:
        self._quota_observer = observer

    def _quota_of(self, row: Sequence[object] | None) -> Quota:
        raw_storage, raw_messages, used_storage, used_messages = (
            row if row is not None else (None, None, 0, 0)
        )
        storage, storage_default = effective(_opt(raw_storage), self._quota_default[0])
        messages, messages_default = effective(_opt(raw_messages), self._quota_default[1])
        return Quota(
            storage,
            messages,
            _int(used_storage),
            _int(used_messages),
            storage_default,
            messages_default,
        )

    async def get_quota(self, account: str) -> Quota:
        return self._quota_of(await self._fetchone(_ROW, (account,)))

    async def set_quota(self, account: str, storage: QuotaLimit, messages: QuotaLimit) -> Quota:
        values = (raw_limit(storage), raw_limit(messages))

        async def op(conn: Conn) -> tuple[Quota, list[PgAfterCommit]]:
            account_id = await self._account_id(conn, account, create=True)
            await conn.execute(
                "INSERT INTO quotas (account_id, storage, messages) VALUES (%s, %s, %s)"
                " ON CONFLICT (account_id) DO UPDATE SET storage = EXCLUDED.storage,"
                " messages = EXCLUDED.messages",
                (account_id, *values),
            )
            quota = self._quota_of(await self._one(conn, _ROW, (account,)))
            return quota, [lambda: self.feed.account_committed(account)]  # forgets it

        quota: Quota = await self._write(op)
        return quota

    # -- inside writes ----------------------------------------------------------------

    async def _quota_lock(self, conn: Conn, accounts: Sequence[str]) -> dict[str, Row]:
        """Lock the accounts' rows (made at need) in id order; their rows by name."""
        names = sorted(set(accounts))
        rows = {str(r[0]): r[1:] for r in await self._all(conn, _LOCK, (names,))}
        missing = [n for n in names if n not in rows]
        if missing:  # no message stored yet: make the rows, then lock them all
            for name in missing:
                account_id = await self._account_id(conn, name, create=True)
                await conn.execute(
                    "INSERT INTO quotas (account_id) VALUES (%s) ON CONFLICT DO NOTHING",
                    (account_id,),
                )
            rows = {str(r[0]): r[1:] for r in await self._all(conn, _LOCK, (names,))}
        return rows

    async def _quota_admit(
        self,
        conn: Conn,
        targets: Sequence[DeliveryTarget],
        size: int,
        fallback: Mapping[str, Sequence[QueuedRecipient]] | None,
    ) -> tuple[list[DeliveryTarget], dict[str, bool], list[str]]:
        """(targets to file, refused account -> permanent, accounts crossing 90 %)."""
        copies: dict[str, int] = {}
        for t in targets:
            if t.quota:
                copies[t.account] = copies.get(t.account, 0) + 1
        if not copies:
            return list(targets), {}, []
        rows = await self._quota_lock(conn, list(copies))
        refused: dict[str, bool] = {}
        crossed: list[str] = []
        for account, count in copies.items():
            quota = self._quota_of(rows.get(account))
            if quota.refusal(size * count, count) is None:
                if quota.crossed(size * count, count):
                    crossed.append(account)
                continue
            refused[account] = quota.refusal(size) is True  # one copy alone too large
            if fallback is None:
                break
        kept = [t for t in targets if t.account not in refused or not t.quota]
        return kept, refused, crossed

    async def _quota_added(self, conn: Conn, account: str, size: int, count: int) -> bool:
        """After a write added ``size`` octets in ``count`` messages (COPY, in a
        savepoint): QuotaExceededError when the usage now passes a limit; True when it
        crossed 90 %.  The trigger's update locked the row: the usage read is final."""
        if count <= 0:
            return False
        quota = self._quota_of(await self._one(conn, _ROW, (account,)))
        before = Quota(
            quota.storage, quota.messages, quota.used_storage - size, quota.used_messages - count
        )
        verdict = before.refusal(size, count)
        if verdict is not None:
            raise QuotaExceededError(account, verdict)
        return before.crossed(size, count)

    def _quota_warn_later(self, accounts: Sequence[str]) -> PgAfterCommit:
        observer = self._quota_observer
        loop = asyncio.get_running_loop()

        def action() -> None:
            if observer is not None:
                for account in accounts:
                    loop.call_soon(observer, account)

        return action


def _opt(value: object) -> int | None:
    return None if value is None else _int(value)


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value
