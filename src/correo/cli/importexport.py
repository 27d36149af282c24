"""``correo import`` / ``correo export``: move whole mailboxes between Maildir/mbox and the store.

Memory stays flat: each message streams from its file into a store spool (which spills
to disk past its memory limit) while its SHA-256 and IMAP structure facts are computed
in the same pass.  Reruns add no duplicates: the store remembers a digest per stored
body (``message_digests``), and the k-th copy of a message in the source is imported
only if the folder holds fewer than k copies.  It works beside a running server: the
store is SQLite in WAL mode with a busy timeout, so both processes commit safely.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from correo.delivery.facts import FactsBuilder
from correo.delivery.textindex import index_delivered, indexer_for
from correo.directory.factory import directory_for_data
from correo.mua.mailfile import (
    LocalMessage,
    MaildirWriter,
    MboxWriter,
    maildir_folders,
    read_maildir,
    read_mbox,
)
from correo.mua.progress import Progress
from correo.store.api import (
    DeliveryTarget,
    Envelope,
    MailboxError,
    MailStore,
    MessageFacts,
    Spool,
)
from correo.store.factory import store_for_data

__all__ = ["ImportExportError", "cmd_export", "cmd_import", "register"]

_IN_FLIGHT = 32  # concurrent deliveries: the store's group commit shares one fsync
_RECORD_EVERY = 500
_SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}


class ImportExportError(Exception):
    """The import or export cannot start; the message says why."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        help="import a Maildir or mbox into an account (flags, keywords, dates kept; "
        "reruns add no duplicates)",
    )
    p.add_argument("--user", required=True, metavar="ADDRESS", help="the account to fill")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--maildir", type=Path, metavar="PATH", help="a Maildir or Maildir++ tree")
    src.add_argument(
        "--mbox", type=Path, metavar="PATH", help="an mbox file, or a folder of mbox files"
    )
    p.add_argument(
        "--folder",
        metavar="NAME",
        default=None,
        help="target mailbox (default: INBOX; for a Maildir++ tree or an mbox folder, "
        "each subfolder goes to the mailbox of the same name)",
    )
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("export", help="export an account to a Maildir++ tree or mbox files")
    p.add_argument("--user", required=True, metavar="ADDRESS", help="the account to export")
    dst = p.add_mutually_exclusive_group(required=True)
    dst.add_argument("--maildir", type=Path, metavar="OUT", help="write a Maildir++ tree here")
    dst.add_argument(
        "--mbox", type=Path, metavar="OUT", help="write one mbox file per mailbox here"
    )
    p.add_argument(
        "--folder",
        metavar="NAME",
        default=None,
        help="export only this mailbox (with --mbox, OUT is then one file)",
    )
    p.set_defaults(func=cmd_export)


def _account(args: argparse.Namespace) -> str:
    if not (args.data_dir / "correo.toml").exists():
        raise ImportExportError(f"{args.data_dir} is not a correo data folder")
    directory = directory_for_data(args.data_dir)
    try:
        resolved = directory.resolve(args.user)
    finally:
        directory.close()
    if resolved is None or not resolved.account:
        raise ImportExportError(f"no such user: {args.user}")
    return str(resolved.account)


def _mbox_sources(path: Path) -> Iterator[tuple[str, Path]]:
    """Every mbox file under a folder, named by its relative path (Thunderbird's .sbd too)."""
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path)
        if not file.is_file() or any(p.startswith(".") for p in rel.parts):
            continue
        if file.suffix in (".msf", ".json", ".dat"):
            continue
        parts = [p.removesuffix(".sbd") for p in rel.parts]
        parts[-1] = parts[-1].removesuffix(".mbox")
        name = "/".join(parts)
        yield ("INBOX" if name.lower() == "inbox" else name), file


def cmd_import(args: argparse.Namespace) -> int:
    try:
        account = _account(args)
        if args.maildir is not None:
            if not args.maildir.is_dir():
                raise ImportExportError(f"{args.maildir} is not a Maildir")
            if args.folder:
                folders = [(args.folder, args.maildir)]
            else:
                folders = maildir_folders(args.maildir)
            if not folders:
                raise ImportExportError(f"{args.maildir} has no cur/ or new/ folder")
        else:
            if args.mbox.is_dir():
                folders = list(_mbox_sources(args.mbox))
                if args.folder:
                    folders = [
                        (args.folder if n == "INBOX" else f"{args.folder}/{n}", p)
                        for n, p in folders
                    ]
            elif args.mbox.is_file():
                folders = [(args.folder or "INBOX", args.mbox)]
            else:
                raise ImportExportError(f"{args.mbox} does not exist")
    except ImportExportError as exc:
        print(f"correo: {exc}", file=sys.stderr)
        return 2
    mbox = args.mbox is not None
    totals = asyncio.run(_import(args.data_dir, account, folders, mbox))
    added, skipped = totals
    print(f"imported {added} message(s) for {account}, skipped {skipped} already present")
    return 0


async def _import(
    data_dir: Path, account: str, folders: list[tuple[str, Path]], mbox: bool
) -> tuple[int, int]:
    store = store_for_data(data_dir)
    await store.open()
    added = skipped = 0
    try:
        for name, path in folders:
            if mbox:
                # Blocking reads are fine here: this process does nothing else meanwhile.
                fh = await asyncio.to_thread(open, path, "rb")
                try:
                    progress = Progress(f"{name}")
                    a, s = await _import_folder(store, account, name, read_mbox(fh), progress)
                finally:
                    fh.close()
            else:
                total = sum(
                    1
                    for sub in ("new", "cur")
                    if (path / sub).is_dir()
                    for _ in (path / sub).iterdir()
                )
                progress = Progress(f"{name}", total)
                a, s = await _import_folder(store, account, name, read_maildir(path), progress)
            progress.finish()
            added += a
            skipped += s
        await indexer_for(store).drain()
    finally:
        await store.close()
    return added, skipped


async def _import_folder(
    store: MailStore,
    account: str,
    folder: str,
    messages: Iterator[LocalMessage],
    progress: Progress,
) -> tuple[int, int]:
    try:
        await store.create_mailbox(account, folder, _SPECIAL_USE.get(folder))
    except MailboxError:
        pass  # it exists (ALREADYEXISTS), or INBOX which always does
    existing = Counter((await store.message_digests(account, folder)).values())
    seen: Counter[str] = Counter()
    pending: set[asyncio.Task[tuple[int, str]]] = set()
    digests: dict[int, str] = {}
    added = skipped = 0

    async def deliver(
        spool: Spool, msg: LocalMessage, facts: MessageFacts, digest: str
    ) -> tuple[int, str]:
        delivered = await store.deliver(
            spool,
            Envelope(sender=msg.sender if "@" in msg.sender else "", peer="import"),
            [DeliveryTarget(account, folder, msg.flags)],
            facts=facts,
            internal_date=msg.internal_date,
        )
        index_delivered(store, delivered)  # SEARCH TEXT index, drained before closing
        return delivered.uids[0][1], digest

    async def settle(last: bool) -> None:
        # A whole batch at once: its deliveries share one group commit (one fsync).
        if pending:
            for uid, digest in await asyncio.gather(*pending):
                digests[uid] = digest
            pending.clear()
        if digests and (len(digests) >= _RECORD_EVERY or last):
            await store.record_digests(account, folder, dict(digests))
            digests.clear()

    try:
        for msg in messages:
            spool = store.new_spool()
            hasher = hashlib.sha256()
            facts = FactsBuilder()
            for chunk in msg.chunks:
                spool.write(chunk)
                hasher.update(chunk)
                facts.feed(chunk)
            digest = hasher.hexdigest()
            seen[digest] += 1
            progress.advance()
            if seen[digest] <= existing[digest]:
                spool.discard()
                skipped += 1
                continue
            pending.add(asyncio.create_task(deliver(spool, msg, facts.finish(), digest)))
            added += 1
            if len(pending) >= _IN_FLIGHT:
                await settle(False)
    finally:
        await settle(True)
    return added, skipped


# -- export ----------------------------------------------------------------------------


def _sync_chunks(agen: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """Pull an async stream from a worker thread, one chunk at a time (flat memory)."""
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(agen.__anext__(), loop).result()  # type: ignore[arg-type]
        except StopAsyncIteration:
            return


def cmd_export(args: argparse.Namespace) -> int:
    try:
        account = _account(args)
        out: Path = args.maildir if args.maildir is not None else args.mbox
        if args.maildir is not None and any(
            (out / sub).is_dir() and any((out / sub).iterdir()) for sub in ("cur", "new")
        ):
            raise ImportExportError(f"{out} already holds messages; export into a new folder")
        if args.mbox is not None and args.folder and out.exists():
            raise ImportExportError(f"{out} exists; export into a new file")
    except ImportExportError as exc:
        print(f"correo: {exc}", file=sys.stderr)
        return 2
    try:
        count = asyncio.run(_export(args, account, out))
    except ImportExportError as exc:
        print(f"correo: {exc}", file=sys.stderr)
        return 2
    print(f"exported {count} message(s) of {account} to {out}")
    return 0


async def _export(args: argparse.Namespace, account: str, out: Path) -> int:
    store = store_for_data(args.data_dir)
    await store.open()
    loop = asyncio.get_running_loop()
    count = 0
    try:
        names = [b.name for b in await store.list_mailboxes(account)]
        if args.folder:
            if args.folder not in names:
                raise ImportExportError(f"{account} has no mailbox {args.folder}")
            names = [args.folder]
        for name in names:
            infos = await store.list_messages(account, name)
            progress = Progress(name, len(infos))
            if args.maildir is not None:
                maildir = MaildirWriter(MaildirWriter.folder(out, name))
                for info in infos:
                    chunks = _sync_chunks(store.read_message(account, name, info.uid), loop)
                    await asyncio.to_thread(maildir.add, chunks, info.flags, info.internal_date)
                    progress.advance()
                await asyncio.to_thread(maildir.sync)
            else:
                target = out if args.folder else out / f"{name}.mbox"
                if not args.folder and target.exists():
                    raise ImportExportError(f"{target} exists; export into a new folder")
                mbox = MboxWriter(target)
                try:
                    for info in infos:
                        chunks = _sync_chunks(store.read_message(account, name, info.uid), loop)
                        await asyncio.to_thread(mbox.add, chunks, info.flags, info.internal_date)
                        progress.advance()
                finally:
                    await asyncio.to_thread(mbox.close)
            progress.finish()
            count += len(infos)
    finally:
        await store.close()
    return count
