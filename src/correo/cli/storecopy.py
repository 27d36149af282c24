"""``correo --data DIR store copy --to postgresql://…``: move an embedded store to PostgreSQL.

Copies everything the embedded store keeps — accounts, mailboxes with their UIDVALIDITY,
UIDs, MODSEQs, flags, keywords, INTERNALDATEs and expunge history, subscriptions, message
bodies and their IMAP structure, the SEARCH index, the outbound queue, Sieve scripts,
vacation memory, junk-filter counts, stored certificates — and the directory (domains,
users with their password hashes, aliases, DKIM keys) once the database holds one.  Then
``[store] url`` switches the node over, and IMAP clients find every mailbox as they left
it: nothing to download again (docs/cluster.md, "Moving an embedded store").

The copy mirrors the source (``correo.store.postgres_copy``): interrupted, it goes on
where it stopped; run again, it copies only what changed since, so the usual move is one
copy while the server runs, then a short second one with the server stopped.  Memory
stays flat: bodies stream in chunks, mailboxes are read a page of messages at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from correo.cli import searchindex
from correo.cli.admin import AdminError
from correo.mua.progress import Progress

if TYPE_CHECKING:
    from correo.store.postgres_copy import PgCopyTarget, TargetMailbox
    from correo.store.sqlite_source import SourceMailbox, SourceMessage, SqliteSource

__all__ = ["CopyReport", "cmd_store_copy", "register"]

#: Messages per page of a mailbox; a batch commits after a page or this many body bytes.
_PAGE: Final = 500
_BATCH_BYTES: Final = 64 << 20
#: Body digests remembered by source body id (a body filed in several mailboxes is hashed
#: once); bounded, so memory stays flat however large the store.
_DIGESTS: Final = 65536
#: Per-account tables of the store (the ``account`` column), and whole small tables.
_ACCOUNT_TABLES: Final = ("sieve_scripts", "vacation_seen", "junk_totals", "junk_tokens")
_GLOBAL_TABLES: Final = ("tls_certificates",)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("store", help="manage the mail store")
    ssub = p.add_subparsers(dest="store_command", required=True)
    a = ssub.add_parser(
        "copy",
        help="copy the embedded store into PostgreSQL (resumable; run again to catch up)",
        description="Copy DATA/store (and the directory) into a PostgreSQL database, keeping"
        " UIDVALIDITY, UIDs and MODSEQs, so IMAP clients need not synchronise again. Then"
        ' set [store] url = "URL" in correo.toml.',
    )
    a.add_argument("--to", required=True, metavar="URL", help="postgresql://USER@HOST/DB")
    a.set_defaults(func=cmd_store_copy)
    searchindex.register(ssub)  # store search-index on|off|status (docs/cluster.md)


@dataclass
class CopyReport:
    """What one run did (a second run over an unchanged store does nothing)."""

    messages: int = 0  # copied
    bytes: int = 0
    updated: int = 0  # flags or MODSEQ changed since an earlier copy
    removed: int = 0  # expunged or deleted from the source since an earlier copy
    mailboxes: int = 0  # mailboxes made in the target
    queued: int = 0
    rows: int = 0  # rows of the other tables written
    vanished: int = 0  # gone from the source while being copied: run the copy again

    def summary(self) -> str:
        text = (
            f"{self.messages} messages copied ({self.bytes / 1e6:.1f} MB), {self.updated}"
            f" updated, {self.removed} removed, {self.mailboxes} new mailboxes,"
            f" {self.queued} queued messages, {self.rows} other rows"
        )
        if self.vanished:
            text += (
                f"; {self.vanished} messages changed while being copied: run the copy"
                " again (with the server stopped) before switching"
            )
        return text


def cmd_store_copy(args: argparse.Namespace) -> int:
    url: str = args.to
    if not url.startswith(("postgresql://", "postgres://")):
        raise AdminError("--to must be a postgresql:// URL")
    data_dir: Path = args.data_dir
    root = data_dir / "store"
    if not (root / "mail.db").exists():
        raise AdminError(f"there is no embedded store in {root}")
    try:
        from correo.store.postgres_copy import CopyError, PgCopyTarget
        from correo.store.sqlite_source import SqliteSource
    except ImportError as exc:
        raise AdminError(
            f"psycopg is not installed ({exc}): pip install 'correo[postgresql]'"
        ) from None
    asyncio.run(_current_schema(root))
    source = SqliteSource(root)
    source.open()
    target = PgCopyTarget(url)
    try:
        target.open()
        report = StoreCopy(source, target, data_dir).run()
    except CopyError as exc:
        raise AdminError(str(exc)) from None
    finally:
        target.close()
        source.close()
    print(report.summary())
    print(f'Then set [store] url = "{url}" in {data_dir / "correo.toml"} and restart correo.')
    return 0


async def _current_schema(root: Path) -> None:
    """Opening the embedded store upgrades an older schema: the copy reads the current one."""
    from correo.store.sqlite import SqliteStore

    store = SqliteStore(root)
    await store.open()
    await store.close()


def _copy_id(root: Path) -> int:
    """This store's name for ``meta.store_copy``: random, kept beside it."""
    path = root / "copy-id"
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        value = secrets.randbits(62)
        path.write_text(f"{value}\n")
        return value


class StoreCopy:
    """One run of the copy, source to target, with its progress bar."""

    def __init__(self, source: SqliteSource, target: PgCopyTarget, data_dir: Path) -> None:
        self.source = source
        self.target = target
        self.data_dir = data_dir
        self.report = CopyReport()
        self.digests: OrderedDict[int, bytes] = OrderedDict()
        self.progress = Progress("Copying")
        self._pending = 0  # body bytes written since the last commit

    def run(self) -> CopyReport:
        source, target = self.source, self.target
        target.claim(_copy_id(source.root))
        messages, queued = source.counts()
        self.progress.total = messages + queued
        self._mailboxes()
        self._queue()
        self._tables()
        self._quota_limits()
        self._directory()
        top = max((b.uidvalidity for b in source.mailboxes()), default=0)
        target.raise_uidvalidity(max(top, source.meta("uidvalidity") or 0))
        target.commit()
        self.progress.finish()
        return self.report

    # -- mailboxes ----------------------------------------------------------------------

    def _mailboxes(self) -> None:
        source, target = self.source, self.target
        have = target.accounts()
        accounts = {
            name: have[name] if name in have else target.add_account(name, created)
            for name, created in source.accounts()
        }
        target.commit()
        found = target.mailboxes()
        copied: set[tuple[str, str]] = set()
        for box in source.mailboxes():
            key = (box.account, box.name)
            copied.add(key)
            self._mailbox(box.id, accounts[box.account], found.get(key))
        for key, (mailbox_id, *_counters) in found.items():
            if key not in copied:  # deleted from the source since an earlier copy
                self.report.removed += target.drop_mailbox(mailbox_id)
        for name, account_id in have.items():
            if name not in accounts:
                target.drop_account(account_id)
        for name, account_id in accounts.items():
            target.set_subscriptions(account_id, source.subscriptions(name))
        target.commit()

    def _mailbox(self, source_id: int, account_id: int, found: TargetMailbox | None) -> None:
        source, target = self.source, self.target
        with source.snapshot():
            box = source.mailbox(source_id)
            if box is None:
                return  # deleted meanwhile: the next run removes it from the target
            mailbox_id = target.prepare_mailbox(box, account_id, found)
            if found is None or found[0] != mailbox_id:
                self.report.mailboxes += 1
            after = 0
            while True:
                page = source.messages(box.id, after, _PAGE)
                upto = page[-1].uid if len(page) == _PAGE else None  # last page: the rest
                have = target.messages(mailbox_id, after, upto)
                wanted = {m.uid for m in page}
                gone = sorted(uid for uid in have if uid not in wanted)
                target.remove_messages(mailbox_id, gone)
                self.report.removed += len(gone)
                for msg in page:
                    self._message(mailbox_id, msg, have.get(msg.uid))
                self._texts(box, mailbox_id, after, upto)
                self._commit()
                if upto is None:
                    break
                after = upto
            target.set_expunged(mailbox_id, source.expunged(box.id))
            target.set_urlauth_key(mailbox_id, source.urlauth_key(box))
            self._commit()

    def _message(self, mailbox_id: int, msg: SourceMessage, have: tuple[int, str] | None) -> None:
        self.progress.advance()
        if have is not None:
            if have != (msg.modseq, msg.flags):
                self.target.set_flags(mailbox_id, msg)
                self.report.updated += 1
            return
        blob_id = self._body(msg.blob_id)
        if blob_id is None:
            self.report.vanished += 1
            return
        self.target.add_message(mailbox_id, msg, blob_id)
        self.report.messages += 1
        self.report.bytes += msg.size
        self._pending += msg.size
        if self._pending >= _BATCH_BYTES:
            self._commit()

    def _body(self, source_blob: int) -> int | None:
        """The target body for a source body (one more reference), or None if it is gone."""
        source, target = self.source, self.target
        body = source.body(source_blob)
        if body is None:
            return None
        try:
            digest = self.digests.get(source_blob)
            if digest is None:
                digest = source.digest(body)
                self.digests[source_blob] = digest
                if len(self.digests) > _DIGESTS:
                    self.digests.popitem(last=False)
            if body.data is not None:  # inline: nothing can vanish half-way
                blob_id: int = target.blob(digest, body, lambda n: source.chunks(body, n))
                return blob_id
            with target.conn.transaction():  # a savepoint: a file gone half-way leaves nothing
                blob_id = target.blob(digest, body, lambda n: source.chunks(body, n))
                return blob_id
        except OSError:
            return None  # expunged (its file removed) after this mailbox's snapshot began

    def _texts(self, box: SourceMailbox, mailbox_id: int, after: int, upto: int | None) -> None:
        """The SEARCH index rows of this page that the target lacks."""
        have = self.target.indexed(mailbox_id, after, upto)
        position = after
        while True:
            rows = self.source.texts(box, position, _PAGE)
            rows = [r for r in rows if upto is None or r[0] <= upto]
            if not rows:
                return
            self.target.add_texts(mailbox_id, [r for r in rows if r[0] not in have])
            position = rows[-1][0]

    def _commit(self) -> None:
        """After each page, and within one past _BATCH_BYTES of bodies: an interrupted
        copy loses at most that much work."""
        self.target.commit()
        self._pending = 0

    # -- the queue ----------------------------------------------------------------------

    def _queue(self) -> None:
        from correo.store.postgres_copy import recipient_row

        source, target = self.source, self.target
        have = target.queue()
        wanted = set()
        for row in source.queue():
            queue_id = int(row[0])
            wanted.add(queue_id)
            self.progress.advance()
            recipients = source.queue_recipients(queue_id)
            if queue_id not in have:
                blob_id = self._body(int(row[1]))
                if blob_id is None:
                    continue  # delivered meanwhile
                target.add_queued(row, blob_id)
                target.set_recipients(queue_id, recipients)
                self.report.queued += 1
            elif have[queue_id] != [recipient_row(r) for r in recipients]:
                target.set_recipients(queue_id, recipients)
                self.report.updated += 1
            target.commit()
        for queue_id in have:
            if queue_id not in wanted:  # delivered or deleted since an earlier copy
                target.remove_queued(queue_id)
                self.report.removed += 1
        target.queue_ids_follow()
        target.commit()

    # -- Sieve, vacation, junk filter, certificates --------------------------------------

    def _tables(self) -> None:
        source, target = self.source, self.target
        present = source.tables()
        for table in _ACCOUNT_TABLES:
            if table not in present or not target.has_table(table):
                continue
            columns, types, key = self._layout(table)
            accounts = {str(r[0]) for r in source.rows(table, ["DISTINCT account"])}
            accounts |= {str(r[0]) for r in target.rows(table, ["DISTINCT account"], "", ())}
            for account in sorted(accounts):
                rows = source.rows(table, columns, "account = ?", (account,))
                self.report.rows += target.mirror(
                    table,
                    columns,
                    key,
                    [_coerced(r, types) for r in rows],
                    target.rows(table, columns, "account = %s", (account,)),
                )
                target.commit()
        for table in _GLOBAL_TABLES:
            if table not in present or not target.has_table(table):
                continue
            columns, types, key = self._layout(table)
            self.report.rows += target.mirror(
                table,
                columns,
                key,
                [_coerced(r, types) for r in source.rows(table, columns)],
                target.rows(table, columns, "", ()),
            )
            target.commit()

    def _quota_limits(self) -> None:
        """Each account's own quota limits, by account name (account ids differ between
        the stores); the usage was counted by the target's own triggers as the messages
        were copied."""
        source, target = self.source, self.target
        if "quotas" not in source.tables() or not target.has_table("quotas"):
            return
        ids = target.accounts()
        for name, storage, messages in source.rows(
            "quotas q JOIN accounts a ON a.id = q.account_id",
            ["a.name", "q.storage", "q.messages"],
        ):
            account_id = ids.get(str(name))
            if account_id is not None:
                target.set_quota_limits(account_id, storage, messages)
        target.commit()

    # -- the directory -----------------------------------------------------------------

    def _directory(self) -> None:
        """Domains, users with their password hashes, aliases, and DKIM keys.

        The tables are copied as they are: the Directory API takes passwords, not their
        hashes.  The keys go through both directories' KeyStore interface.
        """
        from correo.store.sqlite_source import read_table

        path = self.data_dir / "directory.db"
        target = self.target
        if not path.exists() or not target.has_table("users"):
            return  # no directory here, or a database whose schema has none yet
        tables = {t: read_table(path, t) for t in ("domains", "users", "aliases")}
        layouts = {t: self._layout(t, columns) for t, (columns, _rows) in tables.items()}

        def rows(table: str, *, keep_others: bool = False) -> int:
            columns, types, key = layouts[table]
            wanted = [
                _coerced(_pick(r, tables[table][0], columns), types) for r in tables[table][1]
            ]
            have = target.rows(table, columns, "", ())
            if keep_others:  # new domains first; gone ones after their users and aliases
                keys = {tuple(r[columns.index(k)] for k in key) for r in wanted}
                have = [r for r in have if tuple(r[columns.index(k)] for k in key) in keys]
            written: int = target.mirror(table, columns, key, wanted, have)
            return written

        written = rows("domains", keep_others=True)
        written += rows("users") + rows("aliases") + rows("domains")
        if written:
            target.directory_changed()
        target.commit()
        self.report.rows += written
        self._dkim_keys([str(r[0]) for r in tables["domains"][1]])

    def _dkim_keys(self, domains: list[str]) -> None:
        from correo.directory.postgres import PostgresDirectory
        from correo.directory.sqlite import SqliteDirectory

        source = SqliteDirectory(self.data_dir / "directory.db")
        target = PostgresDirectory(self.target.url)
        try:
            for domain in domains:
                have = {k.selector: k for k in target.dkim.stored_keys(domain)}
                keys = source.dkim.stored_keys(domain)
                new = [k for k in keys if k.selector not in have]
                retire = [
                    k.selector
                    for k in keys
                    if k.retired and k.selector in have and not have[k.selector].retired
                ]
                if new or retire:
                    target.dkim.rotate(domain, new, retire)
                    self.report.rows += len(new) + len(retire)
        finally:
            target.close()
            source.close()

    def _layout(
        self, table: str, source_columns: list[str] | None = None
    ) -> tuple[list[str], list[str], list[str]]:
        """Columns both sides have, their target types, and the target's primary key."""
        target_types = self.target.columns(table)
        present = self.source.columns(table) if source_columns is None else source_columns
        columns = [c for c in present if c in target_types]
        return columns, [target_types[c] for c in columns], self.target.primary_key(table)


def _pick(row: tuple[Any, ...], have: list[str], want: list[str]) -> tuple[Any, ...]:
    return tuple(row[have.index(c)] for c in want)


def _coerced(row: tuple[Any, ...], types: list[str]) -> tuple[Any, ...]:
    from correo.store.postgres_copy import coerce

    return tuple(coerce(v, t) for v, t in zip(row, types, strict=True))
