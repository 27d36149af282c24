"""DKIM keys as files in the data folder (the single-node :class:`KeyStore`).

DATA/dkim/<domain>/<selector>.key, PEM, mode 0600, folders 0700; a key's creation
time is its file's modification time and a ``<selector>.retired`` file beside it marks
it retired.  The rules (selectors, rotation) are :mod:`correo.mailauth.keys`'.
A rotation ends by replacing DATA/dkim/<domain>/version, which is what a running server
watches: it never loads the keys halfway through one (new keys written, old ones not
yet marked retired).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from correo.mailauth.keys import StoredKey, domain_name

__all__ = ["FileKeyStore"]


_STAMP = "version"


def _stamp_of(folder: Path) -> tuple[str, object]:
    try:
        return folder.name, (folder / _STAMP).read_text()
    except FileNotFoundError:
        return folder.name, folder.stat().st_mtime_ns


class FileKeyStore:
    """Keys as files: DATA/dkim/<domain>/<selector>.key, PEM, mode 0600.

    A key's creation time is its file's modification time; a ``<selector>.retired``
    file beside it marks it retired.
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "dkim"

    def __repr__(self) -> str:
        return f"FileKeyStore({str(self.root)!r})"

    def folder(self, domain: str) -> Path:
        return self.root / domain_name(domain)

    def stored_keys(self, domain: str) -> list[StoredKey]:
        folder = self.folder(domain)
        if not folder.is_dir():
            return []
        return [
            StoredKey(
                path.stem,
                path.read_bytes(),
                path.stat().st_mtime,
                path.with_suffix(".retired").exists(),
            )
            for path in folder.glob("*.key")
        ]

    def rotate(self, domain: str, new: Sequence[StoredKey], retire: Sequence[str]) -> None:
        folder = self.folder(domain)
        for key in new:
            path = folder / f"{key.selector}.key"
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.pem)
            os.utime(tmp, (key.created, key.created))
            os.replace(tmp, path)
        for selector in retire:
            marker = folder / f"{selector}.retired"
            if not marker.exists():
                marker.write_text("retired: published until its selector is removed\n")
        folder.mkdir(parents=True, exist_ok=True)
        stamp = folder / _STAMP
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(f"{time.time_ns()} {os.getpid()}\n")
        os.replace(tmp, stamp)  # the rotation is complete: servers load it now

    def version(self) -> object:
        """Each domain's rotation stamp (a folder from before stamps: its modification
        time, which every key or marker written changes)."""
        try:
            return tuple(_stamp_of(p) for p in sorted(self.root.iterdir()) if p.is_dir())
        except OSError:
            return ()

    def path(self, domain: str, selector: str) -> Path:
        return self.folder(domain) / f"{selector}.key"
