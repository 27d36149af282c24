"""Delivery status notifications: RFC 3464 ``multipart/report`` messages.

Pure composition: the runner gives the reports and the original message (or its
header section) and gets the bytes to queue.  One DSN covers every recipient that
failed (or was delayed) in one delivery attempt; it is never sent to the null sender
(RFC 5321 §6.1, RFC 3461 §6.1) — the caller checks, and :func:`compose_dsn` refuses.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

__all__ = ["RecipientReport", "compose_dsn", "header_section", "xtext_decode"]

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One recipient's per-recipient fields (RFC 3464 §2.3)."""

    address: str
    action: Action
    status: str  # e.g. "5.1.1"
    diagnostic: str = ""  # "550 5.1.1 User unknown" from the remote server
    remote_mta: str = ""
    orcpt: str | None = None  # the RFC 3461 ORCPT parameter, "rfc822;user+40host"
    last_attempt: float | None = None
    retry_until: float | None = None
    diagnostic_type: str = "smtp"  # "X-correo" for our own diagnosis (no server reply)


def xtext_decode(value: str) -> str:
    """RFC 3461 §4: ``+XX`` hex escapes."""
    return _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), value)


def header_section(message: bytes) -> bytes:
    """The header fields of a message, up to (not including) the blank line."""
    if message.startswith(b"\r\n"):
        return b""
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def _clean(text: str) -> str:
    return _UNSAFE.sub(" ", text).strip()


def _date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, UTC))


def compose_dsn(
    *,
    reporting_mta: str,
    recipient: str,
    reports: Sequence[RecipientReport],
    original: bytes,
    headers_only: bool,
    arrival: float,
    now: float,
    envid: str | None = None,
    postmaster: str | None = None,
) -> bytes:
    """The complete DSN message addressed to ``recipient`` (the original envelope sender).

    ``original`` is the returned content: the whole message, or only its header section
    when ``headers_only`` (RET=HDRS, or the message is too large to return).
    """
    if not recipient:
        raise ValueError("a DSN is never sent to the null reverse-path (RFC 3461 §6.1)")
    if not reports:
        raise ValueError("a DSN needs at least one recipient report")
    delayed = all(r.action == "delayed" for r in reports)
    boundary = f"=_correo_{secrets.token_hex(12)}"
    sender = postmaster or f"MAILER-DAEMON@{reporting_mta}"
    subject = (
        "Delayed Mail (still being retried)"
        if delayed
        else "Undelivered Mail Returned to Sender"
        if any(r.action == "failed" for r in reports)
        else "Successful Mail Delivery Report"
    )
    head = [
        f"From: Mail Delivery System <{sender}>",
        f"To: <{recipient}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: <{secrets.token_hex(10)}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        # RFC 3464 §2 / RFC 6522: multipart/report; report-type=delivery-status
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
    ]
    human = [f"This is the mail system at host {reporting_mta}.", ""]
    if delayed:
        human += [
            "Your message could not be delivered yet to the recipients below.",
            "The mail system will keep trying; you need not send it again.",
        ]
    else:
        human += [
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients. It's attached below.",
        ]
    human.append("")
    for r in reports:
        why = _clean(r.diagnostic) or r.status
        where = f" (host {r.remote_mta} said: {why})" if r.remote_mta else f": {why}"
        human.append(f"<{r.address}>{where}")
    # RFC 3464 §2.2: per-message fields.
    status = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:
        status.append(f"Original-Envelope-Id: {_clean(xtext_decode(envid))}")
    status.append(f"Arrival-Date: {_date(arrival)}")
    for r in reports:
        status.append("")  # RFC 3464 §2.1: a blank line before each recipient's fields
        if r.orcpt:
            kind, _, addr = r.orcpt.partition(";")
            status.append(f"Original-Recipient: {kind.strip()};{_clean(xtext_decode(addr))}")
        status.append(f"Final-Recipient: rfc822; {r.address}")  # RFC 3464 §2.3.2
        status.append(f"Action: {r.action}")  # §2.3.3
        status.append(f"Status: {r.status}")  # §2.3.4
        if r.remote_mta:
            status.append(f"Remote-MTA: dns; {r.remote_mta}")  # §2.3.5
        if r.diagnostic:
            status.append(f"Diagnostic-Code: {r.diagnostic_type}; {_clean(r.diagnostic)}")  # §2.3.6
        if r.last_attempt is not None:
            status.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")  # §2.3.7
        if r.retry_until is not None:
            status.append(f"Will-Retry-Until: {_date(r.retry_until)}")  # §2.3.9
    if headers_only:
        returned_type = "text/rfc822-headers"  # RFC 6522 §4
        returned = header_section(original)
    else:
        returned_type = "message/rfc822"
        returned = original
    eight_bit = not returned.isascii()
    parts = [
        "\r\n".join(head).encode(),
        f"\r\n--{boundary}\r\n".encode(),
        b"Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        "\r\n".join(human).encode("ascii", "replace") + b"\r\n",
        f"\r\n--{boundary}\r\n".encode(),
        b"Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n",
        "\r\n".join(status).encode("ascii", "replace") + b"\r\n",
        f"\r\n--{boundary}\r\n".encode(),
        f"Content-Description: Undelivered message\r\nContent-Type: {returned_type}\r\n".encode(),
        b"Content-Transfer-Encoding: 8bit\r\n" if eight_bit else b"",
        b"\r\n",
        returned if returned.endswith(b"\r\n") or not returned else returned + b"\r\n",
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts)
