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
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from correo.directory import AddressError, AddressNormalizer, DirectoryError
from correo.sasl import ChannelBinding, ScramContext, ScramProof
from correo.server.connection import Connection
from correo.server.context import ServerContext
from correo.server.tlsexport import exporter

__all__ = ["AuthOutcome", "account_key", "check_password", "sasl_mechanisms", "scram_context"]

T = TypeVar("T")

#: Key of the made-up SCRAM salts of unknown users (RFC 5802 §9), one per process.
_SCRAM_SECRET: Final = secrets.token_bytes(32)


def _channel_binding(conn: Connection, exporter_on: bool) -> ChannelBinding | None:
    """The binding SCRAM-*-PLUS can be checked with on this connection, or None.

    TLS 1.3: ``tls-exporter`` (RFC 9266 §3; tls-unique is undefined there), read through
    :mod:`correo.server.tlsexport`; TLS 1.2: ``tls-unique``, RFC 5802 §6's default (RFC
    5929 §3). Where neither can be had nothing is advertised that cannot be verified.
    ``exporter_on`` is ``[auth] tls_exporter_binding``: off, TLS 1.3 offers no -PLUS,
    because clients such as Mutt (through Cyrus SASL) pick -PLUS when it is offered and
    then cannot bind on TLS 1.3.
    """
    if not conn.tls_active:
        return None
    obj = conn.writer.get_extra_info("ssl_object")
    if not isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
        return None
    if obj.version() == "TLSv1.3":
        data = exporter(obj) if exporter_on else None
        return ChannelBinding("tls-exporter", data) if data else None
    if obj.version() != "TLSv1.2":
        return None
    data = obj.get_channel_binding("tls-unique")
    return ChannelBinding("tls-unique", data) if data else None


def scram_context(ctx: ServerContext, conn: Connection) -> ScramContext | None:
    """What SCRAM needs on ``conn``; None where passwords may not be used (no TLS and
    ``[auth] allow_plaintext`` off), exactly where PLAIN is refused."""
    if not conn.tls_active and not ctx.config.auth.allow_plaintext:
        return None
    auth = ctx.config.auth
    return ScramContext(
        lookup=ctx.directory.scram_verifier,
        binding=_channel_binding(conn, auth.tls_exporter_binding),
        secret=_SCRAM_SECRET,
        iterations={
            "SCRAM-SHA-1": auth.scram_sha1_iterations,
            "SCRAM-SHA-256": auth.scram_sha256_iterations,
        },
    )


def sasl_mechanisms(ctx: ServerContext, conn: Connection) -> list[str]:
    """The SASL mechanisms to advertise on ``conn``, strongest first (RFC 4422 §3.1)."""
    scram = scram_context(ctx, conn)
    if scram is None:
        return []
    plus = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] if scram.binding is not None else []
    return [*plus, "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


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


def _scram_account(ctx: ServerContext, user: str, proof: ScramProof) -> str | None:
    if not proof.valid:
        return None
    try:
        return ctx.directory.account_name(user)
    except DirectoryError:
        return None


async def check_password(
    ctx: ServerContext,
    *,
    session: str,
    peer_ip: str,
    user: str,
    password: str,
    proof: ScramProof | None = None,
) -> AuthOutcome:
    """Verify ``user``'s password, or count a SCRAM mechanism's verdict (``proof``) the
    same way; on failure the delay has already been served."""
    key = account_key(user, ctx.config.smtp.recipient_delimiter)
    verdict = await _counted(ctx, ctx.throttle.begin, peer_ip, key)
    if verdict.locked:
        ctx.log.warning("auth.locked", session=session, peer=peer_ip, user=user)
        ctx.metrics.auth_result(False, locked=True)
        return AuthOutcome(None, locked=True)
    account: str | None = None
    try:
        if proof is not None:  # checked by the mechanism: a few HMACs, no thread needed
            account = _scram_account(ctx, user, proof)
        else:
            async with ctx.auth_slots:
                account = await asyncio.to_thread(ctx.directory.verify_password, user, password)
    finally:  # an attempt cut short (shutdown) still ends, as a failure
        end = ctx.throttle.failure if account is None else ctx.throttle.success
        await _counted(ctx, end, peer_ip, key)
    ctx.metrics.auth_result(account is not None)
    method = "password" if proof is None else "scram"
    if account is None:
        ctx.log.warning("auth.failed", session=session, peer=peer_ip, user=user, method=method)
        if verdict.delay:
            await asyncio.sleep(verdict.delay)
        return AuthOutcome(None)
    ctx.log.info("auth.ok", session=session, peer=peer_ip, user=account, method=method)
    return AuthOutcome(account)
