"""Sending a stored message for an account: what SMTP submission does after DATA.

JMAP's EmailSubmission (RFC 8621 §7) hands the server a message already in the store
and an envelope; this module applies the checks the submission port applies (the
envelope sender and every From/Sender address must be the account's own address or an
alias of it, at most ``[limits] recipients`` recipients, the anti-relay routing of each
one), strips ``Bcc`` (RFC 5322 §3.6.3: blind copies must not show the list), adds the
trace field, a Message-ID and Date when missing (RFC 6409 §8.2-8.3), DKIM-signs for
the From domain as submission does, and files local copies and queues remote
recipients in one store transaction before the caller answers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from correo.delivery.local import LocalRecipient
from correo.delivery.routing import route_recipient
from correo.delivery.trace import received_field, return_path_field
from correo.message.headers import originators, parse_fields
from correo.queue.routing import handoff_domains
from correo.server.context import ServerContext, new_session_id
from correo.store.api import DeliveryTarget, Envelope, QueuedRecipient

__all__ = ["Refusal", "SendReport", "send_message"]


class Refusal(Exception):
    """The submission is refused: ``kind`` is the JMAP SetError type (RFC 8621 §7.5)."""

    def __init__(self, kind: str, text: str, **extra: object) -> None:
        super().__init__(text)
        self.kind = kind
        self.extra = extra


@dataclass
class SendReport:
    queue_id: str
    #: recipient -> (SMTP reply, delivered: "yes" for a local copy, "queued" otherwise)
    status: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: The outbound queue's id of the message (None: nothing queued)
    stored: int | None = None


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """The header section (with its last CRLF) and the body after the blank line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[: at + len(sep) // 2], raw[at + len(sep) :]
    return raw if raw.endswith(b"\n") else raw + b"\r\n", b""


def _without_bcc(header: bytes) -> bytes:
    """The header section without its Bcc fields (their continuation lines too)."""
    out: list[bytes] = []
    dropping = False
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == b"bcc"
        if not dropping:
            out.append(line)
    return b"".join(out)


def _checked_address(address: object) -> str:
    if (
        not isinstance(address, str)
        or "@" not in address
        or len(address) > 320
        or any(c in address for c in "<> \t\r\n")
    ):
        raise Refusal("invalidProperties", "not an address", properties=["envelope"])
    return address


async def send_message(
    ctx: ServerContext,
    account: str,
    raw: bytes,
    mail_from: str,
    rcpt_to: list[str],
    *,
    peer: str,
) -> SendReport:
    """Check, sign and hand ``raw`` over for delivery; raises :class:`Refusal`."""
    directory = ctx.directory
    mail_from = _checked_address(mail_from)
    if not directory.may_send_as(account, mail_from):  # as MAIL FROM on submission
        ctx.log.warning("jmap.spoof", user=account, sender=mail_from[:200])
        raise Refusal("forbiddenMailFrom", f"{mail_from[:200]} is not {account}'s")
    header, body = _split(raw)
    fields = parse_fields(header)
    found = originators(fields)
    if found.from_fields != 1 or found.sender_fields > 1 or not found.addresses:
        raise Refusal("invalidEmail", "the message needs one From and at most one Sender")
    for address in found.addresses:  # the From/Sender rule of submission
        if not directory.may_send_as(account, address):
            ctx.log.warning("jmap.spoof", user=account, header_from=address[:200])
            raise Refusal("forbiddenFrom", f"From: {address[:200]} is not {account}'s")
    if found.problems:
        raise Refusal("forbiddenFrom", f"From: or Sender: has {found.problems[0]}")
    if not rcpt_to:
        raise Refusal("noRecipients", "no recipients")
    most = ctx.config.limits.recipients
    if most and len(rcpt_to) > most:
        raise Refusal("tooManyRecipients", f"at most {most} recipients", maxRecipients=most)
    handoff = handoff_domains(ctx.config.outbound.transport)
    local: list[LocalRecipient] = []
    targets: list[DeliveryTarget] = []
    remote: list[QueuedRecipient] = []
    refused: list[str] = []
    report = SendReport(new_session_id())
    for rcpt in rcpt_to:
        rcpt = _checked_address(rcpt)
        local_part, _, domain = rcpt.rpartition("@")
        route = route_recipient(
            directory,
            local_part,
            domain,
            may_relay=True,
            handoff=handoff,
            postmaster=ctx.config.delivery.postmaster,
        )
        if not route.accepted:
            refused.append(rcpt)
            continue
        for target in route.local:
            if target not in targets:
                targets.append(target)
                local.append(LocalRecipient(target.account, rcpt))
        remote.extend(QueuedRecipient(r) for r in route.remote)
        delivered = "yes" if route.local and not route.remote else "queued"
        report.status[rcpt] = (f"{route.code} {route.status} {route.text}", delivered)
    if refused:
        raise Refusal("invalidRecipients", "recipients refused", invalidRecipients=refused)
    names = {name for name, _ in fields}
    added = b""
    if "message-id" not in names:  # RFC 6409 §8.3
        added += f"Message-ID: {make_msgid(domain=ctx.hostname)}\r\n".encode()
    if "date" not in names:  # RFC 6409 §8.2
        added += f"Date: {format_datetime(datetime.now(UTC), usegmt=True)}\r\n".encode()
    message = _without_bcc(header)
    if not message.endswith(b"\n"):
        message += b"\r\n"
    message = message + added + b"\r\n" + body
    size_limit = ctx.config.limits.message_size
    if size_limit and len(message) > size_limit:
        raise Refusal("tooLarge", "larger than the message size limit", maxSize=size_limit)
    trace = received_field(
        helo=ctx.hostname,
        peer_ip=peer,
        hostname=ctx.hostname,
        protocol="HTTPSA",  # JMAP over HTTPS, authenticated (no SMTP keyword fits better)
        queue_id=report.queue_id,
        tls="TLS",
        authenticated=account,
    )
    domain = found.addresses[0].rpartition("@")[2].lower()
    signer = ctx.dkim_signers.get(domain)
    signed = trace + message
    if signer is not None:  # sees exactly what is queued after Return-Path
        signature = await asyncio.to_thread(signer.sign, signed)
        signed = signature + signed
    prefix = return_path_field(mail_from)
    spool = ctx.store.new_spool()
    try:
        spool.write(prefix)
        spool.write(signed)
    except OSError:
        spool.discard()
        raise
    envelope = Envelope(sender=mail_from, helo=ctx.hostname, authenticated=account)
    started = time.monotonic()
    if ctx.mda is not None and local:
        delivery = await ctx.mda.deliver(
            spool,
            envelope,
            local,
            remote,
            queue_skip=len(prefix),
            refusal="none",
            check_peer=False,
            session=report.queue_id,
        )
        queued = delivery.queue_id
    else:
        stored = await ctx.store.deliver(spool, envelope, targets, remote, queue_skip=len(prefix))
        queued = stored.queue_id
    report.stored = queued
    if queued is not None:
        ctx.queue_wakeup.set()  # the queue runner sends it now
    ctx.log.info(
        "jmap.submitted",
        id=report.queue_id,
        user=account,
        sender=mail_from[:200],
        local=len(local),
        queued=len(remote),
        size=len(signed),
        queue_id=queued,
        ms=round((time.monotonic() - started) * 1000, 1),
    )
    return report
