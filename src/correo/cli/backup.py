"""``correo backup OUT`` and ``correo verify``: a point-in-time copy of a data folder
taken while the server runs, and a check of one.

The copy is a data folder itself: ``correo --data OUT serve`` is the restore.  Every
SQLite database found in the folder (the store's ``mail.db`` and ``text.db``, the
directory, any other) is copied with SQLite's online backup API from one snapshot
taken while the store's writes pause for an instant; the store's body files are hard
links where the file system allows (they are never modified in place), copies
otherwise; every other file (correo.toml, the TLS certificate and key, DKIM keys, the
MTA-STS cache) is copied as it is.  Why this is consistent is explained in
``correo.store.sqlite_backup``; docs/operations.md is the administrator's guide.

With a PostgreSQL store (``[store] url``) the mail is in the database: ``pg_dump``
writes it to ``OUT/store.pgdump`` (its own consistent snapshot), and the data folder's
own files are copied as above.

The folder is built as ``.OUT.partial`` beside OUT and renamed when complete, so an
interrupted backup never looks like a finished one.  ``OUT/backup.json`` records when
it was taken and how many messages each mailbox held, for ``verify``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from correo import __version__
from correo.cli.admin import AdminError
from correo.config import ConfigError, load_config
from correo.mua.progress import Progress
from correo.store import sqlite_backup as sb
from correo.store.api import StoreError
from correo.store.checks import Findings
from correo.store.factory import store_url

__all__ = ["MANIFEST", "cmd_backup", "cmd_verify", "register"]

MANIFEST = "backup.json"
PG_DUMP = "store.pgdump"
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Never copied: SQLite's side files (the copy is made through the API), lock files,
#: spool files of messages still being received.
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".lock")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backup",
        help="copy the data folder, consistently, while the server runs (restore: serve OUT)",
    )
    p.add_argument("out", metavar="OUT", help="folder to create for the backup (must not exist)")
    p.add_argument(
        "--copy",
        action="store_true",
        help="copy message files even where hard links to the data folder's are possible",
    )
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser(
        "verify",
        help="check a data folder or backup: databases, every message body, mailbox counts",
    )
    p.set_defaults(func=cmd_verify)


# -- backup -----------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, flush=True)


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _walk(data: Path) -> Iterator[tuple[Path, os.DirEntry[str]]]:
    """Every entry of the data folder but the store's body files, spool and staging, and
    a PostgreSQL node's body cache (copies of what the database holds)."""
    skip_dirs = {data / "store" / "blobs", data / "store" / "tmp", data / "cache" / "bodies"}
    stack = [data]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    if path not in skip_dirs and not entry.name.startswith(".backup-"):
                        stack.append(path)
                    continue
                if entry.name.endswith(_SKIP_SUFFIXES):
                    continue
                yield path, entry


def _databases(data: Path) -> list[Path]:
    return sorted(
        path
        for path, entry in _walk(data)
        if entry.is_file(follow_symlinks=False) and _is_sqlite(path)
    )


def _check_target(data: Path, out: Path) -> None:
    if not (data / "correo.toml").is_file():
        raise AdminError(f"{data} is not a correo data folder (no correo.toml)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AdminError(f"{out} already exists; a backup goes into a new folder")
    real_data, real_out = data.resolve(), out.resolve()
    if real_out.is_relative_to(real_data) or real_data.is_relative_to(real_out):
        raise AdminError(f"{out} must be outside the data folder {data}")


def cmd_backup(args: argparse.Namespace) -> int:
    data: Path = args.data_dir
    out = Path(args.out).absolute()
    _check_target(data, out)
    try:
        url = store_url(data)
    except StoreError as exc:
        raise AdminError(str(exc)) from None
    started = time.monotonic()
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted backup
    partial.mkdir(mode=0o700, parents=True)
    try:
        manifest: dict[str, Any] = {
            "correo": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if url:
            manifest |= _dump_postgres(url, partial)
        manifest |= _copy_folder(data, partial, url=url, copy=args.copy)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        _sync_tree(partial)
        if out.exists():
            out.rmdir()  # an empty folder given as OUT
        os.rename(partial, out)
    except (sqlite3.Error, OSError) as exc:  # locked past the busy timeout, a full disk
        shutil.rmtree(partial, ignore_errors=True)
        raise AdminError(f"backup failed, {out} not written: {exc}") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for note in _outside_notes(data):
        _say(note)
    blobs = manifest.get("blobs", {})
    mail = (
        f"the PostgreSQL store in {PG_DUMP}"
        if url
        else f"{manifest['messages']} message(s), {blobs.get('linked', 0)} message file(s)"
        f" hard-linked and {blobs.get('copied', 0)} copied"
    )
    _say(
        f"backup of {data} in {out}: {mail}, {len(manifest['databases'])} database(s),"
        f" {manifest['files']} other file(s), in {time.monotonic() - started:.1f} s"
    )
    return 0


def _copy_folder(data: Path, out: Path, *, url: str, copy: bool) -> dict[str, Any]:
    """The data folder's databases (one snapshot), body files and other files."""
    databases = _databases(data)
    store = data / "store"
    mail_db = store / "mail.db"
    sqlite_store = not url and mail_db in databases
    blob_out = out / "store" / "blobs"
    stage = blob_out
    if sqlite_store:
        (out / "store").mkdir(exist_ok=True)
        blob_dir = store / "blobs"
        blob_dir.mkdir(exist_ok=True)
        _drop_stale_stages(store)
        if copy or os.stat(blob_dir).st_dev != os.stat(out).st_dev:
            # links on the data's own file system first; copied out once the lock is gone
            stage = store / f".backup-{os.getpid()}"
            shutil.rmtree(stage, ignore_errors=True)
    snapshots: dict[Path, sqlite3.Connection] = {}
    counts: list[tuple[str, str, int]] = []
    staged = sb.BlobCopy()
    try:
        pause = sb.writes_paused(mail_db) if sqlite_store else contextlib.nullcontext()
        with pause:  # the backup's point in time: no commit until the links are made
            for db in databases:
                snapshots[db] = sb.read_snapshot(db)
            if sqlite_store:
                staged = sb.stage_blobs(store / "blobs", stage)
        if sqlite_store:
            counts = sb.mailbox_counts(snapshots[mail_db])
        for db in databases:
            target = out / db.relative_to(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            progress = Progress(f"copying {db.relative_to(data)} (pages)")
            sb.copy_database(snapshots[db], target, _pages(progress))
            progress.finish()
            snapshots.pop(db).close()
        result: dict[str, Any] = {
            "store": "postgresql" if url else "sqlite",
            "databases": [str(db.relative_to(data)) for db in databases],
            "messages": sum(n for _, _, n in counts),
            "mailboxes": [list(c) for c in counts],
        }
        if sqlite_store:
            result["blobs"] = _finish_blobs(out, stage, blob_out, staged)
    finally:
        for conn in snapshots.values():
            conn.close()
        if stage != blob_out:
            shutil.rmtree(stage, ignore_errors=True)
    result["files"] = _copy_files(data, out, set(databases))
    return result


def _drop_stale_stages(store: Path) -> None:
    """Staging folders of backups that died: their links would keep deleted mail on disk."""
    for stage in store.glob(".backup-*"):
        pid = stage.name.removeprefix(".backup-")
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                continue  # that backup still runs
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(stage, ignore_errors=True)


def _pages(progress: Progress) -> Any:
    def update(done: int, total: int) -> None:
        progress.total = total
        progress.advance(done - progress.done)

    return update


def _finish_blobs(out: Path, stage: Path, blob_out: Path, staged: sb.BlobCopy) -> dict[str, int]:
    """Keep the body files the snapshot refers to; digests for the ones without."""
    mail_db = out / "store" / "mail.db"
    removed, missing = sb.keep_referenced(mail_db, stage)
    if missing:
        raise AdminError(
            f"backup incomplete: {len(missing)} message file(s) vanished during the backup"
            f" (e.g. {missing[0]}); is another program deleting files in the data folder?"
        )
    kept = staged.linked + staged.copied - removed
    linked, copied = staged.linked, staged.copied
    if stage != blob_out:
        progress = Progress("copying message files", kept)
        sb.move_blobs(stage, blob_out, progress.advance)
        progress.finish()
        linked, copied = 0, kept
    else:
        linked = max(0, linked - removed)
    progress = Progress("recording digests")
    sb.record_digests(mail_db, blob_out, progress.advance)
    progress.finish()
    return {"linked": linked, "copied": copied}


def _copy_files(data: Path, out: Path, databases: set[Path]) -> int:
    """Every other regular file (and symlink) of the folder, streamed; sockets skipped."""
    copied = 0
    for path, entry in _walk(data):
        if path in databases:
            continue
        target = out / path.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.is_symlink():
            os.symlink(os.readlink(path), target)
        elif entry.is_file(follow_symlinks=False):
            try:
                shutil.copy2(path, target)  # sendfile(): no whole file in memory
            except FileNotFoundError:
                continue  # removed meanwhile (a cache rewritten by rename)
        else:
            continue  # the LMTP socket, a FIFO
        copied += 1
    return copied


def _sync_tree(root: Path) -> None:
    """fsync every folder: new names (links, copies) survive a power cut."""
    for folder, _dirs, _files in os.walk(root):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _outside_notes(data: Path) -> Iterator[str]:
    """Files the config names outside the data folder are not in the backup: say so."""
    try:
        config = load_config(data)
    except ConfigError:
        return
    real = data.resolve()
    for key, value in (
        ("[tls] certificate", config.tls.certificate),
        ("[tls] key", config.tls.key),
    ):
        path = config.path(value).resolve()
        if not path.is_relative_to(real):
            yield f"note: {key} {path} is outside the data folder and not in the backup"


def _dump_postgres(url: str, out: Path) -> dict[str, Any]:
    """``pg_dump`` of the shared database; the password goes by environment, not argv."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise AdminError(
            "the store is PostgreSQL and pg_dump is not installed (Debian: postgresql-client)"
        )
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:
        raise AdminError("the store is PostgreSQL and psycopg is not installed") from None
    params = conninfo_to_dict(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    _say("dumping the PostgreSQL store with pg_dump")
    result = subprocess.run(
        [
            pg_dump,
            "--format=custom",
            "--no-owner",
            f"--file={out / PG_DUMP}",
            f"--dbname={make_conninfo('', **params)}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        raise AdminError(f"pg_dump failed: {detail[-1] if detail else result.returncode}")
    return {"dump": PG_DUMP}


# -- verify -----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    data: Path = args.data_dir
    if not (data / "correo.toml").is_file():
        raise AdminError(f"{data} is not a correo data folder (no correo.toml)")
    findings = Findings(_say)
    manifest = _read_manifest(data, findings)
    try:
        load_config(data)
    except ConfigError as exc:
        findings.problem("config", str(exc))
    for db in _databases(data):
        sb.check_database(db, findings)
    try:
        url = store_url(data)
    except StoreError as exc:
        findings.problem("config", str(exc))
        url = ""
    if url:
        _verify_postgres(url, data, manifest, findings)
    else:
        expected = None
        if manifest is not None and "mailboxes" in manifest:
            expected = {(a, m): int(n) for a, m, n in manifest["mailboxes"]}
        progress = Progress("checking message bodies")
        checked, undigested = sb.check_store(data / "store", findings, expected, progress.advance)
        progress.finish()
        _say(f"checked {checked} message bodies")
        if undigested:
            findings.note(
                f"{undigested} body(ies) have no recorded SHA-256 (checked by size only);"
                " a backup records one for every body"
            )
    _say(findings.summary())
    return 0 if findings.ok else 1


def _read_manifest(data: Path, findings: Findings) -> dict[str, Any] | None:
    path = data / MANIFEST
    if not path.exists():
        findings.note(f"no {MANIFEST}: not a backup, so no mailbox counts to compare")
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        findings.problem("manifest", f"{path}: {exc}")
        return None
    if not isinstance(manifest, dict):
        findings.problem("manifest", f"{path}: not a JSON object")
        return None
    _say(f"backup taken {manifest.get('created', '?')} by correo {manifest.get('correo', '?')}")
    return manifest


def _verify_postgres(
    url: str, data: Path, manifest: dict[str, Any] | None, findings: Findings
) -> None:
    try:
        from correo.store.postgres_check import check_database
    except ImportError as exc:
        findings.problem("config", f"[store] url names PostgreSQL: {exc}")
        return
    _say("checking the PostgreSQL store named by [store] url")
    progress = Progress("checking message bodies")
    checked = check_database(url, findings, progress.advance)
    progress.finish()
    _say(f"checked {checked} message bodies")
    dump = data / PG_DUMP
    if manifest is not None and "dump" in manifest:
        pg_restore = shutil.which("pg_restore")
        if not dump.is_file():
            findings.problem("missing dump", f"{dump} is missing")
        elif pg_restore is None:
            findings.note(f"pg_restore is not installed: {dump} was not read")
        else:
            result = subprocess.run(
                [pg_restore, "--list", str(dump)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                findings.problem("unreadable dump", f"{dump}: {result.stderr.strip()}")
