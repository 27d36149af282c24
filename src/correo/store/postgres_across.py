"""COPY and MOVE of the PostgreSQL store, within one account and between two
accounts' mailboxes (shared mailboxes, RFC 4314): the counterpart of
``sqlite_across.py``, with the same semantics.

``_copy`` of ``postgres_mailboxes.py`` does the rows, the blobs and the text index;
here the target account's quota is charged (for a COPY, and for a MOVE only when the
message changes owner) and flags the user may not set in the target are dropped.  A
copy within one account is the case of the same account on both sides.  Both
mailboxes are declared to the committer, which locks their rows in id order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from correo.store.postgres_base import Conn, PgBase
from correo.store.sqlite_across import FlagFilter

if TYPE_CHECKING:
    from correo.store.postgres_commit import PgAfterCommit

__all__ = ["PgAcrossOps"]


def _flags(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


class PgAcrossOps(PgBase):
    if TYPE_CHECKING:  # postgres_mailboxes.py, postgres_quota.py

        async def _copy(
            self, conn: Conn, source: int, uids: Sequence[int], target: int, *, move: bool
        ) -> list[tuple[int, int]]: ...
        async def _quota_added(self, conn: Conn, account: str, size: int, count: int) -> bool: ...
        def _quota_warn_later(self, accounts: Sequence[str]) -> PgAfterCommit: ...
        def _touched(self, pairs: list[tuple[int, tuple[str, str]]]) -> PgAfterCommit: ...

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

        async def op(conn: Conn) -> tuple[list[tuple[int, int]], list[PgAfterCommit]]:
            src = await self._box(conn, source_account, source)
            dst = await self._box(conn, target_account, target)
            if src == dst and move:
                return [], []
            pairs = await self._copy(conn, src, wanted, dst, move=move)
            if not pairs:
                return [], []
            new = [p[1] for p in pairs]
            if keep_flags is not None:
                await _filter_flags(conn, dst, new, keep_flags)
            crossed = False
            if not move or source_account != target_account:  # RFC 9208 §4.4
                added = await self._one(
                    conn,
                    "SELECT coalesce(sum(size), 0), count(*) FROM messages"
                    " WHERE mailbox_id = %s AND uid = ANY(%s::bigint[])",
                    (dst, new),
                )
                assert added is not None
                crossed = await self._quota_added(
                    conn, target_account, int(added[0]), int(added[1])
                )
            touched = [(dst, (target_account, target))]
            if move:
                touched.append((src, (source_account, source)))
            warn = self._quota_warn_later([target_account] if crossed else [])
            return pairs, [self._touched(touched), warn]

        result: list[tuple[int, int]] = await self._write(
            op, [(source_account, source), (target_account, target)]
        )
        return result

    async def copy_messages(
        self, account: str, source: str, uids: Sequence[int], target: str, *, move: bool = False
    ) -> list[tuple[int, int]]:
        return await self.copy_across(account, source, uids, account, target, move=move)


async def _filter_flags(conn: Conn, mailbox_id: int, uids: list[int], keep: FlagFilter) -> None:
    """The new copies keep only the flags ``keep`` lets through."""
    cur = await conn.execute(
        "SELECT uid, flags FROM messages WHERE mailbox_id = %s AND uid = ANY(%s::bigint[])",
        (mailbox_id, uids),
    )
    changed_uids: list[int] = []
    changed_flags: list[str] = []
    for uid, text in await cur.fetchall():
        flags = _flags(text)
        kept = keep(flags)
        if kept != flags:
            changed_uids.append(int(uid))
            changed_flags.append(" ".join(kept))
    if changed_uids:
        await conn.execute(
            "UPDATE messages m SET flags = t.flags FROM unnest(%s::bigint[], %s::text[])"
            " AS t(uid, flags) WHERE m.mailbox_id = %s AND m.uid = t.uid",
            (changed_uids, changed_flags, mailbox_id),
        )
