"""The DKIM signers of a running server follow the directory's keys.

``correo dkim rotate`` on any node adds keys to the directory's key store (the shared
database on a cluster); each server looks at the store's version every ``interval``
seconds and, when it or the list of local domains moved, rebuilds its signers off the
event loop (parsing RSA keys costs milliseconds each), so every node signs with the
new selector within seconds and without a restart.
"""

from __future__ import annotations

import asyncio

from correo.directory import Directory, DirectoryError
from correo.log import Logger
from correo.mailauth.keys import load_signer
from correo.mailauth.signing import DkimSigner
from correo.server.context import ServerContext

__all__ = ["follow_signers", "load_signers"]

Version = tuple[object, tuple[str, ...]]


def load_signers(directory: Directory) -> tuple[Version, dict[str, DkimSigner]]:
    """The signers of every local domain, and the version they were read at (blocking)."""
    domains = tuple(directory.domains())
    version = (directory.dkim.version(), domains)
    return version, load_signer(directory.dkim, list(domains))


async def follow_signers(
    ctx: ServerContext, directory: Directory, log: Logger, seen: Version, interval: float = 1.0
) -> None:
    """Run until cancelled: replace ``ctx.dkim_signers`` whenever the keys change."""

    def current() -> Version:
        return (directory.dkim.version(), tuple(directory.domains()))

    while True:
        await asyncio.sleep(interval)
        try:
            if await asyncio.to_thread(current) == seen:
                continue
            seen, ctx.dkim_signers = await asyncio.to_thread(load_signers, directory)
            log.info("dkim.reloaded", domains=len(ctx.dkim_signers))
        except (DirectoryError, OSError, ValueError) as exc:
            log.warning("dkim.reload_failed", error=str(exc))
