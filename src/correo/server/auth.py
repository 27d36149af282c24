"""Password checks shared by every protocol: throttling, bounded concurrency, logging.

A password verification costs tens of milliseconds of CPU and ~19 MiB (argon2id), and
an unauthenticated peer decides when to ask for one, so verifications run on threads
with at most ``slots`` at a time; failures are delayed and then locked out per client
address and per account (see :mod:`correo.server.throttle`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from correo.server.context import ServerContext

__all__ = ["AuthOutcome", "check_password"]


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    account: str | None  # the canonical account on success
    locked: bool = False  # refused without checking: too many recent failures


async def check_password(
    ctx: ServerContext, *, session: str, peer_ip: str, user: str, password: str
) -> AuthOutcome:
    """Verify ``user``'s password; on failure the delay has already been served."""
    key = user.lower()
    verdict = ctx.throttle.check(peer_ip, key)
    if verdict.locked:
        ctx.log.warning("auth.locked", session=session, peer=peer_ip, user=user)
        return AuthOutcome(None, locked=True)
    async with ctx.auth_slots:
        account = await asyncio.to_thread(ctx.directory.verify_password, user, password)
    if account is None:
        ctx.throttle.failure(peer_ip, key)
        ctx.log.warning("auth.failed", session=session, peer=peer_ip, user=user)
        if verdict.delay:
            await asyncio.sleep(verdict.delay)
        return AuthOutcome(None)
    ctx.throttle.success(peer_ip, key)
    ctx.log.info("auth.ok", session=session, peer=peer_ip, user=account)
    return AuthOutcome(account)
