"""Mailbox, flag, copy and text-index operations of the PostgreSQL store (what IMAP needs).

The counterpart of ``sqlite_mailboxes.py``, with the same semantics.  One new MODSEQ is
assigned per operation and shared by the messages it changes (RFC 7162 §3.1 needs it
strictly greater than every earlier one, not unique).  Writes that lock a mailbox row
declare it to the committer, which locks every row of a batch in id order first.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

import psycopg

from correo.store.api import (
    INBOX,
    Changes,
    MailboxError,
    MailboxInfo,
    MailboxStatus,
    MessageFacts,
    MessageInfo,
    StoreError,
)
from correo.store.postgres_base import Conn, PgBase, drop_nul
from correo.store.postgres_commit import PgAfterCommit
from correo.store.sqlite_mailboxes import merge_flags, normalize_flags

__all__ = ["PgMailboxOps"]


#: At most this many UPDATE statements for one flag change, one per resulting flag set;
#: past it, one statement joins every row to its own set.
_FLAG_GROUPS: Final = 8


async def _write_flags(
    conn: Conn, mailbox_id: int, modseq: int, rows: Sequence[tuple[int, str]]
) -> None:
    """Set each (uid, flags) row's flags and its MODSEQ.

    A STORE leaves most rows with one of a few flag sets (``+FLAGS \\Seen`` on a mailbox
    gives one or two): an UPDATE per set, matching UIDs from an array, took the
    database about half the time of joining 5,000 rows to their own texts (12 ms
    against 25 on a private cluster).
    """
    groups: dict[str, list[int]] = {}
    for uid, text in rows:
        groups.setdefault(text, []).append(uid)
    if len(groups) > _FLAG_GROUPS:
        await conn.execute(
            "UPDATE messages m SET flags = t.flags, modseq = %s"
            " FROM unnest(%s::bigint[], %s::text[]) AS t(uid, flags)"
            " WHERE m.mailbox_id = %s AND m.uid = t.uid",
            (modseq, [r[0] for r in rows], [r[1] for r in rows], mailbox_id),
        )
        return
    for text, group in groups.items():
        await conn.execute(
            "UPDATE messages SET flags = %s, modseq = %s"
            " WHERE mailbox_id = %s AND uid = ANY(%s::bigint[])",
            (text, modseq, mailbox_id, group),
        )


def _flags(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def _superiors(name: str) -> list[str]:
    """``a``, ``a/b`` for ``a/b/c``."""
    parts = name.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


#: Seconds between two reads of whether the trigram index exists.
_INDEX_RECHECK = 60.0
#: The id of the mailbox (account, name), as a subquery PostgreSQL evaluates once.
_BOX = (
    "(SELECT x.id FROM mailboxes x JOIN accounts a ON a.id = x.account_id"
    " WHERE a.name = %s AND x.name = %s)"
)
#: Needles tested at most; a subset of them still selects a superset of the matches.
_MAX_NEEDLES = 32


def _like(needle: str) -> str:
    """A LIKE pattern matching ``needle`` anywhere (backslash is PostgreSQL's escape)."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PgMailboxOps(PgBase):
    def _touched(self, pairs: list[tuple[int, tuple[str, str]]]) -> PgAfterCommit:
        return lambda: self.feed.committed(pairs)

    async def list_mailboxes(self, account: str) -> list[MailboxInfo]:
        rows = await self._fetchall(
            "SELECT m.name, m.special_use, s.name IS NOT NULL FROM mailboxes m"
            " JOIN accounts a ON a.id = m.account_id LEFT JOIN subscriptions s"
            " ON s.account_id = m.account_id AND s.name = m.name"
            " WHERE a.name = %s ORDER BY m.name",
            (account,),
        )
        return [MailboxInfo(str(n), special, bool(sub)) for n, special, sub in rows]

    async def create_mailbox(
        self,
        account: str,
        name: str,
        special_use: str | None = None,
        subscribe: bool = True,
        *,
        limit: int = 0,
    ) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            if await self._find_mailbox(conn, account, name) is not None:
                raise MailboxError(f"mailbox {name} already exists", "ALREADYEXISTS")
            account_id = await self._account_id(conn, account, create=True)
            assert account_id is not None
            # RFC 9051 §6.3.4: create the superior names that are missing.
            missing = [
                path
                for path in (*_superiors(name), name)
                if await self._find_mailbox(conn, account, path) is None
            ]
            await self._check_room(conn, account_id, len(missing), limit)
            made: list[tuple[int, tuple[str, str]]] = []
            for path in missing:
                row = await self._one(
                    conn,
                    "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (account_id, name) DO NOTHING"
                    " RETURNING id",
                    (
                        account_id,
                        path,
                        await self._next_uidvalidity(conn),
                        special_use if path == name else None,
                    ),
                )
                if row is None and path == name:  # another node was faster
                    raise MailboxError(f"mailbox {name} already exists", "ALREADYEXISTS")
                if row is not None:
                    made.append((int(row[0]), (account, path)))
            if subscribe:
                await conn.execute(
                    "INSERT INTO subscriptions (account_id, name) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (account_id, name),
                )
            return None, [self._touched(made)]  # NOTIFY MailboxName, on every node

        await self._write(op)

    async def _check_room(self, conn: Conn, account_id: int, adding: int, limit: int) -> None:
        """Refuse to grow an account past ``limit`` mailboxes (0: no limit)."""
        if not limit or not adding:
            return
        # The account row is locked so two nodes cannot both take the last place.
        await conn.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (account_id,))
        row = await self._one(
            conn, "SELECT count(*) FROM mailboxes WHERE account_id = %s", (account_id,)
        )
        if row is not None and int(row[0]) + adding > limit:
            raise MailboxError(f"at most {limit} mailboxes per account", "LIMIT")  # RFC 9051 §7.1

    async def delete_mailbox(self, account: str, name: str) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            if name.upper() == INBOX:
                raise MailboxError("INBOX cannot be deleted", "CANNOT")
            mailbox_id = await self._box(conn, account, name)
            child = await self._one(
                conn,
                "SELECT 1 FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
                " WHERE a.name = %s AND starts_with(m.name, %s) LIMIT 1",
                (account, name + "/"),
            )
            if child is not None:
                raise MailboxError(f"mailbox {name} has children; delete them first", "HASCHILDREN")
            rows = await self._all(
                conn, "DELETE FROM messages WHERE mailbox_id = %s RETURNING blob_id", (mailbox_id,)
            )
            await self._release_blobs(conn, [int(r[0]) for r in rows])
            await conn.execute("DELETE FROM expunged WHERE mailbox_id = %s", (mailbox_id,))
            await conn.execute("DELETE FROM urlauth_keys WHERE mailbox_id = %s", (mailbox_id,))
            await conn.execute("DELETE FROM mailboxes WHERE id = %s", (mailbox_id,))
            return None, [
                self._touched([(mailbox_id, (account, name))]),
                lambda: self._forget_boxes(account),
            ]

        await self._write(op, [(account, name)])

    async def rename_mailbox(self, account: str, old: str, new: str, *, limit: int = 0) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            source = await self._box(conn, account, old)
            if await self._find_mailbox(conn, account, new) is not None:
                raise MailboxError(f"mailbox {new} already exists", "ALREADYEXISTS")
            if old != INBOX and new.startswith(old + "/"):
                raise MailboxError("a mailbox cannot move inside itself", "CANNOT")
            account_id = await self._account_id(conn, account, create=False)
            assert account_id is not None
            # RFC 9051 §6.3.6: the server SHOULD create the superior names that are needed.
            missing = [
                p for p in _superiors(new) if await self._find_mailbox(conn, account, p) is None
            ]
            await self._check_room(conn, account_id, len(missing) + (old == INBOX), limit)
            for path in missing:
                await conn.execute(
                    "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (%s, %s, %s)"
                    " ON CONFLICT (account_id, name) DO NOTHING",
                    (account_id, path, await self._next_uidvalidity(conn)),
                )
            if old == INBOX:
                # RFC 9051 §6.3.6: renaming INBOX moves its messages; INBOX stays, empty.
                row = await self._one(
                    conn,
                    "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (%s, %s, %s)"
                    " RETURNING id",
                    (account_id, new, await self._next_uidvalidity(conn)),
                )
                assert row is not None
                uids = [
                    int(r[0])
                    for r in await self._all(
                        conn,
                        "SELECT uid FROM messages WHERE mailbox_id = %s ORDER BY uid",
                        (source,),
                    )
                ]
                await self._copy(conn, source, uids, int(row[0]), move=True)
                return None, [
                    self._touched([(source, (account, INBOX))]),
                    lambda: self._forget_boxes(account),
                ]
            # The hierarchy below ``old``, exactly and case-sensitively (never LIKE).
            moving = await self._all(
                conn,
                "SELECT id, name FROM mailboxes WHERE account_id = %s"
                " AND (name = %s OR starts_with(name, %s)) ORDER BY id",
                (account_id, old, old + "/"),
            )
            renamed = [(int(i), str(n), new + str(n)[len(old) :]) for i, n in moving]
            sources = {name for _, name, _ in renamed}
            for _, _, target in renamed:
                taken = await self._find_mailbox(conn, account, target) is not None
                if taken and target not in sources:
                    raise MailboxError(f"mailbox {target} already exists", "ALREADYEXISTS")
            # Uniqueness is checked row by row: when a target is still another's source
            # (below a superior-less name), step through names no client can give.
            ids = [i for i, _, _ in renamed]
            if sources & {t for _, _, t in renamed}:
                await conn.execute(
                    "UPDATE mailboxes SET name = E'\\x01' || id WHERE id = ANY(%s::bigint[])",
                    (ids,),
                )
            await conn.execute(
                "UPDATE mailboxes m SET name = t.name FROM unnest(%s::bigint[], %s::text[])"
                " AS t(id, name) WHERE m.id = t.id",
                (ids, [t for _, _, t in renamed]),
            )
            # The client renamed it: its subscriptions follow (only a server-made removal
            # is forbidden, RFC 9051 §6.3.7).
            followed = await self._all(
                conn,
                "DELETE FROM subscriptions s USING unnest(%s::text[], %s::text[]) AS t(old, new)"
                " WHERE s.account_id = %s AND s.name = t.old RETURNING t.new",
                ([n for _, n, _ in renamed], [t for _, _, t in renamed], account_id),
            )
            await conn.execute(
                "INSERT INTO subscriptions (account_id, name) SELECT %s, n"
                " FROM unnest(%s::text[]) AS n ON CONFLICT DO NOTHING",
                (account_id, [str(r[0]) for r in followed]),
            )
            return None, [
                self._touched([(source, (account, old))]),
                lambda: self._forget_boxes(account),
            ]

        await self._write(op, [(account, old)])

    async def set_subscribed(
        self, account: str, name: str, subscribed: bool, *, limit: int = 0
    ) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            account_id = await self._account_id(conn, account, create=True)
            if subscribed and limit:
                await conn.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (account_id,))
                row = await self._one(
                    conn,
                    "SELECT count(*), count(*) FILTER (WHERE name = %s) FROM subscriptions"
                    " WHERE account_id = %s",
                    (name, account_id),
                )
                assert row is not None
                if not row[1] and int(row[0]) >= limit:
                    raise MailboxError(f"at most {limit} subscriptions per account", "LIMIT")
            if subscribed:
                await conn.execute(
                    "INSERT INTO subscriptions (account_id, name) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (account_id, name),
                )
            else:
                await conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = %s AND name = %s",
                    (account_id, name),
                )
            return None, [lambda: self.feed.account_changed(account)]  # NOTIFY, this node

        await self._write(op)

    async def list_subscriptions(self, account: str) -> list[str]:
        rows = await self._fetchall(
            "SELECT s.name FROM subscriptions s JOIN accounts a ON a.id = s.account_id"
            " WHERE a.name = %s ORDER BY s.name",
            (account,),
        )
        return [str(r[0]) for r in rows]

    async def mailbox_status(self, account: str, mailbox: str) -> MailboxStatus:
        epoch = self._names_epoch
        row = await self._mailbox_row(
            account,
            mailbox,
            "m.uidnext, m.uidvalidity, m.highestmodseq, s.*",
            " CROSS JOIN LATERAL (SELECT count(*),"
            " count(*) FILTER (WHERE strpos(' ' || flags || ' ', ' \\Seen ') = 0),"
            " count(*) FILTER (WHERE strpos(' ' || flags || ' ', ' \\Deleted ') > 0),"
            " coalesce(sum(size), 0), count(*) FILTER (WHERE uid >= m.recent_uid),"
            " coalesce(sum(size) FILTER (WHERE strpos(' ' || flags || ' ', ' \\Deleted ') > 0),"
            " 0) FROM messages WHERE mailbox_id = m.id) s",
        )
        if row is None:
            raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
        box, uidnext, uidvalidity, modseq, count, unseen, deleted, size, recent, deleted_size = row
        self._learn_box(account, mailbox, int(box), int(uidvalidity), epoch)
        return MailboxStatus(
            int(count),
            int(uidnext),
            int(uidvalidity),
            int(unseen),
            int(deleted),
            int(size),
            int(modseq),
            int(recent),
            int(deleted_size),  # RFC 9208 §4.2 DELETED-STORAGE
        )

    async def take_recent(self, account: str, mailbox: str) -> int:
        # Idle sessions by the thousand all ask when a message arrives; one claims it,
        # the others must not queue a write each to learn that.
        row = await self._mailbox_row(account, mailbox, "m.recent_uid, m.uidnext")
        if row is not None and row[1] >= row[2]:
            return int(row[1])

        async def op(conn: Conn) -> tuple[int, list[PgAfterCommit]]:
            mailbox_id = await self._box(conn, account, mailbox)
            first = await self._one(
                conn,
                "UPDATE mailboxes m SET recent_uid = m.uidnext FROM (SELECT recent_uid"
                " FROM mailboxes WHERE id = %s) old WHERE m.id = %s RETURNING old.recent_uid",
                (mailbox_id, mailbox_id),
            )
            assert first is not None
            return int(first[0]), []

        claimed: int = await self._write(op, [(account, mailbox)], guarded=False)
        return claimed

    async def fetch_facts(
        self, account: str, mailbox: str, uids: Sequence[int], *, tree: bool = True
    ) -> dict[int, MessageFacts]:
        wanted = sorted(set(uids))
        if not wanted:
            return {}
        # without the part tree (the largest column) when the caller needs no sections
        columns = "f.envelope, f.bodystructure, f.body, " + ("f.tree" if tree else "''::bytea")
        lo, hi = wanted[0], wanted[-1]
        args: list[Any]
        if hi - lo < 2 * len(wanted):
            # dense UIDs (1:*, a sync): one range scan beats thousands of index probes
            where, args = "m.uid BETWEEN %s AND %s", [lo, hi]
            keep: set[int] | None = set(wanted) if hi - lo + 1 != len(wanted) else None
        else:
            where, args, keep = "m.uid = ANY(%s::bigint[])", [wanted], None
        rows = await self._fetchall(
            f"SELECT m.uid, {columns}, f.sent_date FROM messages m"
            " JOIN mailboxes x ON x.id = m.mailbox_id JOIN accounts a ON a.id = x.account_id"
            " JOIN blob_facts f ON f.blob_id = m.blob_id"
            f" WHERE a.name = %s AND x.name = %s AND {where}",
            (account, mailbox, *args),
        )
        return {
            int(uid): MessageFacts(env, bs, body, tr, sent)
            for uid, env, bs, body, tr, sent in rows
            if keep is None or uid in keep
        }

    async def save_facts(self, account: str, mailbox: str, uid: int, facts: MessageFacts) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            mailbox_id = await self._box(conn, account, mailbox)
            await conn.execute(
                "INSERT INTO blob_facts (blob_id, envelope, bodystructure, body, tree, sent_date)"
                " SELECT blob_id, %s, %s, %s, %s, %s FROM messages"
                " WHERE mailbox_id = %s AND uid = %s ON CONFLICT (blob_id) DO UPDATE"
                " SET envelope = EXCLUDED.envelope, bodystructure = EXCLUDED.bodystructure,"
                " body = EXCLUDED.body, tree = EXCLUDED.tree, sent_date = EXCLUDED.sent_date",
                (
                    facts.envelope,
                    facts.bodystructure,
                    facts.body,
                    facts.tree,
                    facts.sent_date,
                    mailbox_id,
                    uid,
                ),
            )
            return None, []

        await self._write(op)

    async def store_flags(
        self,
        account: str,
        mailbox: str,
        uids: Sequence[int],
        mode: str,
        flags: Sequence[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"bad flag mode {mode!r}")
        given = normalize_flags(flags)
        given_keys = {f.lower() for f in given}
        wanted = sorted(set(uids))
        # a run of UIDs (1:*, the common case) as a range: the 5,000-element array took
        # the database three times as long to match
        args: tuple[object, ...]
        if wanted and wanted[-1] - wanted[0] + 1 == len(wanted):
            where, args = "uid BETWEEN %s AND %s", (wanted[0], wanted[-1])
        else:
            where, args = "uid = ANY(%s::bigint[])", (wanted,)

        async def op(
            conn: Conn,
        ) -> tuple[tuple[list[MessageInfo], list[int]], list[PgAfterCommit]]:
            mailbox_id = await self._box(conn, account, mailbox)
            changed: list[tuple[int, int, float, tuple[str, ...], int]] = []
            failed: list[int] = []
            for uid, size, date, text, modseq, zone in await self._all(
                conn,
                "SELECT uid, size, internal_date, flags, modseq, zone FROM messages"
                f" WHERE mailbox_id = %s AND {where} ORDER BY uid",
                (mailbox_id, *args),
            ):
                if unchanged_since is not None and modseq > unchanged_since:
                    failed.append(int(uid))  # RFC 7162 §3.1.3
                    continue
                current = _flags(text)
                new = merge_flags(current, mode, given, given_keys)
                if new != current:
                    changed.append((int(uid), int(size), float(date), new, int(zone)))
            if not changed:
                return ([], failed), []
            modseq = await self._new_modseq(conn, mailbox_id)
            await _write_flags(conn, mailbox_id, modseq, [(c[0], " ".join(c[3])) for c in changed])
            infos = [
                MessageInfo(uid, size, date, new, modseq, zone)
                for uid, size, date, new, zone in changed
            ]
            return (infos, failed), [self._touched([(mailbox_id, (account, mailbox))])]

        result: tuple[list[MessageInfo], list[int]] = await self._write(
            op, [(account, mailbox)], guarded=False
        )
        return result

    async def _copy(
        self, conn: Conn, source: int, uids: Sequence[int], target: int, *, move: bool
    ) -> list[tuple[int, int]]:
        rows = await self._all(
            conn,
            "SELECT uid, blob_id FROM messages WHERE mailbox_id = %s AND uid = ANY(%s::bigint[])"
            " ORDER BY uid",
            (source, list(uids)),
        )
        if not rows:
            return []
        allocated = await self._one(
            conn,
            "UPDATE mailboxes SET uidnext = uidnext + %s, highestmodseq = highestmodseq + 1"
            " WHERE id = %s RETURNING uidnext - %s, highestmodseq",
            (len(rows), target, len(rows)),
        )
        assert allocated is not None
        first_uid, modseq = int(allocated[0]), int(allocated[1])
        old = [int(r[0]) for r in rows]
        new = list(range(first_uid, first_uid + len(rows)))
        await conn.execute(
            "INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, flags, modseq,"
            " zone) SELECT %s, t.new, m.blob_id, m.size, m.internal_date, m.flags, %s, m.zone"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS t(old, new)"
            " JOIN messages m ON m.mailbox_id = %s AND m.uid = t.old",
            (target, modseq, old, new, source),
        )
        # The text index follows (copied rows), before a move deletes the originals.
        await conn.execute(
            "INSERT INTO text_docs (mailbox_id, uid, text) SELECT %s, t.new, d.text"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS t(old, new)"
            " JOIN text_docs d ON d.mailbox_id = %s AND d.uid = t.old ON CONFLICT DO NOTHING",
            (target, old, new, source),
        )
        if move:
            removed_modseq = await self._new_modseq(conn, source)
            await conn.execute(
                "DELETE FROM messages WHERE mailbox_id = %s AND uid = ANY(%s::bigint[])",
                (source, old),
            )
            await conn.execute(
                "INSERT INTO expunged (mailbox_id, uid, modseq) SELECT %s, u, %s"
                " FROM unnest(%s::bigint[]) AS u ON CONFLICT (mailbox_id, uid)"
                " DO UPDATE SET modseq = EXCLUDED.modseq",
                (source, removed_modseq, old),
            )
        else:
            counts = Counter(int(r[1]) for r in rows)
            ids = sorted(counts)
            await conn.execute(
                "SELECT id FROM blobs WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE", (ids,)
            )
            await conn.execute(
                "UPDATE blobs b SET refs = b.refs + t.n FROM unnest(%s::bigint[], %s::int[])"
                " AS t(id, n) WHERE b.id = t.id",
                (ids, [counts[i] for i in ids]),
            )
        return list(zip(old, new, strict=True))

    async def changes_since(self, account: str, mailbox: str, modseq: int) -> Changes:
        # One statement, one snapshot, one round trip (sessions ask before most commands):
        # the mailbox found by name, HIGHESTMODSEQ agreeing with the changes listed, and
        # the mailbox id (for the feed) in the row of kind 2, absent when no mailbox is.
        epoch = self._names_epoch
        rows = await self._fetchall(
            "WITH x AS (SELECT m.id, m.highestmodseq, m.uidvalidity FROM mailboxes m"
            " JOIN accounts a ON a.id = m.account_id WHERE a.name = %s AND m.name = %s)"
            " SELECT 0, uid, size, internal_date, flags, modseq, zone FROM messages"
            " WHERE mailbox_id = (SELECT id FROM x) AND modseq > %s"
            " UNION ALL SELECT 1, uid, 0, 0, '', 0, 0 FROM expunged"
            " WHERE mailbox_id = (SELECT id FROM x) AND modseq > %s"
            " UNION ALL SELECT 2, highestmodseq, id, 0, '', uidvalidity, 0 FROM x"
            " ORDER BY 1, 2",
            (account, mailbox, modseq, modseq),
        )
        top = rows[-1] if rows else None
        if top is None or top[0] != 2:
            raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
        highest = int(top[1])
        self.feed.remember(int(top[2]), (account, mailbox))
        self._learn_box(account, mailbox, int(top[2]), int(top[5]), epoch)
        messages = tuple(
            MessageInfo(int(uid), int(size), float(date), _flags(flags), int(ms), int(zone))
            for kind, uid, size, date, flags, ms, zone in rows
            if kind == 0
        )
        expunged = tuple(int(r[1]) for r in rows if r[0] == 1)
        return Changes(highest, messages, expunged)

    # -- SEARCH TEXT/BODY index (candidates, as from the embedded store's FTS5 index) ---

    #: Whether ``text_docs_trgm`` exists and is valid, and when that was last read: an
    #: operator turns it on or off while nodes run (``correo store search-index``).
    _trgm_index: bool = False
    _trgm_checked: float = -_INDEX_RECHECK

    async def _trgm_present(self) -> bool:
        """Read the index's presence at most once per ``_INDEX_RECHECK`` seconds; a stale
        answer costs speed, never results (both queries select the same superset)."""
        now = time.monotonic()
        if now - self._trgm_checked >= _INDEX_RECHECK:
            row = await self._fetchone(
                "SELECT EXISTS (SELECT 1 FROM pg_index"
                " WHERE indexrelid = to_regclass('text_docs_trgm') AND indisvalid)"
            )
            self._trgm_index = bool(row and row[0])
            self._trgm_checked = now
        return self._trgm_index

    async def text_candidates(
        self, account: str, mailbox: str, needles: Sequence[str]
    ) -> tuple[set[int], set[int]]:
        """(UIDs that may contain every needle, UIDs whose text is not indexed yet).

        Needles come as the indexed text is written (casefolded whitespace-free pieces,
        correo.delivery.textindex), so a message containing them holds each one in its
        indexed text, a word set, and callers verify every candidate. Without the
        trigram index (the default, migration 48) one ``strpos`` per needle scans the
        mailbox's rows: about 0.15 s of database CPU per 10,000 messages (46 MB of
        text), a rare word or a common one. With it (``correo store search-index on``)
        one LIKE per needle is looked up in it: a rare word in about 25 ms (10 ms of
        database CPU), a common one at the scan's cost (bench/pg_search_bench.py, bench/README.md).
        """
        pieces = [drop_nul(n) for n in needles if n]  # NUL as index_texts stores it
        if await self._trgm_present():
            # One LIKE per needle, in a WHERE of its own: pg_trgm looks up the needle's
            # trigrams in the index and rechecks a row once per needle (in the select
            # list, or as a LIKE per trigram, every row or every trigram is tested).
            likes = [_like(p) for p in dict.fromkeys(pieces)][:_MAX_NEEDLES]
            test = " AND ".join(["t.text LIKE %s"] * len(likes)) or "true"
            rows = await self._fetchall(
                "SELECT m.uid, d.uid IS NOT NULL, d.uid IS NULL OR h.uid IS NOT NULL"
                " FROM messages m"
                " LEFT JOIN text_docs d ON d.mailbox_id = m.mailbox_id AND d.uid = m.uid"
                f" LEFT JOIN (SELECT t.uid FROM text_docs t WHERE t.mailbox_id = {_BOX}"
                f" AND {test}) h ON h.uid = m.uid WHERE m.mailbox_id = {_BOX}",
                (account, mailbox, *likes, account, mailbox),
            )
        else:
            # The longest first: the most selective, and AND stops at the first miss.
            terms = sorted(dict.fromkeys(pieces), key=len, reverse=True)[:_MAX_NEEDLES]
            test = " AND ".join(["strpos(d.text, %s) > 0"] * len(terms)) or "true"
            rows = await self._fetchall(
                f"SELECT m.uid, d.uid IS NOT NULL, d.uid IS NULL OR ({test}) FROM messages m"
                " LEFT JOIN text_docs d ON d.mailbox_id = m.mailbox_id AND d.uid = m.uid"
                f" WHERE m.mailbox_id = {_BOX}",
                (*terms, account, mailbox),
            )
        maybe = {int(uid) for uid, _, hit in rows if hit}
        unindexed = {int(uid) for uid, indexed, _ in rows if not indexed}
        return maybe, unindexed

    async def index_text(self, account: str, mailbox: str, texts: dict[int, str]) -> None:
        """Index the searchable text of messages (by UID); already indexed ones are kept."""
        await self.index_texts({(account, mailbox): texts})

    async def index_texts(self, texts: Mapping[tuple[str, str], Mapping[int, str]]) -> None:
        """One statement for every mailbox, committed without waiting for the WAL flush.

        The index is derived data: a write lost in a crash leaves messages unindexed,
        which searches scan and the indexer fills in again.  BEGIN, the setting, the
        INSERT and COMMIT go in one pipeline: one round trip, not four (the indexer
        writes every few APPENDs of a lone client, beside them).  The arrays go in
        binary form (``%b``): psycopg's text form escapes each 5 KB text in Python, about
        30 µs apiece on the event loop, where the binary form copies it.
        """
        rows = [
            (account, mailbox, uid, drop_nul(text))
            for (account, mailbox), items in texts.items()
            for uid, text in sorted(items.items())
        ]
        if not rows:
            return
        try:
            async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit TO OFF")
                await conn.execute(
                    "INSERT INTO text_docs (mailbox_id, uid, text) SELECT m.mailbox_id,"
                    " m.uid, t.text FROM unnest(%b::text[], %b::text[], %b::bigint[],"
                    " %b::text[]) AS t(account, name, uid, text)"
                    " JOIN accounts a ON a.name = t.account"
                    " JOIN mailboxes x ON x.account_id = a.id AND x.name = t.name"
                    " JOIN messages m ON m.mailbox_id = x.id AND m.uid = t.uid"
                    " ORDER BY m.mailbox_id, m.uid ON CONFLICT DO NOTHING",
                    tuple(list(column) for column in zip(*rows, strict=True)),
                )
        except psycopg.Error as exc:
            raise StoreError(f"could not index text: {exc}") from exc

    # -- URLAUTH mailbox access keys (RFC 4467 §2.2) ------------------------------------

    async def urlauth_key(self, account: str, mailbox: str, *, create: bool = False) -> bytes:
        row = await self._mailbox_row(
            account, mailbox, "k.key", " LEFT JOIN urlauth_keys k ON k.mailbox_id = m.id"
        )
        if row is None:
            raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
        if row[1] is not None or not create:
            return bytes(row[1] or b"")
        mailbox_id = int(row[0])
        fresh = secrets.token_bytes(32)  # RFC 4467 §2.2: unpredictable, >= 128 bits

        async def op(conn: Conn) -> tuple[bytes, list[PgAfterCommit]]:
            made = await self._one(
                conn,
                "INSERT INTO urlauth_keys (mailbox_id, key) SELECT id, %s FROM mailboxes"
                " WHERE id = %s ON CONFLICT (mailbox_id) DO UPDATE SET key = urlauth_keys.key"
                " RETURNING key",
                (fresh, mailbox_id),
            )
            if made is None:  # deleted meanwhile
                raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
            return bytes(made[0]), []  # the first key made wins a race

        key: bytes = await self._write(op)
        return key

    async def urlauth_reset(self, account: str, mailbox: str | None = None) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            if mailbox is None:
                await conn.execute(
                    "DELETE FROM urlauth_keys k USING mailboxes m, accounts a"
                    " WHERE k.mailbox_id = m.id AND m.account_id = a.id AND a.name = %s",
                    (account,),
                )
                return None, []
            mailbox_id = await self._box(conn, account, mailbox)
            await conn.execute("DELETE FROM urlauth_keys WHERE mailbox_id = %s", (mailbox_id,))
            return None, []

        await self._write(op)

    # -- the account's change feed (NOTIFY, RFC 5465) -----------------------------------

    def account_counter(self, account: str) -> int:
        return self.feed.account_versions.get(account, 0)

    async def wait_for_account(self, account: str, counter: int, timeout: float) -> bool:
        if counter != self.feed.account_versions.get(account, 0):
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.feed.account_waiters.setdefault(account, set()).add(future)
        timer = loop.call_later(timeout, _expire, future)  # no wait_for: many wait at once
        try:
            await future
            return True
        except TimeoutError:
            return False
        finally:
            timer.cancel()
            waiters = self.feed.account_waiters.get(account)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    self.feed.account_waiters.pop(account, None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
