"""Password checks shared by every protocol: throttling, bounded concurrency, logging.

A password verification costs tens of milliseconds of CPU and ~19 MiB (argon2id), and
an unauthenticated peer decides when to ask for one, so verifications run on threads
with at most ``slots`` at a time; failures are delayed and then locked out per client
network and per account (see :mod:`correo.server.throttle`).

The account counter is keyed on the account as the directory spells it (IDNA and
UTS #46 mapping for the domain, lower case), not on what the client typed: fullwidth
letters or an ideographic full stop name the same account and must not get a fresh
counter. Each attempt is reserved before its hash is computed, so simultaneous
attempts cannot all slip in under the lock.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from correo.directory import AddressError, AddressNormalizer
from correo.server.context import ServerContext

__all__ = ["AuthOutcome", "account_key", "check_password"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    account: str | None  # the canonical account on success
    locked: bool = False  # refused without checking: too many recent failures


@functools.lru_cache(maxsize=8)
def _normalizer(recipient_delimiter: str) -> AddressNormalizer:
    return AddressNormalizer(recipient_delimiter)


def account_key(user: str, recipient_delimiter: str = "+") -> str | None:
    """The account ``user`` names, as the directory canonicalises it; None when no
    account can have that name (it is then counted per client network only)."""
    try:
        return _normalizer(recipient_delimiter).canonical(user)
    except (AddressError, ValueError):
        return None


async def _counted(
    ctx: ServerContext, call: Callable[[str, str | None], T], peer_ip: str, key: str | None
) -> T:
    """A throttle call; in a worker thread when the counters are shared (the database)."""
    if ctx.throttle.blocking:
        return await asyncio.to_thread(call, peer_ip, key)
    return call(peer_ip, key)


async def check_password(
    ctx: ServerContext, *, session: str, peer_ip: str, user: str, password: str
) -> AuthOutcome:
    """Verify ``user``'s password; on failure the delay has already been served."""
    key = account_key(user, ctx.config.smtp.recipient_delimiter)
    verdict = await _counted(ctx, ctx.throttle.begin, peer_ip, key)
    if verdict.locked:
        ctx.log.warning("auth.locked", session=session, peer=peer_ip, user=user)
        ctx.metrics.auth_result(False, locked=True)
        return AuthOutcome(None, locked=True)
    account: str | None = None
    try:
        async with ctx.auth_slots:
            account = await asyncio.to_thread(ctx.directory.verify_password, user, password)
    finally:  # an attempt cut short (shutdown) still ends, as a failure
        end = ctx.throttle.failure if account is None else ctx.throttle.success
        await _counted(ctx, end, peer_ip, key)
    ctx.metrics.auth_result(account is not None)
    if account is None:
        ctx.log.warning("auth.failed", session=session, peer=peer_ip, user=user)
        if verdict.delay:
            await asyncio.sleep(verdict.delay)
        return AuthOutcome(None)
    ctx.log.info("auth.ok", session=session, peer=peer_ip, user=account)
    return AuthOutcome(account)
