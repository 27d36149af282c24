"""A size-limited tmpfs and a way to fill it: real ENOSPC for disk-full tests.

Mounting needs root (CAP_SYS_ADMIN); tests using it skip with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["full_disk", "mounted_tmpfs", "needs_tmpfs"]

needs_tmpfs = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None,
    reason="mounting a size-limited tmpfs needs root (CAP_SYS_ADMIN) and mount(8)",
)


@contextlib.contextmanager
def mounted_tmpfs(root: Path, size: str = "4m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``root`` (skip the test if that is refused)."""
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@contextlib.contextmanager
def full_disk(root: Path) -> Iterator[None]:
    """Take every free block of ``root`` with a filler file; give them back after.

    Nestable: space freed meanwhile (a failed write cleaning up) is taken again.
    """
    filler = root / f"filler-{os.urandom(4).hex()}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 4096, 1):
            block = b"\xff" * size
            with contextlib.suppress(OSError):  # ENOSPC: this size no longer fits
                while True:
                    os.write(fd, block)
    finally:
        os.close(fd)
    assert os.statvfs(root).f_bavail == 0
    try:
        yield
    finally:
        filler.unlink()
