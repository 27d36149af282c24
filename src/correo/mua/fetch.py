"""``correo mail fetch``: the MRA — POP3 or IMAP into a local Maildir or mbox.

Resumable: what was retrieved is remembered in a state file beside the destination
(POP3 UIDLs, RFC 1939 §7; IMAP UIDVALIDITY + UIDs, RFC 9051 §2.3.1.1), written after
every message is safely on disk.  The order is deliver (fsync) → remember → delete on
the server, so a crash can at worst fetch one message twice, never lose one.
"""

from __future__ import annotations

import json
import os
import poplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from correo.mua.client import ClientError, connect_imap, connect_pop3
from correo.mua.mailfile import MaildirWriter, MboxWriter
from correo.mua.profile import Account
from correo.mua.progress import Progress

__all__ = ["FetchResult", "FetchState", "fetch"]


@dataclass(slots=True)
class FetchResult:
    fetched: int = 0
    skipped: int = 0
    deleted: int = 0


class FetchState:
    """A JSON file of what each source has already given us."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            loaded = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            loaded = {}
        self.data: dict[str, dict[str, object]] = loaded if isinstance(loaded, dict) else {}

    def seen(self, source: str) -> set[str]:
        entry = self.data.get(source, {})
        ids = entry.get("seen", []) if isinstance(entry, dict) else []
        return {str(x) for x in ids} if isinstance(ids, list) else set()

    def reset_if(self, source: str, uidvalidity: int) -> None:
        """RFC 9051 §2.3.1.1: a new UIDVALIDITY means the old UIDs mean nothing."""
        entry = self.data.get(source)
        if (isinstance(entry, dict) and entry.get("uidvalidity") != uidvalidity) or entry is None:
            self.data[source] = {"uidvalidity": uidvalidity, "seen": []}

    def remember(self, source: str, ids: set[str]) -> None:
        entry = self.data.setdefault(source, {})
        entry["seen"] = sorted(ids)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _pop3_retr(conn: poplib.POP3, number: int) -> Iterator[bytes]:
    """RETR streamed line by line (poplib.retr would hold the whole message)."""
    raw: Any = conn  # poplib has no public streaming RETR; these internals are stable
    resp = raw._shortcmd(f"RETR {number}")
    if not resp.startswith(b"+"):
        raise ClientError(f"RETR {number}: {resp.decode(errors='replace')}")
    out = bytearray()
    while True:
        line, _ = raw._getline()
        if line == b".":
            break
        if line.startswith(b".."):
            line = line[1:]  # RFC 1939 §3: byte-stuffing
        out += line + b"\r\n"
        if len(out) >= 1 << 16:
            yield bytes(out)
            out.clear()
    if out:
        yield bytes(out)


def fetch(
    account: Account,
    *,
    protocol: str,
    maildir: Path | None = None,
    mbox: Path | None = None,
    keep: bool = True,
    folder: str = "INBOX",
    progress: Progress | None = None,
    password: str | None = None,
) -> FetchResult:
    if (maildir is None) == (mbox is None):
        raise ValueError("fetch into exactly one of maildir or mbox")
    dest = maildir if maildir is not None else mbox
    assert dest is not None
    maildir_writer = MaildirWriter(maildir) if maildir is not None else None
    mbox_writer = MboxWriter(mbox) if mbox is not None else None
    state_path = (
        maildir / ".correo-fetch.json"
        if maildir is not None
        else dest.with_name(dest.name + ".correo-fetch.json")
    )
    state = FetchState(state_path)

    def store(chunks: Iterator[bytes], flags: tuple[str, ...]) -> None:
        if maildir_writer is not None:
            maildir_writer.add(chunks, flags, new=not flags)
            maildir_writer.sync()
        else:
            assert mbox_writer is not None
            mbox_writer.add(chunks, flags)
            mbox_writer.sync()

    try:
        if protocol == "pop3":
            return _fetch_pop3(account, state, store, keep, progress, password)
        return _fetch_imap(account, state, store, keep, folder, progress, password)
    finally:
        if mbox_writer is not None:
            mbox_writer.close()


def _fetch_pop3(
    account: Account,
    state: FetchState,
    store: Callable[[Iterator[bytes], tuple[str, ...]], None],
    keep: bool,
    progress: Progress | None,
    password: str | None,
) -> FetchResult:
    conn = connect_pop3(account, password)
    ep = account.pop3
    assert ep is not None
    source = f"pop3://{account.user}@{ep.host}:{ep.port}"
    result = FetchResult()
    try:
        _, listing, _ = conn.uidl()
        pairs = []
        for entry in listing:
            number, _, tag = entry.partition(b" ")
            pairs.append((int(number), tag.decode("ascii", "replace").strip()))
        seen = state.seen(source)
        if progress is not None:
            progress.total = len(pairs)
        for num, uidl in pairs:
            if uidl in seen:
                result.skipped += 1
            else:
                store(_pop3_retr(conn, num), ())
                seen.add(uidl)
                state.remember(source, seen)
                result.fetched += 1
            if not keep:
                conn.dele(num)
                result.deleted += 1
            if progress is not None:
                progress.advance()
        if not keep:
            # Forget deleted UIDLs only after QUIT commits the deletions (RFC 1939 §6).
            conn.quit()
            state.remember(source, seen - {u for _, u in pairs})
            return result
        conn.quit()
    except poplib.error_proto as exc:
        conn.close()
        raise ClientError(f"POP3: {exc}") from exc
    return result


def _fetch_imap(
    account: Account,
    state: FetchState,
    store: Callable[[Iterator[bytes], tuple[str, ...]], None],
    keep: bool,
    folder: str,
    progress: Progress | None,
    password: str | None,
) -> FetchResult:
    imap = connect_imap(account, password)
    ep = account.imap
    assert ep is not None
    source = f"imap://{account.user}@{ep.host}:{ep.port}/{folder}"
    result = FetchResult()
    try:
        imap.select(folder, readonly=keep)
        state.reset_if(source, imap.uidvalidity())
        uids = imap.search(["ALL"])
        listed = {m.uid: m.flags for m in imap.headers(uids)} if uids else {}
        seen = state.seen(source)
        if progress is not None:
            progress.total = len(uids)
        done: list[int] = []
        for uid in uids:
            if str(uid) in seen:
                result.skipped += 1
            else:
                flags = tuple(f for f in listed.get(uid, ()) if f.lower() != "\\recent")
                store(imap.fetch_chunks(uid), flags)
                seen.add(str(uid))
                state.remember(source, seen)
                result.fetched += 1
            done.append(uid)
            if progress is not None:
                progress.advance()
        if not keep and done:
            imap.delete(done)
            result.deleted = len(done)
            state.remember(source, seen - {str(u) for u in done})
    finally:
        imap.close()
    return result
