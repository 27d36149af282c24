"""Why ``correo serve`` cannot start, in one line that says what to change.

An administrator's common mistakes (a port another program holds, a second server on
the same data folder, a folder the service user cannot write) must read as a sentence
and exit non-zero, never as a traceback.  The data folder's lock is here too: one
serving process per folder, whatever the store (the SQLite store's own lock guards
only its files; a PostgreSQL node still owns its folder's spool, keys and socket).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
from pathlib import Path

from correo.directory import DirectoryError
from correo.store.api import StoreError

__all__ = ["LOCK_FILE", "DataFolderLock", "StartupError", "startup_problem"]

LOCK_FILE = "serve.lock"

_HINTS = {
    errno.EADDRINUSE: "another program already listens there",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
    errno.EADDRNOTAVAIL: "this host has no such address",
}


class StartupError(Exception):
    """``correo serve`` cannot start; the message is one line for the administrator."""


class DataFolderLock:
    """``DATA/serve.lock`` held with ``flock`` while a server runs; holds its pid."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd = -1

    def acquire(self) -> None:
        data = self.data_dir
        if not os.access(data, os.W_OK | os.X_OK):
            raise StartupError(
                f"cannot write in the data folder {data}: correo serve keeps its store,"
                " spool and lock there (run it as the folder's owner, or fix its permissions)"
            )
        path = data / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StartupError(f"cannot write in the data folder {data}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = b""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 32, 0).strip()
            os.close(fd)
            pid = f" (pid {holder.decode(errors='replace')})" if holder.isdigit() else ""
            raise StartupError(
                f"another correo serve{pid} is already running on the data folder {data}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def startup_problem(
    exc: BaseException, binding: tuple[str, str, int] | None, config_file: Path
) -> str | None:
    """The one-line reason for a failed start, or None for an unexpected error (a bug)."""
    if isinstance(exc, StartupError):
        return str(exc)
    if isinstance(exc, OSError) and binding is not None:
        service, host, port = binding
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        hint = _HINTS.get(exc.errno or 0)
        return (
            f"{service}: cannot listen on {host}:{port}: {reason}"
            f"{f' ({hint})' if hint else ''}; change [listen] {service} in {config_file}"
        )
    if isinstance(exc, (StoreError, DirectoryError, sqlite3.Error)):
        return f"cannot open the mail data: {exc}"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot start:{where} {exc.strerror or exc}"
    return None
