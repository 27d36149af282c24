"""Mailbox, flag and copy operations of :class:`SqliteStore` (what IMAP needs).

Kept apart from ``sqlite.py`` so the core of the store (delivery, durability, blobs)
stays small. Every write goes through the group committer; every read through the
reader pool. One new MODSEQ is assigned per operation and shared by the messages it
changes (RFC 7162 §3.1 needs it strictly greater than every earlier one, not unique).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from correo.store.api import (
    INBOX,
    Changes,
    MailboxError,
    MailboxInfo,
    MailboxStatus,
    MessageFacts,
    MessageInfo,
)

if TYPE_CHECKING:
    import asyncio
    from typing import Any

    from correo.store.committer import AfterCommit, GroupCommitter, WriteOp

__all__ = ["SYSTEM_FLAGS", "MailboxOps", "merge_flags", "normalize_flags"]

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}


def normalize_flags(flags: Sequence[str]) -> tuple[str, ...]:
    """System flags in canonical case, keywords as given, no case-insensitive duplicates."""
    seen: dict[str, str] = {}
    for flag in flags:
        key = flag.lower()
        if key == "\\recent":
            continue  # RFC 9051 §2.3.2: \Recent is session state, never stored
        seen.setdefault(key, SYSTEM_FLAGS.get(key, flag))
    return tuple(sorted(seen.values(), key=str.lower))


def merge_flags(
    current: tuple[str, ...], mode: str, given: tuple[str, ...], given_keys: set[str]
) -> tuple[str, ...]:
    """A message's flags after STORE ``mode`` (add, remove, replace) of normalised ``given``."""
    if mode == "replace":
        return given
    if mode == "add":
        return normalize_flags(current + given)
    return tuple(f for f in current if f.lower() not in given_keys)


def _flags(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


class MailboxOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:
        _mailbox_ids: dict[tuple[str, str], int]
        _text_committer: GroupCommitter
        _loop: asyncio.AbstractEventLoop | None

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        def _read_now(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...
        def _find_mailbox(
            self, conn: sqlite3.Connection, account: str, mailbox: str
        ) -> int | None: ...
        def _account_id(
            self, conn: sqlite3.Connection, account: str, create: bool
        ) -> int | None: ...
        def _next_uidvalidity(self, conn: sqlite3.Connection) -> int: ...
        def _notify_later(self, keys: list[tuple[str, str]]) -> AfterCommit: ...
        def _unlink_later(self, paths: list[str]) -> AfterCommit: ...
        def _release_blobs(self, conn: sqlite3.Connection, blob_ids: list[int]) -> list[str]: ...

    def _box(self, conn: sqlite3.Connection, account: str, name: str) -> int:
        mailbox_id = self._find_mailbox(conn, account, name)
        if mailbox_id is None:
            raise MailboxError(f"mailbox {name} does not exist", "NONEXISTENT")
        return mailbox_id

    def _forget_names(self, account: str) -> None:
        self._mailbox_ids = {k: v for k, v in self._mailbox_ids.items() if k[0] != account}

    def _new_modseq(self, conn: sqlite3.Connection, mailbox_id: int) -> int:
        (modseq,) = conn.execute(
            "UPDATE mailboxes SET highestmodseq=highestmodseq+1 WHERE id=? RETURNING highestmodseq",
            (mailbox_id,),
        ).fetchone()
        return int(modseq)

    async def list_mailboxes(self, account: str) -> list[MailboxInfo]:
        def read() -> list[MailboxInfo]:
            return [
                MailboxInfo(name, special, bool(sub))
                for name, special, sub in self._reader().execute(
                    "SELECT m.name, m.special_use, s.name IS NOT NULL FROM mailboxes m"
                    " JOIN accounts a ON a.id = m.account_id LEFT JOIN subscriptions s"
                    " ON s.account_id = m.account_id AND s.name = m.name"
                    " WHERE a.name=? ORDER BY m.name",
                    (account,),
                )
            ]

        result: list[MailboxInfo] = self._read_now(read)
        return result

    async def create_mailbox(
        self,
        account: str,
        name: str,
        special_use: str | None = None,
        subscribe: bool = True,
        *,
        limit: int = 0,
    ) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            if self._find_mailbox(conn, account, name) is not None:
                raise MailboxError(f"mailbox {name} already exists", "ALREADYEXISTS")
            account_id = self._account_id(conn, account, create=True)
            # RFC 9051 §6.3.4: create the superior names that are missing.
            missing = [
                path
                for path in (*_superiors(name), name)
                if self._find_mailbox(conn, account, path) is None
            ]
            _check_room(conn, account_id, len(missing), limit)
            for path in missing:
                conn.execute(
                    "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        account_id,
                        path,
                        self._next_uidvalidity(conn),
                        special_use if path == name else None,
                    ),
                )
            if subscribe:
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (account_id, name),
                )
            return None, [self._notify_later([(account, name)])]  # NOTIFY MailboxName

        await self._write(op)

    async def delete_mailbox(self, account: str, name: str) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            if name.upper() == INBOX:
                raise MailboxError("INBOX cannot be deleted", "CANNOT")
            mailbox_id = self._box(conn, account, name)
            child = conn.execute(
                "SELECT 1 FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
                " WHERE a.name=? AND m.name >= ? AND m.name < ? LIMIT 1",
                (account, *_inferiors(name)),
            ).fetchone()
            if child is not None:
                raise MailboxError(f"mailbox {name} has children; delete them first", "HASCHILDREN")
            rows = conn.execute(
                "DELETE FROM messages WHERE mailbox_id=? RETURNING blob_id", (mailbox_id,)
            ).fetchall()
            freed = self._release_blobs(conn, [r[0] for r in rows])
            conn.execute("DELETE FROM expunged WHERE mailbox_id=?", (mailbox_id,))
            conn.execute("DELETE FROM urlauth_keys WHERE mailbox_id=?", (mailbox_id,))
            conn.execute("DELETE FROM mailboxes WHERE id=?", (mailbox_id,))
            self._forget_names(account)
            return None, [
                self._unlink_later(freed),
                self._notify_later([(account, name)]),
                self._text_later(_forget_text(mailbox_id, None)),  # the text index rows
            ]

        await self._write(op)

    async def rename_mailbox(self, account: str, old: str, new: str, *, limit: int = 0) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            source = self._box(conn, account, old)
            if self._find_mailbox(conn, account, new) is not None:
                raise MailboxError(f"mailbox {new} already exists", "ALREADYEXISTS")
            if old != INBOX and new.startswith(old + "/"):
                raise MailboxError("a mailbox cannot move inside itself", "CANNOT")
            account_id = self._account_id(conn, account, create=False)
            # RFC 9051 §6.3.6: the server SHOULD create the superior names that are needed.
            missing = [p for p in _superiors(new) if self._find_mailbox(conn, account, p) is None]
            _check_room(conn, account_id, len(missing) + (old == INBOX), limit)
            self._forget_names(account)
            for path in missing:
                conn.execute(
                    "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (?, ?, ?)",
                    (account_id, path, self._next_uidvalidity(conn)),
                )
            if old == INBOX:
                # RFC 9051 §6.3.6: renaming INBOX moves its messages; INBOX stays, empty.
                cur = conn.execute(
                    "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (?, ?, ?)",
                    (account_id, new, self._next_uidvalidity(conn)),
                )
                target = int(cur.lastrowid or 0)
                uids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT uid FROM messages WHERE mailbox_id=? ORDER BY uid", (source,)
                    )
                ]
                self._copy(conn, source, uids, target, move=True)
                return None, [self._notify_later([(account, INBOX)])]
            # The hierarchy below ``old`` by an exact, case-sensitive range (never LIKE,
            # which folds ASCII case: PROJ/x is not below proj).
            moving = conn.execute(
                "SELECT id, name FROM mailboxes WHERE account_id=?"
                " AND (name=? OR (name >= ? AND name < ?))",
                (account_id, old, *_inferiors(old)),
            ).fetchall()
            renamed = [(mailbox_id, name, new + name[len(old) :]) for mailbox_id, name in moving]
            sources = {name for _, name, _ in renamed}
            for _, _, target_name in renamed:
                taken = self._find_mailbox(conn, account, target_name) is not None
                if taken and target_name not in sources:
                    raise MailboxError(f"mailbox {target_name} already exists", "ALREADYEXISTS")
            if sources & {t for _, _, t in renamed}:
                # A target is still another's source (below a superior-less name): step
                # through names no client can give (control characters are refused).
                conn.executemany(
                    "UPDATE mailboxes SET name=? WHERE id=?",
                    [(f"\x00{mailbox_id}", mailbox_id) for mailbox_id, _, _ in renamed],
                )
            conn.executemany(
                "UPDATE mailboxes SET name=? WHERE id=?",
                [(target_name, mailbox_id) for mailbox_id, _, target_name in renamed],
            )
            # The client renamed it: its subscriptions follow (only a server-made removal
            # is forbidden, RFC 9051 §6.3.7).
            followed = [
                target_name
                for _, name, target_name in renamed
                if conn.execute(
                    "DELETE FROM subscriptions WHERE account_id=? AND name=? RETURNING 1",
                    (account_id, name),
                ).fetchone()
            ]
            conn.executemany(
                "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                [(account_id, target_name) for target_name in followed],
            )
            return None, [self._notify_later([(account, old)])]

        await self._write(op)

    async def set_subscribed(
        self, account: str, name: str, subscribed: bool, *, limit: int = 0
    ) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            account_id = self._account_id(conn, account, create=True)
            if subscribed and limit:
                known = conn.execute(
                    "SELECT 1 FROM subscriptions WHERE account_id=? AND name=?",
                    (account_id, name),
                ).fetchone()
                (count,) = conn.execute(
                    "SELECT count(*) FROM subscriptions WHERE account_id=?", (account_id,)
                ).fetchone()
                if known is None and count >= limit:
                    raise MailboxError(f"at most {limit} subscriptions per account", "LIMIT")
            if subscribed:
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (account_id, name),
                )
            else:
                conn.execute(
                    "DELETE FROM subscriptions WHERE account_id=? AND name=?", (account_id, name)
                )
            return None, [self._notify_later([(account, name)])]  # NOTIFY SubscriptionChange

        await self._write(op)

    async def list_subscriptions(self, account: str) -> list[str]:
        def read() -> list[str]:
            return [
                name
                for (name,) in self._reader().execute(
                    "SELECT s.name FROM subscriptions s JOIN accounts a ON a.id = s.account_id"
                    " WHERE a.name=? ORDER BY s.name",
                    (account,),
                )
            ]

        result: list[str] = self._read_now(read)
        return result

    async def mailbox_status(self, account: str, mailbox: str) -> MailboxStatus:
        def read() -> MailboxStatus:
            conn = self._reader()
            row = conn.execute(
                "SELECT m.id, m.uidnext, m.uidvalidity, m.highestmodseq, m.recent_uid"
                " FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
                " WHERE a.name=? AND m.name=?",
                (account, mailbox),
            ).fetchone()
            if row is None:
                raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
            mailbox_id, uidnext, uidvalidity, modseq, recent_uid = row
            count, unseen, deleted, size, recent, deleted_size = conn.execute(
                # Whole flags only: a flag-extension such as \SeenBy is not \Seen (flags
                # are stored space-separated, system flags in canonical case).
                "SELECT count(*), coalesce(sum(instr(' ' || flags || ' ', ' \\Seen ') = 0), 0),"
                " coalesce(sum(instr(' ' || flags || ' ', ' \\Deleted ') > 0), 0),"
                " coalesce(sum(size), 0),"
                " coalesce(sum(uid >= ?), 0),"
                " coalesce(sum(size * (instr(' ' || flags || ' ', ' \\Deleted ') > 0)), 0)"
                " FROM messages WHERE mailbox_id=?",
                (recent_uid, mailbox_id),
            ).fetchone()
            return MailboxStatus(
                count, uidnext, uidvalidity, unseen, deleted, size, modseq, recent, deleted_size
            )

        result: MailboxStatus = self._read_now(read)
        return result

    async def take_recent(self, account: str, mailbox: str) -> int:
        def claimed() -> int | None:
            row = (
                self._reader()
                .execute(
                    "SELECT m.recent_uid, m.uidnext FROM mailboxes m JOIN accounts a"
                    " ON a.id = m.account_id WHERE a.name=? AND m.name=?",
                    (account, mailbox),
                )
                .fetchone()
            )
            return int(row[0]) if row is not None and row[0] >= row[1] else None

        # Idle sessions by the thousand all ask when a message arrives; one claims it,
        # the others must not queue a write transaction each to learn that.
        already: int | None = self._read_now(claimed)
        if already is not None:
            return already

        def op(conn: sqlite3.Connection) -> tuple[int, list[AfterCommit]]:
            mailbox_id = self._box(conn, account, mailbox)
            (first,) = conn.execute(
                "SELECT recent_uid FROM mailboxes WHERE id=?", (mailbox_id,)
            ).fetchone()
            conn.execute("UPDATE mailboxes SET recent_uid=uidnext WHERE id=?", (mailbox_id,))
            return int(first), []

        first: int = await self._write(op)
        return first

    async def fetch_facts(
        self, account: str, mailbox: str, uids: Sequence[int], *, tree: bool = True
    ) -> dict[int, MessageFacts]:
        wanted = sorted(set(uids))
        # without the part tree (the largest column) when the caller needs no sections
        columns = "f.envelope, f.bodystructure, f.body, " + ("f.tree" if tree else "x''")

        def read() -> dict[int, MessageFacts]:
            conn = self._reader()
            mailbox_id = self._find_mailbox(conn, account, mailbox)
            if mailbox_id is None:
                return {}
            out: dict[int, MessageFacts] = {}
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                lo, hi = batch[0], batch[-1]
                args: tuple[int, ...]
                if hi - lo < 2 * len(batch):
                    # dense UIDs (1:*, a sync): one range scan beats 500 index probes
                    where, args = "m.uid BETWEEN ? AND ?", (mailbox_id, lo, hi)
                    keep: set[int] | None = set(batch) if hi - lo + 1 != len(batch) else None
                else:
                    marks = ",".join("?" * len(batch))
                    where, args, keep = f"m.uid IN ({marks})", (mailbox_id, *batch), None
                for uid, env, bs, body, tr, sent in conn.execute(
                    # facts live apart from blobs: reading them skips the inline body
                    f"SELECT m.uid, {columns}, f.sent_date FROM messages m"
                    f" JOIN blob_facts f ON f.blob_id = m.blob_id"
                    f" WHERE m.mailbox_id=? AND {where}",
                    args,
                ):
                    if keep is None or uid in keep:
                        out[uid] = MessageFacts(env, bs, body, tr, sent)
            return out

        result: dict[int, MessageFacts] = self._read_now(read)
        return result

    async def save_facts(self, account: str, mailbox: str, uid: int, facts: MessageFacts) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            mailbox_id = self._box(conn, account, mailbox)
            conn.execute(
                "INSERT OR REPLACE INTO blob_facts (blob_id, envelope, bodystructure, body,"
                " tree, sent_date) SELECT blob_id, ?, ?, ?, ?, ? FROM messages"
                " WHERE mailbox_id=? AND uid=?",
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

        def op(
            conn: sqlite3.Connection,
        ) -> tuple[tuple[list[MessageInfo], list[int]], list[AfterCommit]]:
            mailbox_id = self._box(conn, account, mailbox)
            changed: list[tuple[int, int, float, tuple[str, ...], int]] = []
            failed: list[int] = []
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                for uid, size, date, text, modseq, zone in conn.execute(
                    "SELECT uid, size, internal_date, flags, modseq, zone FROM messages"
                    f" WHERE mailbox_id=? AND uid IN ({marks}) ORDER BY uid",
                    (mailbox_id, *batch),
                ).fetchall():
                    if unchanged_since is not None and modseq > unchanged_since:
                        failed.append(uid)  # RFC 7162 §3.1.3
                        continue
                    current = _flags(text)
                    new = merge_flags(current, mode, given, given_keys)
                    if new != current:
                        changed.append((uid, size, date, new, zone))
            if not changed:
                return ([], failed), []
            modseq = self._new_modseq(conn, mailbox_id)
            # One UPDATE per resulting flag set and 500 UIDs rather than one per message:
            # a STORE on a whole mailbox mostly gives many messages the same flags.
            groups: dict[tuple[str, ...], list[int]] = {}
            for uid, _, _, new, _ in changed:
                groups.setdefault(new, []).append(uid)
            for new, group in groups.items():
                text = " ".join(new)
                for start in range(0, len(group), 500):
                    part = group[start : start + 500]
                    conn.execute(
                        "UPDATE messages SET flags=?, modseq=? WHERE mailbox_id=?"
                        f" AND uid IN ({','.join('?' * len(part))})",
                        (text, modseq, mailbox_id, *part),
                    )
            infos = [
                MessageInfo(uid, size, date, new, modseq, zone)
                for uid, size, date, new, zone in changed
            ]
            return (infos, failed), [self._notify_later([(account, mailbox)])]

        result: tuple[list[MessageInfo], list[int]] = await self._write(op)
        return result

    def _copy(
        self,
        conn: sqlite3.Connection,
        source: int,
        uids: Sequence[int],
        target: int,
        *,
        move: bool,
    ) -> list[tuple[int, int]]:
        pairs: list[tuple[int, int]] = []
        rows = []
        for start in range(0, len(uids), 500):
            batch = list(uids[start : start + 500])
            marks = ",".join("?" * len(batch))
            rows += conn.execute(
                "SELECT uid, blob_id, size, internal_date, flags, zone FROM messages"
                f" WHERE mailbox_id=? AND uid IN ({marks}) ORDER BY uid",
                (source, *batch),
            ).fetchall()
        if not rows:
            return pairs
        (first_uid, modseq) = conn.execute(
            "UPDATE mailboxes SET uidnext=uidnext+?, highestmodseq=highestmodseq+1 WHERE id=?"
            " RETURNING uidnext-?, highestmodseq",
            (len(rows), target, len(rows)),
        ).fetchone()
        for offset, (uid, blob_id, size, date, flags, zone) in enumerate(rows):
            new_uid = first_uid + offset
            conn.execute(
                "INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, flags,"
                " modseq, zone) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (target, new_uid, blob_id, size, date, flags, modseq, zone),
            )
            pairs.append((uid, new_uid))
        blob_ids = [r[1] for r in rows]
        if move:
            removed_modseq = self._new_modseq(conn, source)
            conn.executemany(
                "DELETE FROM messages WHERE mailbox_id=? AND uid=?",
                [(source, r[0]) for r in rows],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                [(source, r[0], removed_modseq) for r in rows],
            )
        else:
            conn.executemany("UPDATE blobs SET refs=refs+1 WHERE id=?", [(b,) for b in blob_ids])
        return pairs

    async def changes_since(self, account: str, mailbox: str, modseq: int) -> Changes:
        def read() -> Changes:
            conn = self._reader()
            row = conn.execute(
                "SELECT m.id, m.highestmodseq FROM mailboxes m JOIN accounts a"
                " ON a.id = m.account_id WHERE a.name=? AND m.name=?",
                (account, mailbox),
            ).fetchone()
            if row is None:
                raise MailboxError(f"mailbox {mailbox} does not exist", "NONEXISTENT")
            mailbox_id = row[0]
            # One statement, one read snapshot: HIGHESTMODSEQ and the changes agree (a
            # commit between separate reads gave changes newer than the MODSEQ they were
            # shared under, and sessions then told a message's MODSEQ going back).
            rows = conn.execute(
                "SELECT 0, uid, size, internal_date, flags, modseq, zone FROM messages"
                " WHERE mailbox_id=? AND modseq > ?"
                " UNION ALL SELECT 1, uid, 0, 0, '', 0, 0 FROM expunged"
                " WHERE mailbox_id=? AND modseq > ?"
                " UNION ALL SELECT 2, highestmodseq, 0, 0, '', 0, 0 FROM mailboxes WHERE id=?"
                " ORDER BY 1, 2",
                (mailbox_id, modseq, mailbox_id, modseq, mailbox_id),
            ).fetchall()
            messages = tuple(
                MessageInfo(uid, size, date, _flags(flags), ms, zone)
                for kind, uid, size, date, flags, ms, zone in rows
                if kind == 0
            )
            expunged = tuple(r[1] for r in rows if r[0] == 1)
            highest = next((r[1] for r in rows if r[0] == 2), row[1])
            return Changes(int(highest), messages, expunged)

        result: Changes = self._read_now(read)
        return result

    # -- SEARCH TEXT/BODY index (FTS5 trigram, RFC 9051 §6.4.4 substring semantics) ----

    async def text_candidates(
        self, account: str, mailbox: str, needles: Sequence[str]
    ) -> tuple[set[int], set[int]]:
        """(UIDs that may contain every needle, UIDs whose text is not indexed yet).

        The first set is a superset of the true matches: the trigram index can only say
        "all trigrams occur somewhere", so callers verify each candidate; messages not
        indexed yet are always candidates (the second set is a subset of the first).
        Rows of messages gone meanwhile (an expunge by another process, a crash before
        the index caught up) are dropped in the background.
        """
        grams = _trigrams(needles)

        def read() -> tuple[set[int], set[int], tuple[int, int] | None, set[int]]:
            conn = self._reader()
            row = conn.execute(
                "SELECT m.id, m.uidvalidity FROM mailboxes m JOIN accounts a"
                " ON a.id = m.account_id WHERE a.name=? AND m.name=?",
                (account, mailbox),
            ).fetchone()
            if row is None:
                return set(), set(), None, set()
            key = (int(row[0]), int(row[1]))
            # Index first: a message indexed between the two reads must not look stale.
            indexed = {
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM text.docs WHERE mailbox_id=? AND uidvalidity=?", key
                )
            }
            present = {
                r[0] for r in conn.execute("SELECT uid FROM messages WHERE mailbox_id=?", key[:1])
            }
            unindexed, stale = present - indexed, indexed - present
            if not grams:
                return present, unindexed, key, stale
            query = " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)
            hits = {
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM text.docs WHERE mailbox_id=? AND uidvalidity=? AND id IN"
                    " (SELECT rowid FROM text.body WHERE body MATCH ?)",
                    (*key, query),
                )
            }
            return (hits & present) | unindexed, unindexed, key, stale

        maybe, unindexed, key, stale = await self._read(read)
        if key is not None and stale:
            self._text_submit(_forget_text(key[0], sorted(stale)))
        return maybe, unindexed

    async def index_text(self, account: str, mailbox: str, texts: dict[int, str]) -> None:
        """Index the searchable text of messages (by UID); already indexed ones are kept."""
        await self.index_texts({(account, mailbox): texts})

    async def index_texts(self, texts: Mapping[tuple[str, str], Mapping[int, str]]) -> None:
        """One index write for many mailboxes: one FTS5 segment per batch, not per message."""
        wanted = [(key, sorted(items.items())) for key, items in texts.items() if items]
        if not wanted:
            return

        def locate() -> list[tuple[int, int, list[tuple[int, str]]]]:
            conn = self._reader()
            out = []
            for (account, mailbox), items in wanted:
                row = conn.execute(
                    "SELECT m.id, m.uidvalidity FROM mailboxes m JOIN accounts a"
                    " ON a.id = m.account_id WHERE a.name=? AND m.name=?",
                    (account, mailbox),
                ).fetchone()
                if row is not None:
                    out.append((int(row[0]), int(row[1]), items))
            return out

        located: list[tuple[int, int, list[tuple[int, str]]]] = self._read_now(locate)
        if not located:
            return

        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            for mailbox_id, uidvalidity, items in located:
                for uid, text in items:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO docs (mailbox_id, uidvalidity, uid)"
                        " VALUES (?, ?, ?)",
                        (mailbox_id, uidvalidity, uid),
                    )
                    if cur.rowcount:
                        conn.execute(
                            "INSERT INTO body (rowid, text) VALUES (?, ?)", (cur.lastrowid, text)
                        )
            return None, []

        await self._text_committer.submit(op)

    def _text_submit(self, op: WriteOp) -> None:
        """Queue a text-index write without waiting (event-loop thread).

        Best effort: a lost write leaves a message unindexed (found by scanning and
        backfilled) or a row of a gone message (swept by :meth:`text_candidates`).
        """
        self._text_committer.submit(op).add_done_callback(_consume)

    def _text_later(self, op: WriteOp) -> AfterCommit:
        """After a mail commit (writer thread): hand ``op`` to the text index's writer."""
        loop = self._loop

        def action() -> None:
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(self._text_submit, op)
                except RuntimeError:
                    pass  # loop closed: the sweep in text_candidates catches up

        return action

    def _text_copied(
        self,
        conn: sqlite3.Connection,
        source: int,
        target: int,
        pairs: list[tuple[int, int]],
        move: bool,
    ) -> AfterCommit:
        """The index follows a COPY (rows duplicated) or MOVE (rows re-keyed): no re-read."""
        sql = "SELECT uidvalidity FROM mailboxes WHERE id=?"
        (src_v,) = conn.execute(sql, (source,)).fetchone()
        (dst_v,) = conn.execute(sql, (target,)).fetchone()
        return self._text_later(_copy_text(source, int(src_v), target, int(dst_v), pairs, move))


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a failed best-effort write is not an error


def _forget_text(mailbox_id: int, uids: Sequence[int] | None) -> WriteOp:
    """Drop the index rows of expunged messages (``None``: the whole mailbox)."""

    def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
        if uids is None:
            rows = conn.execute(
                "DELETE FROM docs WHERE mailbox_id=? RETURNING id", (mailbox_id,)
            ).fetchall()
        else:
            rows = []
            for start in range(0, len(uids), 500):
                batch = list(uids[start : start + 500])
                marks = ",".join("?" * len(batch))
                rows += conn.execute(
                    f"DELETE FROM docs WHERE mailbox_id=? AND uid IN ({marks}) RETURNING id",
                    (mailbox_id, *batch),
                ).fetchall()
        conn.executemany("DELETE FROM body WHERE rowid=?", rows)
        return None, []

    return op


def _copy_text(
    source: int, src_v: int, target: int, dst_v: int, pairs: list[tuple[int, int]], move: bool
) -> WriteOp:
    def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
        for old, new in pairs:
            row = conn.execute(
                "SELECT id FROM docs WHERE mailbox_id=? AND uidvalidity=? AND uid=?",
                (source, src_v, old),
            ).fetchone()
            if row is None:
                continue  # not indexed yet: the copy is backfilled like any new message
            if move:
                conn.execute(
                    "UPDATE OR IGNORE docs SET mailbox_id=?, uidvalidity=?, uid=? WHERE id=?",
                    (target, dst_v, new, row[0]),
                )
                continue
            cur = conn.execute(
                "INSERT OR IGNORE INTO docs (mailbox_id, uidvalidity, uid) VALUES (?, ?, ?)",
                (target, dst_v, new),
            )
            if cur.rowcount:
                conn.execute(
                    "INSERT INTO body (rowid, text) SELECT ?, text FROM body WHERE rowid=?",
                    (cur.lastrowid, row[0]),
                )
        return None, []

    return op


_MAX_GRAMS = 48  # a subset of a needle's trigrams still selects a superset


def _trigrams(needles: Sequence[str]) -> list[str]:
    grams: dict[str, None] = {}
    for needle in needles:
        for i in range(len(needle) - 2):
            grams.setdefault(needle[i : i + 3], None)
    return list(grams)[:_MAX_GRAMS]


def _superiors(name: str) -> list[str]:
    """``a``, ``a/b`` for ``a/b/c``."""
    parts = name.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


def _inferiors(name: str) -> tuple[str, str]:
    """(low, high): exactly the names below ``name`` satisfy ``low <= n < high``.

    Under SQLite's BINARY collation a name with the prefix ``name/`` sorts from
    ``name/`` up to, not including, ``name0`` ('0' follows '/'); the comparison is
    exact and case-sensitive, and uses the (account_id, name) index.
    """
    return name + "/", name + "0"


def _check_room(conn: sqlite3.Connection, account_id: int | None, adding: int, limit: int) -> None:
    """Refuse to grow an account past ``limit`` mailboxes (0: no limit)."""
    if not limit or not adding:
        return
    (count,) = conn.execute(
        "SELECT count(*) FROM mailboxes WHERE account_id=?", (account_id,)
    ).fetchone()
    if count + adding > limit:
        raise MailboxError(f"at most {limit} mailboxes per account", "LIMIT")  # RFC 9051 §7.1
