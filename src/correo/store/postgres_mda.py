"""MDA data and import digests of the PostgreSQL store: the counterpart of
``sqlite_mda.py`` and ``sqlite_digests.py``, with the same semantics.

Sieve scripts, vacation memory and junk counts are keyed by account name, as in the
embedded store.  Vacation memory is one statement (insert, or refresh when older than
``:days``), so two nodes answering the same sender at once still send one reply.
A body's digest is its key in ``blobs``; digests recorded by an importer override it
(``blob_digests``), as the embedded store keeps the first one it learnt.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from correo.store.api import MailboxError
from correo.store.postgres_base import Conn, PgBase, drop_nul
from correo.store.postgres_commit import PgAfterCommit
from correo.store.sqlite_mda import MAX_JUNK_TOKENS

__all__ = ["PgMdaOps"]

#: Vacation rows older than this are useless (:days is capped at 90 by the interpreter).
_VACATION_HORIZON = 366 * 86400.0


class PgMdaOps(PgBase):
    max_junk_tokens = MAX_JUNK_TOKENS

    # -- Sieve scripts (RFC 5804 semantics) ----------------------------------------------

    async def sieve_list(self, account: str) -> list[tuple[str, bool]]:
        rows = await self._fetchall(
            "SELECT name, active FROM sieve_scripts WHERE account = %s ORDER BY name", (account,)
        )
        return [(str(n), bool(a)) for n, a in rows]

    async def sieve_get(self, account: str, name: str) -> str | None:
        row = await self._fetchone(
            "SELECT script FROM sieve_scripts WHERE account = %s AND name = %s", (account, name)
        )
        return None if row is None else str(row[0])

    async def sieve_put(self, account: str, name: str, text: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute(
                "INSERT INTO sieve_scripts (account, name, script, updated)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (account, name)"
                " DO UPDATE SET script = EXCLUDED.script, updated = EXCLUDED.updated",
                (account, name, text, time.time()),
            )
            return None, [lambda: self.feed.account_committed(account)]

        await self._write(op)

    async def sieve_delete(self, account: str, name: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            row = await self._one(
                conn,
                "SELECT active FROM sieve_scripts WHERE account = %s AND name = %s FOR UPDATE",
                (account, name),
            )
            if row is None:
                raise MailboxError(f"no script {name!r}", "NONEXISTENT")
            if row[0]:  # RFC 5804 §2.10: the active script cannot be deleted
                raise MailboxError("script is active", "ACTIVE")
            await conn.execute(
                "DELETE FROM sieve_scripts WHERE account = %s AND name = %s", (account, name)
            )
            return None, [lambda: self.feed.account_committed(account)]

        await self._write(op)

    async def sieve_rename(self, account: str, old: str, new: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            find = "SELECT 1 FROM sieve_scripts WHERE account = %s AND name = %s"
            if await self._one(conn, find, (account, old)) is None:
                raise MailboxError(f"no script {old!r}", "NONEXISTENT")
            if old != new and await self._one(conn, find, (account, new)) is not None:
                raise MailboxError(f"script {new!r} exists", "ALREADYEXISTS")
            await conn.execute(
                "UPDATE sieve_scripts SET name = %s WHERE account = %s AND name = %s",
                (new, account, old),
            )
            return None, [lambda: self.feed.account_committed(account)]

        await self._write(op)

    async def sieve_activate(self, account: str, name: str | None) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            if name is not None:
                row = await self._one(
                    conn,
                    "SELECT 1 FROM sieve_scripts WHERE account = %s AND name = %s",
                    (account, name),
                )
                if row is None:
                    raise MailboxError(f"no script {name!r}", "NONEXISTENT")
            await conn.execute(
                "UPDATE sieve_scripts SET active = (name IS NOT DISTINCT FROM %s::text)"
                " WHERE account = %s",
                (name, account),
            )
            return None, [lambda: self.feed.account_committed(account)]

        await self._write(op)

    async def sieve_active(self, account: str) -> tuple[str, str] | None:
        row = await self._fetchone(
            "SELECT name, script FROM sieve_scripts WHERE account = %s AND active", (account,)
        )
        return None if row is None else (str(row[0]), str(row[1]))

    # -- vacation duplicate suppression (RFC 5230 §4.2) ---------------------------------

    async def vacation_seen(self, account: str, handle: str, sender: str, days: int) -> bool:
        now = time.time()
        key = sender.lower()

        async def op(conn: Conn) -> tuple[bool, list[PgAfterCommit]]:
            # A row comes back when the reply is to be sent now (new, or old enough).
            row = await self._one(
                conn,
                "INSERT INTO vacation_seen (account, handle, sender, sent)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (account, handle, sender)"
                " DO UPDATE SET sent = EXCLUDED.sent WHERE vacation_seen.sent <= %s"
                " RETURNING 1",
                (account, handle, key, now, now - days * 86400.0),
            )
            if row is None:
                return True, []
            await conn.execute(  # forget replies too old to matter (keeps the table bounded)
                "DELETE FROM vacation_seen WHERE account = %s AND sent < %s",
                (account, now - _VACATION_HORIZON),
            )
            return False, []

        result: bool = await self._write(op, guarded=False)
        return result

    # -- junk-filter token counts ------------------------------------------------------

    async def junk_counts(
        self, account: str, tokens: Collection[str]
    ) -> tuple[int, int, dict[str, tuple[int, int]]]:
        wanted = [drop_nul(t) for t in dict.fromkeys(tokens)]
        totals = await self._fetchone(
            "SELECT spam, ham FROM junk_totals WHERE account = %s", (account,)
        )
        spam, ham = (0, 0) if totals is None else (int(totals[0]), int(totals[1]))
        found: dict[str, tuple[int, int]] = {}
        if wanted:
            for token, s, h in await self._fetchall(
                "SELECT token, spam, ham FROM junk_tokens"
                " WHERE account = %s AND token = ANY(%s::text[])",
                (account, wanted),
            ):
                found[str(token)] = (int(s), int(h))
        return spam, ham, found

    async def junk_learn(
        self, account: str, tokens: Collection[str], spam: bool, *, unlearn: bool = False
    ) -> None:
        unique = list(dict.fromkeys(drop_nul(t) for t in tokens))
        column = "spam" if spam else "ham"
        delta = -1 if unlearn else 1
        now = time.time()
        limit = self.max_junk_tokens

        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute(
                f"INSERT INTO junk_totals (account, {column}) VALUES (%s, greatest(0, %s))"
                f" ON CONFLICT (account) DO UPDATE"
                f" SET {column} = greatest(0, junk_totals.{column} + %s)",
                (account, delta, delta),
            )
            if unlearn:
                await conn.execute(
                    f"UPDATE junk_tokens SET {column} = greatest(0, {column} - 1)"
                    " WHERE account = %s AND token = ANY(%s::text[])",
                    (account, unique),
                )
                await conn.execute(
                    "DELETE FROM junk_tokens WHERE account = %s AND spam = 0 AND ham = 0",
                    (account,),
                )
            elif unique:
                await conn.execute(
                    f"INSERT INTO junk_tokens (account, token, {column}, seen)"
                    " SELECT %s, t, 1, %s FROM unnest(%s::text[]) AS t"
                    f" ON CONFLICT (account, token) DO UPDATE"
                    f" SET {column} = junk_tokens.{column} + 1, seen = EXCLUDED.seen",
                    (account, now, unique),
                )
            row = await self._one(
                conn, "SELECT count(*) FROM junk_tokens WHERE account = %s", (account,)
            )
            count = int(row[0]) if row is not None else 0
            if count > limit:  # bounded: drop the rarest, least recently seen tokens
                await conn.execute(
                    "DELETE FROM junk_tokens WHERE account = %s AND token IN (SELECT token FROM"
                    " junk_tokens WHERE account = %s ORDER BY spam + ham, seen LIMIT %s)",
                    (account, account, count - limit * 9 // 10),
                )
            return None, []

        await self._write(op, guarded=False)

    # -- import bookkeeping: message digests ------------------------------------------

    async def message_digests(self, account: str, mailbox: str) -> dict[int, str]:
        rows = await self._fetchall(
            "SELECT m.uid, coalesce(d.digest, encode(b.digest, 'hex')) FROM messages m"
            " JOIN mailboxes x ON x.id = m.mailbox_id JOIN accounts a ON a.id = x.account_id"
            " JOIN blobs b ON b.id = m.blob_id LEFT JOIN blob_digests d ON d.blob_id = m.blob_id"
            " WHERE a.name = %s AND x.name = %s",
            (account, mailbox),
        )
        return {int(uid): str(digest) for uid, digest in rows}

    async def record_digests(self, account: str, mailbox: str, digests: dict[int, str]) -> None:
        if not digests:
            return
        items = sorted(digests.items())

        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            # A body expunged meanwhile simply gets no digest.
            await conn.execute(
                "INSERT INTO blob_digests (blob_id, digest) SELECT m.blob_id, t.digest"
                " FROM unnest(%s::bigint[], %s::text[]) AS t(uid, digest)"
                " JOIN messages m ON m.uid = t.uid AND m.mailbox_id = (SELECT x.id"
                " FROM mailboxes x JOIN accounts a ON a.id = x.account_id"
                " WHERE a.name = %s AND x.name = %s) ON CONFLICT DO NOTHING",
                ([u for u, _ in items], [d for _, d in items], account, mailbox),
            )
            return None, []

        await self._write(op)
