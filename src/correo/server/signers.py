"""The DKIM signers of a running server follow the directory's keys.

``correo dkim rotate`` on any node adds keys to the directory's key store (the shared
database on a cluster); each server looks at the store's version every ``interval``
seconds and, when it or the list of local domains moved, rebuilds its signers off the
event loop (parsing RSA keys costs milliseconds each), so every node signs with the
new selector within seconds and without a restart.

The same task owns the pool of worker processes the signers hand their private-key
operations to (:mod:`correo.server.dkim_pool`): started with it, stopped when it is
cancelled at shutdown, so no worker outlives the server.
"""

from __future__ import annotations

import asyncio
import os

from correo.directory import Directory, DirectoryError
from correo.log import Logger
from correo.mailauth.keys import load_signer
from correo.mailauth.signing import DkimSigner
from correo.server.context import ServerContext
from correo.server.dkim_pool import SignPool

__all__ = ["follow_signers", "load_signers", "pool_size"]

Version = tuple[object, tuple[str, ...]]


def load_signers(directory: Directory) -> tuple[Version, dict[str, DkimSigner]]:
    """The signers of every local domain, and the version they were read at (blocking)."""
    domains = tuple(directory.domains())
    version = (directory.dkim.version(), domains)
    return version, load_signer(directory.dkim, list(domains))


def pool_size() -> int:
    """One worker when the server may use a second core; none on a single core, where a
    worker would only add the pipe's cost (the event loop needs no more than one: a
    worker makes about 2,000 signature pairs a second)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 1 if cores > 1 else 0


async def follow_signers(
    ctx: ServerContext,
    directory: Directory,
    log: Logger,
    seen: Version,
    interval: float = 1.0,
    workers: int | None = None,
) -> None:
    """Run until cancelled: replace ``ctx.dkim_signers`` whenever the keys change, each
    signer making its private-key operations in the pool's worker processes."""
    pool = SignPool(pool_size() if workers is None else workers, log=log)
    sign = pool.sign if pool.size else None
    ctx.dkim_signers = {d: s.using(sign) for d, s in ctx.dkim_signers.items()}

    def current() -> Version:
        return (directory.dkim.version(), tuple(directory.domains()))

    try:
        while True:
            await asyncio.sleep(interval)
            try:
                if await asyncio.to_thread(current) == seen:
                    continue
                seen, signers = await asyncio.to_thread(load_signers, directory)
                ctx.dkim_signers = {d: s.using(sign) for d, s in signers.items()}
                log.info("dkim.reloaded", domains=len(ctx.dkim_signers))
            except (DirectoryError, OSError, ValueError) as exc:
                log.warning("dkim.reload_failed", error=str(exc))
    finally:
        await pool.close()
