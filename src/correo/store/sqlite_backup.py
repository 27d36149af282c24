"""Backing up and checking the SQLite store while the server runs.

Why the copy is consistent
--------------------------
The store is ``mail.db`` (metadata, and bodies up to the spool's memory limit) plus one
file per larger body under ``blobs/``.  A body file is renamed into ``blobs/`` inside
the transaction that first refers to it, is never written to once there, and is
unlinked only after the commit that drops its last reference.  So at every commit
point each file the database refers to exists, and a file disappears only after a
commit that no longer refers to it.

A backup therefore (``correo.cli.backup``):

1. takes the database's write lock (``BEGIN IMMEDIATE``): the server's next commit
   waits for it (its writes queue up; none fails within SQLite's 30 s busy timeout);
2. opens a read transaction on every database of the data folder: the snapshot, the
   backup's point in time;
3. hard-links every file under ``blobs/`` into the backup (or into a staging folder on
   the data's file system when the backup is on another one): one link per file, no
   data copied;
4. releases the lock.

Every file the snapshot refers to existed at step 2 (its rename preceded the commit)
and could not be unlinked before step 4 (no commit happened), so step 3 linked it, and
the link keeps the content after the server unlinks its own name.  Files linked but
not referenced by the snapshot (renamed by a transaction still waiting for the lock, or
freed by a commit just before it) are removed from the backup once the snapshot's
database copy exists.  The databases are copied with SQLite's online backup API in
steps, inside their read transactions, so each copy shows exactly the snapshot however
long it takes while the server commits meanwhile (its WAL grows until the copy ends).
Where the file system has no hard links, step 3 copies the files under the lock, and
the server's commits wait for that copy.

Body files are named by random tokens, not by their content.  The backup's database
gets a SHA-256 digest in ``blob_digests`` (the table imports fill) for every body that
has none, so ``verify`` checks each body, inline or file, against its digest.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from correo.store.checks import Findings
from correo.store.sqlite_digests import DIGEST_SCHEMA

__all__ = [
    "BlobCopy",
    "check_database",
    "check_store",
    "copy_database",
    "copy_file",
    "keep_referenced",
    "mailbox_counts",
    "move_blobs",
    "read_snapshot",
    "record_digests",
    "stage_blobs",
    "writes_paused",
]

_CHUNK = 1 << 20
_PAGES_PER_STEP = 1024  # database pages copied per backup step (4 MiB at 4 KiB pages)
_BATCH = 256  # rows per keyset page: memory stays flat on any store size
#: link() errors meaning "this file system cannot hard-link here": copy instead.
_NO_LINKS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}

Advance = Callable[[int], None]


def _connect(path: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=timeout)


@contextlib.contextmanager
def writes_paused(db_path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold ``db_path``'s write lock: no other connection commits until the block ends."""
    conn = _connect(db_path, timeout=timeout)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def read_snapshot(path: Path) -> sqlite3.Connection:
    """A connection inside a read transaction: it sees the database as of now, for good."""
    conn = _connect(path)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here
    return conn


def copy_database(
    src: sqlite3.Connection, dst_path: Path, progress: Callable[[int, int], None] | None = None
) -> None:
    """SQLite's online backup of ``src`` (in its snapshot) into a new file, in steps."""
    dst = sqlite3.connect(dst_path)
    try:

        def step(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        src.backup(dst, pages=_PAGES_PER_STEP, progress=step)
    finally:
        dst.close()


def copy_file(src: Path | str, dst: Path) -> None:
    """Stream one file into a new one (mode 0600, fsync'd): never a whole body in memory."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with open(src, "rb") as fin:
            while chunk := fin.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        dst.unlink(missing_ok=True)
        raise
    os.close(fd)


@dataclass
class BlobCopy:
    """How the body files reached the backup."""

    linked: int = 0
    copied: int = 0


def stage_blobs(blob_dir: Path, dest: Path, *, link: bool = True) -> BlobCopy:
    """Every file of ``blob_dir`` into ``dest`` with the same shard folders: a hard link
    where the file system allows one, else a streamed copy."""
    result = BlobCopy()
    dest.mkdir(parents=True, exist_ok=True)
    if not blob_dir.is_dir():
        return result
    with os.scandir(blob_dir) as shards:
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            target = dest / shard.name
            target.mkdir(exist_ok=True)
            with os.scandir(shard.path) as files:
                for entry in files:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    out = target / entry.name
                    if link:
                        try:
                            os.link(entry.path, out)
                        except (FileExistsError, FileNotFoundError):
                            continue  # linked already; or freed by a commit before the lock
                        except OSError as exc:
                            if exc.errno not in _NO_LINKS:
                                raise
                            link = False  # this file system: copies from here on
                        else:
                            result.linked += 1
                            continue
                    try:
                        copy_file(entry.path, out)
                    except FileNotFoundError:
                        continue
                    result.copied += 1
    return result


def _referenced_table(conn: sqlite3.Connection) -> None:
    """TEMP table of every body file path the database names (on disk, not in RAM)."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS referenced (path TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.execute("DELETE FROM temp.referenced")
    conn.execute(
        "INSERT OR IGNORE INTO temp.referenced SELECT path FROM blobs WHERE path IS NOT NULL"
    )


def _files(blob_dir: Path) -> Iterator[tuple[str, str]]:
    """(``shard/name``, full path) of every file under ``blob_dir``."""
    if not blob_dir.is_dir():
        return
    with os.scandir(blob_dir) as shards:
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with os.scandir(shard.path) as files:
                for entry in files:
                    yield f"{shard.name}/{entry.name}", entry.path


def keep_referenced(db_path: Path, blob_dir: Path) -> tuple[int, list[str]]:
    """Drop the files of ``blob_dir`` that the database at ``db_path`` does not name.

    Returns (files removed, referenced paths with no file, at most 100).
    """
    conn = _connect(db_path)
    try:
        _referenced_table(conn)
        removed = 0
        for rel, full in _files(blob_dir):  # unlinking during readdir is safe (POSIX)
            if conn.execute("SELECT 1 FROM temp.referenced WHERE path=?", (rel,)).fetchone():
                continue
            os.unlink(full)
            removed += 1
        missing: list[str] = []
        for (rel,) in conn.execute("SELECT path FROM temp.referenced"):
            if not (blob_dir / rel).is_file():
                missing.append(rel)
                if len(missing) >= 100:
                    break
    finally:
        conn.close()
    for shard in list(blob_dir.iterdir()) if blob_dir.is_dir() else []:
        with contextlib.suppress(OSError):
            shard.rmdir()  # only empty ones go
    return removed, missing


def move_blobs(stage: Path, dest: Path, advance: Advance) -> int:
    """Copy the staged body files into the backup, then remove the staging folder."""
    copied = 0
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for rel, full in _files(stage):
            out = dest / rel
            out.parent.mkdir(exist_ok=True)
            copy_file(full, out)
            copied += 1
            advance(1)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return copied


def _inline_chunks(conn: sqlite3.Connection, blob_id: int) -> Iterator[bytes]:
    """An inline body in pieces (incremental BLOB I/O), or nothing when it is NULL."""
    (kind,) = conn.execute("SELECT typeof(data) FROM blobs WHERE id=?", (blob_id,)).fetchone()
    if kind != "blob":
        (data,) = conn.execute("SELECT data FROM blobs WHERE id=?", (blob_id,)).fetchone()
        if data:
            yield data if isinstance(data, bytes) else str(data).encode()
        return
    with conn.blobopen("blobs", "data", blob_id, readonly=True) as blob:
        while chunk := blob.read(_CHUNK):
            yield chunk


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _digest(chunks: Iterator[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def _blob_file(blob_dir: Path, rel: str) -> Path | None:
    """The file a ``blobs.path`` names, or None when the value could leave the folder."""
    if rel.startswith("/") or ".." in rel.split("/"):
        return None
    return blob_dir / rel


def record_digests(db_path: Path, blob_dir: Path, advance: Advance) -> int:
    """Give every body without a recorded SHA-256 one; returns how many were added."""
    conn = _connect(db_path)
    added = 0
    try:
        conn.executescript(DIGEST_SCHEMA)
        last = 0
        while True:
            rows = conn.execute(
                "SELECT id, path FROM blobs WHERE id > ? AND id NOT IN"
                " (SELECT blob_id FROM blob_digests) ORDER BY id LIMIT ?",
                (last, _BATCH),
            ).fetchall()
            if not rows:
                break
            digests: list[tuple[int, str]] = []
            for blob_id, rel in rows:
                last = blob_id
                file = _blob_file(blob_dir, rel) if rel else None
                try:
                    chunks = _file_chunks(file) if file else _inline_chunks(conn, blob_id)
                    digests.append((blob_id, _digest(chunks)[0]))
                except OSError:
                    pass  # a missing file: keep_referenced reported it already
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO blob_digests (blob_id, digest) VALUES (?, ?)", digests)
            conn.execute("COMMIT")
            added += len(digests)
            advance(len(rows))
    finally:
        conn.close()
    return added


def mailbox_counts(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(account, mailbox, messages) for every mailbox, in the connection's snapshot."""
    return [
        (str(a), str(m), int(n))
        for a, m, n in conn.execute(
            "SELECT a.name, x.name, count(m.uid) FROM mailboxes x"
            " JOIN accounts a ON a.id = x.account_id"
            " LEFT JOIN messages m ON m.mailbox_id = x.id GROUP BY x.id ORDER BY a.name, x.name"
        )
    ]


def check_database(path: Path, findings: Findings) -> None:
    """SQLite's own checks: page structure, indexes, and foreign keys."""
    name = path.name
    try:
        conn = _connect(path)
        try:
            conn.execute("PRAGMA query_only=1")
            for (message,) in conn.execute("PRAGMA integrity_check"):
                if message != "ok":
                    findings.problem("database damage", f"{name}: {message}")
            for table, rowid, parent, _fk in conn.execute("PRAGMA foreign_key_check"):
                findings.problem(
                    "foreign key", f"{name}: {table} row {rowid} names a missing {parent} row"
                )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        findings.problem("database damage", f"{name}: {exc}")


def check_store(
    root: Path,
    findings: Findings,
    expected: dict[tuple[str, str], int] | None,
    advance: Advance,
) -> tuple[int, int]:
    """The store's own rules: every reference resolves, reference counts, UIDs below
    UIDNEXT, every body's size and digest, the mailbox counts the backup recorded.

    Returns (bodies checked, bodies with no recorded digest: checked by size only).
    """
    db = root / "mail.db"
    blob_dir = root / "blobs"
    if not db.is_file():
        findings.problem("missing database", f"{db} does not exist")
        return 0, 0
    conn = _connect(db)
    try:
        conn.execute("PRAGMA query_only=1")
        _check_references(conn, findings)
        checked, undigested = _check_bodies(conn, blob_dir, findings, advance)
        conn.execute("PRAGMA query_only=0")  # the TEMP table only
        _referenced_table(conn)
        stray = sum(
            1
            for rel, _ in _files(blob_dir)
            if not conn.execute("SELECT 1 FROM temp.referenced WHERE path=?", (rel,)).fetchone()
        )
        if stray:
            findings.note(
                f"{stray} file(s) in {blob_dir} belong to no message"
                " (left by an interrupted write; the server removes them when it starts)"
            )
        if expected is not None:
            _compare_counts(mailbox_counts(conn), expected, findings)
    except sqlite3.Error as exc:
        findings.problem("database damage", f"mail.db: {exc}")
        return 0, 0
    finally:
        conn.close()
    return checked, undigested


def _check_references(conn: sqlite3.Connection, findings: Findings) -> None:
    where = "JOIN mailboxes x ON x.id = m.mailbox_id JOIN accounts a ON a.id = x.account_id"
    for account, mailbox, uid, blob_id in conn.execute(
        f"SELECT a.name, x.name, m.uid, m.blob_id FROM messages m {where}"
        " WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = m.blob_id)"
    ):
        findings.problem(
            "message without body", f"{account} {mailbox} UID {uid}: body {blob_id} is missing"
        )
    for (n,) in conn.execute(
        "SELECT count(*) FROM messages m"
        " WHERE NOT EXISTS (SELECT 1 FROM mailboxes x WHERE x.id = m.mailbox_id)"
    ):
        if n:
            findings.problem("message without mailbox", f"{n} message(s) in no mailbox")
    for queue_id, blob_id in conn.execute(
        "SELECT q.id, q.blob_id FROM queue q"
        " WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = q.blob_id)"
    ):
        findings.problem("queued without body", f"queue {queue_id}: body {blob_id} is missing")
    for blob_id, refs, used in conn.execute(
        "WITH r AS (SELECT blob_id, count(*) AS n FROM"
        " (SELECT blob_id FROM messages UNION ALL SELECT blob_id FROM queue) GROUP BY blob_id)"
        " SELECT b.id, b.refs, coalesce(r.n, 0) FROM blobs b LEFT JOIN r ON r.blob_id = b.id"
        " WHERE b.refs != coalesce(r.n, 0)"
    ):
        findings.problem(
            "reference count",
            f"body {blob_id} counts {refs} reference(s) but {used} message(s) use it",
        )
    for account, mailbox, uid, uidnext in conn.execute(
        f"SELECT a.name, x.name, m.uid, x.uidnext FROM messages m {where} WHERE m.uid >= x.uidnext"
    ):
        findings.problem(
            "UID order", f"{account} {mailbox}: UID {uid} is not below UIDNEXT {uidnext}"
        )
    for account, mailbox, uid, size, body in conn.execute(
        f"SELECT a.name, x.name, m.uid, m.size, b.size FROM messages m {where}"
        " JOIN blobs b ON b.id = m.blob_id WHERE m.size != b.size"
    ):
        findings.problem(
            "message size",
            f"{account} {mailbox} UID {uid}: size {size}, but its body has {body} octets",
        )


def _check_bodies(
    conn: sqlite3.Connection, blob_dir: Path, findings: Findings, advance: Advance
) -> tuple[int, int]:
    checked = undigested = 0
    last = 0
    has_digests = conn.execute("SELECT 1 FROM sqlite_master WHERE name='blob_digests'").fetchone()
    digest_sql = (
        "(SELECT digest FROM blob_digests d WHERE d.blob_id = b.id)" if has_digests else "NULL"
    )
    while True:
        rows = conn.execute(
            f"SELECT b.id, b.size, b.path, {digest_sql} FROM blobs b"
            " WHERE b.id > ? ORDER BY b.id LIMIT ?",
            (last, _BATCH),
        ).fetchall()
        if not rows:
            break
        for blob_id, size, rel, digest in rows:
            last = blob_id
            checked += 1
            undigested += digest is None
            bad = _check_body(conn, blob_dir, blob_id, size, rel, digest)
            if bad is not None:
                kind, text = bad
                # naming the messages costs a scan: only for the lines that are printed
                users = _used_by(conn, blob_id) if findings.problems[kind] < findings.limit else ""
                findings.problem(kind, f"body {blob_id}{users}{text}")
        advance(len(rows))
    return checked, undigested


def _check_body(
    conn: sqlite3.Connection,
    blob_dir: Path,
    blob_id: int,
    size: int,
    rel: str | None,
    digest: str | None,
) -> tuple[str, str] | None:
    """(kind, what is wrong) for a damaged body, None for a sound one."""
    if rel:
        file = _blob_file(blob_dir, rel)
        if file is None:
            return "bad body path", f": path {rel!r} leaves {blob_dir}"
        where = f" ({blob_dir.name}/{rel})"
        try:
            actual_size = file.stat().st_size
        except OSError:
            return "missing body file", f"{where}: the file is missing"
        if actual_size != size:
            return "body size", f"{where}: {actual_size} octets on disk, {size} recorded"
        if digest is None:
            return None
        try:
            actual, _ = _digest(_file_chunks(file))
        except OSError as exc:
            return "unreadable body file", f"{where}: {exc}"
    else:
        where = " (in mail.db)"
        actual, actual_size = _digest(_inline_chunks(conn, blob_id))
        if actual_size != size:
            return "body size", f"{where}: {actual_size} octets stored, {size} recorded"
        if digest is None:
            return None
    if actual != digest:
        return "corrupt body", f"{where}: SHA-256 {actual} is not the recorded {digest}"
    return None


def _used_by(conn: sqlite3.Connection, blob_id: int) -> str:
    """`` of account mailbox UID n, …``: the messages a body problem damages."""
    rows = conn.execute(
        "SELECT a.name, x.name, m.uid FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id"
        " JOIN accounts a ON a.id = x.account_id WHERE m.blob_id = ? LIMIT 4",
        (blob_id,),
    ).fetchall()
    if not rows:
        return ""
    named = ", ".join(f"{a} {m} UID {u}" for a, m, u in rows[:3])
    return f" of {named}{', …' if len(rows) > 3 else ''}"


def _compare_counts(
    actual: list[tuple[str, str, int]], expected: dict[tuple[str, str], int], findings: Findings
) -> None:
    seen: set[tuple[str, str]] = set()
    for account, mailbox, n in actual:
        key = (account, mailbox)
        seen.add(key)
        want = expected.get(key)
        if want is None:
            findings.problem("mailbox count", f"{account} {mailbox}: not in the backup's record")
        elif want != n:
            findings.problem(
                "mailbox count", f"{account} {mailbox}: {n} message(s), the backup recorded {want}"
            )
    for account, mailbox in sorted(set(expected) - seen):
        findings.problem(
            "mailbox count", f"{account} {mailbox}: recorded by the backup, but missing"
        )
