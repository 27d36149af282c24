"""COPY and MOVE of :class:`SqliteStore`, within one account and between two
accounts' mailboxes (shared mailboxes, RFC 4314).

A mixin like ``sqlite_acl.py``.  The rows are copied by ``_copy`` of
``sqlite_mailboxes.py`` (mailbox ids are global, so are blobs); one transaction here
charges the target account's quota — for a COPY, and for a MOVE only when the message
changes owner (RFC 9208 §4.4, all or nothing) — and drops the flags the user has no
right to set in the target (RFC 4314 §4).  A copy within one account is the case of
the same account on both sides.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from correo.store.committer import AfterCommit

__all__ = ["AcrossOps", "FlagFilter"]

#: Given a message's flags, the ones the copy keeps.
FlagFilter = Callable[[tuple[str, ...]], tuple[str, ...]]


def _flags(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


class AcrossOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:
        from typing import Any

        async def _write(self, op: Any) -> Any: ...
        def _box(self, conn: sqlite3.Connection, account: str, name: str) -> int: ...
        def _copy(
            self,
            conn: sqlite3.Connection,
            source: int,
            uids: Sequence[int],
            target: int,
            *,
            move: bool,
        ) -> list[tuple[int, int]]: ...
        def _quota_added(
            self, conn: sqlite3.Connection, account: str, size: int, count: int
        ) -> bool: ...
        def _quota_warn_later(self, accounts: Sequence[str]) -> AfterCommit: ...
        def _notify_later(self, keys: list[tuple[str, str]]) -> AfterCommit: ...
        def _text_copied(
            self,
            conn: sqlite3.Connection,
            source: int,
            target: int,
            pairs: list[tuple[int, int]],
            move: bool,
        ) -> AfterCommit: ...

    async def copy_across(
        self,
        source_account: str,
        source: str,
        uids: Sequence[int],
        target_account: str,
        target: str,
        *,
        move: bool = False,
        keep_flags: FlagFilter | None = None,
    ) -> list[tuple[int, int]]:
        wanted = sorted(set(uids))

        def op(conn: sqlite3.Connection) -> tuple[list[tuple[int, int]], list[AfterCommit]]:
            src = self._box(conn, source_account, source)
            dst = self._box(conn, target_account, target)
            if src == dst and move:
                return [], []
            pairs = self._copy(conn, src, wanted, dst, move=move)
            if not pairs:
                return [], []
            low, high = pairs[0][1], pairs[-1][1]
            if keep_flags is not None:
                _filter_flags(conn, dst, low, high, keep_flags)
            crossed = False
            if not move or source_account != target_account:  # RFC 9208 §4.4
                added = conn.execute(
                    "SELECT coalesce(sum(size), 0), count(*) FROM messages"
                    " WHERE mailbox_id=? AND uid BETWEEN ? AND ?",
                    (dst, low, high),
                ).fetchone()
                crossed = self._quota_added(conn, target_account, int(added[0]), int(added[1]))
            touched = [(target_account, target)] + ([(source_account, source)] if move else [])
            copied = self._text_copied(conn, src, dst, pairs, move)  # the text index follows
            warn = self._quota_warn_later([target_account] if crossed else [])
            return pairs, [self._notify_later(touched), copied, warn]

        result: list[tuple[int, int]] = await self._write(op)
        return result

    async def copy_messages(
        self,
        account: str,
        source: str,
        uids: Sequence[int],
        target: str,
        *,
        move: bool = False,
    ) -> list[tuple[int, int]]:
        return await self.copy_across(account, source, uids, account, target, move=move)


def _filter_flags(
    conn: sqlite3.Connection, mailbox_id: int, low: int, high: int, keep: FlagFilter
) -> None:
    """The new copies (UIDs ``low``..``high``) keep only the flags ``keep`` lets through."""
    changes = []
    for uid, text in conn.execute(
        "SELECT uid, flags FROM messages WHERE mailbox_id=? AND uid BETWEEN ? AND ?",
        (mailbox_id, low, high),
    ).fetchall():
        flags = _flags(text)
        kept = keep(flags)
        if kept != flags:
            changes.append((" ".join(kept), mailbox_id, uid))
    conn.executemany("UPDATE messages SET flags=? WHERE mailbox_id=? AND uid=?", changes)
