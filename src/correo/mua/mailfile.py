"""Local mail files: Maildir and mboxrd, read and written one message at a time.

Shared by ``correo mail fetch`` (writing) and the server-side import/export.  Why not
the stdlib ``mailbox`` module: its mbox reader builds a table of every message first and
its writer quotes ``From `` lines the lossy mboxo way; these readers stream, so memory
stays flat however large the mailbox, and mboxrd quoting round-trips exactly.

Messages are exchanged as CRLF chunks (the wire form the store and IMAP use); the files
hold LF line ends, as every Unix MUA expects.
"""

from __future__ import annotations

import calendar
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from correo.imap.utf7 import decode_mutf7, encode_mutf7

__all__ = [
    "LocalMessage",
    "MaildirWriter",
    "MboxWriter",
    "crlf_chunks",
    "lf_chunks",
    "maildir_folders",
    "read_maildir",
    "read_mbox",
]

CHUNK = 1 << 16
_MAX_LINE = 1 << 20  # longer mbox lines are passed through in pieces
_MAX_META_HEADER = 256 * 1024  # header bytes scanned for Status:/X-Status: (mbox)

# Maildir info letters (cr.yp.to/proto/maildir.html); Dovecot's T means \Deleted.
_MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
_FLAG_LETTERS = {v.lower(): k for k, v in _MAILDIR_FLAGS.items()}
# mbox Status:/X-Status: letters (the convention of mutt, Dovecot and c-client).
_STATUS = {"R": "\\Seen"}
_XSTATUS = {"A": "\\Answered", "F": "\\Flagged", "D": "\\Deleted", "T": "\\Draft"}
_META_FIELDS = (b"status", b"x-status", b"x-keywords", b"x-uid", b"content-length")
_QUOTED_FROM = re.compile(rb"^>(>*From )")
_NEEDS_QUOTE = re.compile(rb"^(>*From )")


@dataclass(slots=True)
class LocalMessage:
    """One message of a local mailbox; ``chunks`` yields its bytes (CRLF) once."""

    flags: tuple[str, ...]
    internal_date: float
    chunks: Iterator[bytes]
    sender: str = ""


# -- line-end conversion (bytes methods, chunk at a time) ------------------------------


def crlf_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """LF or CRLF input as CRLF output; a CR split from its LF across chunks is held."""
    held = b""
    for chunk in chunks:
        data = held + chunk
        held = b""
        if data.endswith(b"\r"):
            data, held = data[:-1], b"\r"
        if data:
            yield data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if held:
        yield held


def lf_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """CRLF input as LF output (bare CRs are kept)."""
    held = b""
    for chunk in chunks:
        data = held + chunk
        held = b""
        if data.endswith(b"\r"):
            data, held = data[:-1], b"\r"
        if data:
            yield data.replace(b"\r\n", b"\n")
    if held:
        yield held


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


# -- Maildir ---------------------------------------------------------------------------


def _keyword_table(root: Path) -> dict[str, str]:
    """Dovecot's ``dovecot-keywords``: ``0 name`` lines; letter a is 0, b is 1, …"""
    table: dict[str, str] = {}
    try:
        text = (root / "dovecot-keywords").read_text("utf-8", "replace")
    except OSError:
        return table
    for line in text.splitlines():
        num, _, name = line.strip().partition(" ")
        if num.isdigit() and int(num) < 26 and name:
            table[chr(ord("a") + int(num))] = name
    return table


def _maildir_info(name: str, keywords: dict[str, str]) -> tuple[str, ...]:
    _, sep, info = name.rpartition(":2,")
    if not sep:
        return ()
    flags: list[str] = []
    for letter in info:
        if letter in _MAILDIR_FLAGS:
            flags.append(_MAILDIR_FLAGS[letter])
        elif letter in keywords:
            flags.append(keywords[letter])
    return tuple(flags)


def maildir_folders(root: Path) -> list[tuple[str, Path]]:
    """(IMAP name, path) of a Maildir++ tree: the root is INBOX, ``.A.B`` is ``A/B``."""
    out = [("INBOX", root)] if (root / "cur").is_dir() or (root / "new").is_dir() else []
    for entry in sorted(root.iterdir()):
        hidden = entry.name.startswith(".") and entry.name not in (".", "..")
        if hidden and ((entry / "cur").is_dir() or (entry / "new").is_dir()):
            name = decode_mutf7(entry.name[1:].encode()).replace(".", "/")
            out.append((name, entry))
    return out


def read_maildir(root: Path) -> Iterator[LocalMessage]:
    """Messages of one Maildir (not its subfolders), oldest delivery first.

    The internal date is the file's mtime (what Dovecot uses), else the delivery time at
    the start of the unique name.
    """
    keywords = _keyword_table(root)
    entries: list[tuple[float, str, Path]] = []
    for sub in ("new", "cur"):
        folder = root / sub
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            try:
                when = entry.stat().st_mtime
            except OSError:
                continue
            head = entry.name.split(".", 1)[0]
            if when <= 0 and head.isdigit():
                when = float(head)
            entries.append((when, entry.name, Path(entry.path)))
    entries.sort()
    for when, name, path in entries:
        flags = _maildir_info(name, keywords)
        yield LocalMessage(flags, when, crlf_chunks(_file_chunks(path)))


class MaildirWriter:
    """Delivers into a Maildir the safe way: write in ``tmp/``, fsync, rename to ``cur/``.

    The rename is atomic, so a reader (or a crash) never sees half a message; the
    directory is fsync'd by :meth:`sync`, once per batch rather than per message.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._seq = 0
        self._keywords: dict[str, str] = {v: k for k, v in _keyword_table(root).items()}
        self._keywords_dirty = False

    @staticmethod
    def folder(root: Path, name: str) -> Path:
        """Where Maildir++ keeps the IMAP folder ``name`` under ``root``."""
        if name.upper() == "INBOX":
            return root
        return root / ("." + encode_mutf7(name.replace(".", "_")).decode().replace("/", "."))

    def _letter(self, keyword: str) -> str | None:
        letter = self._keywords.get(keyword)
        if letter is None and len(self._keywords) < 26:
            letter = chr(ord("a") + len(self._keywords))
            self._keywords[keyword] = letter
            self._keywords_dirty = True
        return letter

    def add(
        self,
        chunks: Iterable[bytes],
        flags: Iterable[str] = (),
        internal_date: float | None = None,
        *,
        new: bool = False,
    ) -> Path:
        """Store one message (CRLF chunks are written with LF line ends)."""
        now = time.time()
        when = now if internal_date is None else internal_date
        self._seq += 1
        unique = f"{int(when)}.M{int(now * 1e6) % 1000000}P{os.getpid()}Q{self._seq}.{self._host}"
        letters = set()
        for flag in flags:
            letter = _FLAG_LETTERS.get(flag.lower())
            if letter is None and not flag.startswith("\\"):
                letter = self._letter(flag)
            if letter is not None:
                letters.add(letter)
        tmp = self.root / "tmp" / unique
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in lf_chunks(chunks):
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.utime(tmp, (when, when))
            if new and not letters:
                final = self.root / "new" / unique
            else:
                final = self.root / "cur" / f"{unique}:2,{''.join(sorted(letters))}"
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def sync(self) -> None:
        """fsync the directories (renames durable) and write the keyword table."""
        if self._keywords_dirty:
            lines = sorted((ord(v) - ord("a"), k) for k, v in self._keywords.items())
            tmp = self.root / "dovecot-keywords.tmp"
            tmp.write_text("".join(f"{n} {k}\n" for n, k in lines), "utf-8")
            os.replace(tmp, self.root / "dovecot-keywords")
            self._keywords_dirty = False
        for sub in ("new", "cur", ""):
            _fsync_dir(self.root / sub if sub else self.root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- mbox (mboxrd) ---------------------------------------------------------------------


def _from_line_date(line: bytes) -> float | None:
    """The asctime at the end of ``From sender Www Mmm dd hh:mm:ss yyyy`` (UTC)."""
    words = line.split()
    for start in range(2, max(2, len(words) - 4) + 1):
        text = b" ".join(words[start : start + 5]).decode("ascii", "replace")
        try:
            return float(calendar.timegm(time.strptime(text, "%a %b %d %H:%M:%S %Y")))
        except ValueError:
            continue
    return None


def _meta_flags(header: bytes) -> tuple[tuple[str, ...], bytes]:
    """Flags from Status:/X-Status:/X-Keywords: and the header without those fields."""
    flags: list[str] = []
    kept: list[bytes] = []
    dropping = False
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name, colon, value = line.partition(b":")
        key = name.strip().lower()
        dropping = bool(colon) and key in _META_FIELDS
        if not dropping:
            kept.append(line)
            continue
        text = value.decode("ascii", "replace").strip()
        if key == b"status":
            flags += [_STATUS[c] for c in text if c in _STATUS]
        elif key == b"x-status":
            flags += [_XSTATUS[c] for c in text if c in _XSTATUS]
        elif key == b"x-keywords":
            flags += [k for k in re.split(r"[\s,]+", text) if k]
    return tuple(dict.fromkeys(flags)), b"".join(kept)


class _MboxCursor:
    """Reads an mbox line by line, remembering the last line read (the next From_)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.at_start = True  # the next line begins a line (not a long line's rest)
        self.pending: bytes | None = None

    def line(self) -> tuple[bytes, bool]:
        """(line, begins_a_line); b"" at end of file."""
        if self.pending is not None:
            line, self.pending = self.pending, None
            return line, True
        begins = self.at_start
        line = self.fh.readline(_MAX_LINE)
        self.at_start = line.endswith(b"\n")
        return line, begins


def _is_separator(line: bytes, begins: bool, prev_blank: bool) -> bool:
    return begins and prev_blank and line.startswith(b"From ")


def read_mbox(fh: BinaryIO) -> Iterator[LocalMessage]:
    """Messages of an mboxrd (or mboxo) file; each must be consumed before the next.

    A ``From `` line starts a message only after a blank line (or at the top), so an
    unquoted ``From `` inside a body written by a careless MUA does not split it.  One
    ``>`` is removed from ``>From``-quoted lines (mboxrd).  Status:/X-Status:/X-Keywords:
    become flags and are removed (they are mailbox state, not message content).
    """
    cur = _MboxCursor(fh)
    line, begins = cur.line()
    while line and not line.startswith(b"From "):  # junk before the first message
        line, begins = cur.line()
    while line:
        from_line = line
        sender = (
            from_line.split()[1].decode("utf-8", "replace") if len(from_line.split()) > 1 else ""
        )
        date = _from_line_date(from_line)
        header = bytearray()
        body_first: bytes | None = None
        # Header block: bounded; beyond the bound the rest streams as body.
        while True:
            line, begins = cur.line()
            if not line:
                break
            if begins and line.startswith(b"From ") and not header:
                break  # an empty message
            if line in (b"\n", b"\r\n") or len(header) + len(line) > _MAX_META_HEADER:
                body_first = line
                break
            header += line
        flags, kept = _meta_flags(bytes(header))
        state = {"next": b""}

        def body(
            kept: bytes = kept, first: bytes | None = body_first, state: dict[str, bytes] = state
        ) -> Iterator[bytes]:
            out = bytearray(kept)
            blank_held = False  # a trailing blank line is the separator, not content
            prev_blank = False
            line: bytes | None = first
            begins = True
            while True:
                if line is None:
                    line, begins = cur.line()
                if not line:
                    break
                if _is_separator(line, begins, prev_blank):
                    state["next"] = line
                    break
                if blank_held:
                    out += b"\n"
                    blank_held = False
                if begins and line in (b"\n", b"\r\n"):
                    blank_held = True
                    prev_blank = True
                    line = None
                    continue
                prev_blank = False
                if begins and line.startswith(b">"):
                    line = _QUOTED_FROM.sub(rb"\1", line, count=1)
                out += line
                line = None
                if len(out) >= CHUNK:
                    yield bytes(out)
                    out.clear()
            if out:
                yield bytes(out)

        if body_first is None and line and line.startswith(b"From "):
            state["next"] = line
            chunks: Iterator[bytes] = crlf_chunks([kept] if kept else [])
        else:
            chunks = crlf_chunks(body())
        msg = LocalMessage(flags, date if date is not None else time.time(), chunks, sender)
        yield msg
        for _ in msg.chunks:  # the caller skipped (part of) it: read on to the next one
            pass
        line = state["next"]


class MboxWriter:
    """Appends messages to an mboxrd file (From_ line, quoted From lines, blank line)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._needs_gap = self.fh.tell() > 0 and not _ends_with_blank(path)

    def add(
        self,
        chunks: Iterable[bytes],
        flags: Iterable[str] = (),
        internal_date: float | None = None,
        sender: str = "MAILER-DAEMON",
    ) -> None:
        when = time.time() if internal_date is None else internal_date
        fh = self.fh
        if self._needs_gap:
            fh.write(b"\n")
        stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(when))
        fh.write(f"From {sender or 'MAILER-DAEMON'} {stamp}\n".encode())
        meta = b"".join(_status_fields(tuple(flags)))
        header_done = False
        last = b"\n"
        for block, begins in _line_blocks(lf_chunks(chunks)):
            if not header_done:
                if begins and block.startswith(b"\n"):
                    fh.write(meta)
                    header_done = True
                else:
                    split = block.find(b"\n\n")
                    if split >= 0:
                        fh.write(_quote_from(block[: split + 1], begins) + meta)
                        block, begins = block[split + 1 :], True
                        header_done = True
            if block:
                fh.write(_quote_from(block, begins))
                last = block[-1:]
        if last != b"\n":
            fh.write(b"\n")
        if not header_done:
            fh.write(meta)
        fh.write(b"\n")  # the blank line that separates messages
        self._needs_gap = False

    def sync(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.sync()
        self.fh.close()


def _line_blocks(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Re-cut chunks at line ends: (block, block begins a line); over-long lines in pieces."""
    rest = b""
    begins = True
    for chunk in chunks:
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if not cut and len(data) < _MAX_LINE:
            rest = data
            continue
        cut = cut or len(data)
        block, rest = data[:cut], data[cut:]
        yield block, begins
        begins = block.endswith(b"\n")
    if rest:
        yield rest, begins


def _status_fields(flags: tuple[str, ...]) -> tuple[bytes, bytes, bytes]:
    lower = {f.lower() for f in flags}
    status = "RO" if "\\seen" in lower else "O"
    x = "".join(k for k, v in _XSTATUS.items() if v.lower() in lower)
    keywords = [f for f in flags if not f.startswith("\\")]
    return (
        f"Status: {status}\n".encode(),
        f"X-Status: {x}\n".encode() if x else b"",
        ("X-Keywords: " + " ".join(keywords) + "\n").encode() if keywords else b"",
    )


def _quote_from(block: bytes, at_line_start: bool) -> bytes:
    """mboxrd: one more ``>`` on every line matching ``^>*From ``."""
    if b"From " not in block:
        return block
    if not at_line_start:
        head, nl, tail = block.partition(b"\n")
        return head + nl + re.sub(rb"(?m)^(>*From )", rb">\1", tail)
    return re.sub(rb"(?m)^(>*From )", rb">\1", block)


def _ends_with_blank(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(max(0, fh.seek(0, os.SEEK_END) - 2))
        return fh.read().endswith(b"\n\n")
