"""LMTP delivery: hand a domain's mail to an external MDA such as Dovecot (RFC 2033).

A transport-map entry ``example.org lmtp:127.0.0.1:24`` routes a domain here instead of
correo's own store.  The protocol work is the shared client core in LMTP mode (LHLO, one
reply per accepted recipient after the data); this module opens the session and maps
the per-recipient replies to outcomes, so a mailbox over quota at the MDA (452) is
retried while the other recipients of the same message are done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from correo.log import Logger
from correo.queue.attempt import ConnectFailed, OutboundSmtpSession, RecipientResult, Timeouts
from correo.queue.routing import Target
from correo.store.api import QueuedMessage, QueueRecipientState

__all__ = ["lmtp_deliver", "lmtp_target"]


def lmtp_target(host: str, port: int = 24) -> Target:
    """A plain-TCP LMTP target (LMTP is for trusted local hops: no TLS, no AUTH)."""
    return Target(host, host, port, "lmtp", "none")


async def lmtp_deliver(
    target: Target,
    message: QueuedMessage,
    recipients: Sequence[QueueRecipientState],
    body: AsyncIterator[bytes],
    *,
    lhlo: str,
    log: Logger,
    timeouts: Timeouts | None = None,
) -> list[RecipientResult]:
    """One message over one LMTP session; a failed connection defers every recipient."""
    try:
        session = await OutboundSmtpSession.open(
            target, helo=lhlo, timeouts=timeouts or Timeouts(), log=log, use_tls=False
        )
    except ConnectFailed as exc:
        return [
            RecipientResult(r.address, "deferred", "4.4.1", exc.text, target.hostname, False)
            for r in recipients
        ]
    try:
        return await session.deliver(message, recipients, body)
    finally:
        await session.close()
