"""Receiving a message into bounded memory.

Up to ``memory_limit`` bytes stay in a bytearray (the common case: small mail goes
straight into the database in the same commit as its metadata); beyond that the
bytes spill to a file in the store's temporary folder, so a 100 MB message costs
``memory_limit`` of RAM, not 100 MB.  The file is fsync'd and renamed into place only
when the message is committed.

A write that fails (disk full) removes the spool's file at once and leaves the spool
failed: later writes raise the same error and the store refuses to commit it, so a
message with a hole in it is never stored and no partial file waits for a restart.

A spilled spool hashes its bytes as they pass (SHA-256, the content digest a JMAP
Email id is), so the store records it with the body without reading the file again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["FileSpool"]


class FileSpool:
    """A :class:`correo.store.api.Spool` backed by memory, then a file."""

    __slots__ = (
        "_fd",
        "_sha",
        "buffer",
        "failed",
        "memory_limit",
        "name",
        "path",
        "size",
        "tmp_dir",
    )

    def __init__(self, tmp_dir: Path, memory_limit: int = 256 * 1024) -> None:
        self.tmp_dir = tmp_dir
        self.memory_limit = memory_limit
        self.buffer = bytearray()
        self.size = 0
        self.path: Path | None = None
        self.name = ""
        self._fd = -1
        self._sha = hashlib.sha256()  # of the spilled file's bytes (unused in memory)
        self.failed: OSError | None = None  # the write error that broke this spool

    def write(self, data: bytes) -> None:
        if self.failed is not None:
            raise self.failed
        self.size += len(data)
        if self._fd < 0:
            if len(self.buffer) + len(data) <= self.memory_limit:
                self.buffer += data
                return
            self._guarded(self._spill)
        self._guarded(_write_all, self._fd, data)
        self._sha.update(data)

    def _guarded(self, fn: Callable[..., None], *args: object) -> None:
        """Run a file operation; on failure drop the file and keep the error."""
        try:
            fn(*args)
        except OSError as exc:
            self.failed = exc
            self.discard()
            raise

    def _spill(self) -> None:
        self.name = secrets.token_hex(12)
        self.path = self.tmp_dir / self.name
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        _write_all(self._fd, self.buffer)
        self._sha = hashlib.sha256(self.buffer)
        self.buffer = bytearray()

    def digest(self) -> str:
        """SHA-256 (hex) of the content: one pass over a small buffer, or the running
        hash a spilled file was written with (never read back)."""
        if self.failed is not None:
            raise self.failed
        if self.path is None:
            return hashlib.sha256(self.buffer).hexdigest()
        return self._sha.hexdigest()

    @property
    def in_memory(self) -> bool:
        return self.path is None

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``start``..``end`` (a file read when spilled: not on the event loop)."""
        stop = self.size if end is None else min(end, self.size)
        if start >= stop:
            return b""
        if self.path is None and self.failed is None:  # one copy, not a slice and a join
            with memoryview(self.buffer) as view:
                return bytes(view[start : min(stop, len(self.buffer))])
        return b"".join(self._pieces(start, stop, stop - start))

    def chunks(self, start: int = 0, chunk_size: int = 65536) -> Iterator[bytes]:
        """The bytes from ``start`` on, ``chunk_size`` at a time (flat memory)."""
        return self._pieces(start, self.size, chunk_size)

    def _pieces(self, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
        if self.failed is not None:  # a hole in the message: never read as if whole
            raise self.failed
        if self.path is None:
            stop = min(stop, len(self.buffer))
            for i in range(start, stop, chunk_size):  # no memoryview: writes may follow
                yield bytes(self.buffer[i : min(i + chunk_size, stop)])
            return
        fd = self._fd if self._fd >= 0 else os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            position = start
            while position < stop:
                piece = os.pread(fd, min(chunk_size, stop - position), position)
                if not piece:
                    return
                position += len(piece)
                yield piece
        finally:
            if fd != self._fd:
                os.close(fd)

    def sync_and_close(self) -> None:
        """Flush the spilled file to disk (called by the store's committer)."""
        if self.failed is not None:
            raise self.failed
        if self._fd >= 0:
            self._guarded(os.fsync, self._fd)
            os.close(self._fd)
            self._fd = -1

    def insert(self, offset: int, data: bytes) -> None:
        """Insert header fields known only at the end (Authentication-Results, DKIM-Signature).

        In memory this is a bytearray splice; a spilled message is rewritten once into a
        new spool file (a sequential copy, which costs far less than receiving it did).
        """
        if self.failed is not None:
            raise self.failed
        if not data:
            return
        self.size += len(data)
        if self._fd < 0:
            self.buffer[offset:offset] = data
            return
        assert self.path is not None
        old_path, old_fd = self.path, self._fd
        self._fd = -1
        os.close(old_fd)
        try:
            self._guarded(self._copy_with, old_path, offset, data)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(old_path)

    def _copy_with(self, old_path: Path, offset: int, data: bytes) -> None:
        self._spill()  # a fresh file with the (empty) buffer
        with open(old_path, "rb") as src:
            head = src.read(offset)
            for piece in (head, data):
                _write_all(self._fd, piece)
                self._sha.update(piece)
            while chunk := src.read(1 << 20):
                _write_all(self._fd, chunk)
                self._sha.update(chunk)

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass  # never created (disk full) or already gone; start-up sweeps the rest
            self.path = None
        self.buffer = bytearray()


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
