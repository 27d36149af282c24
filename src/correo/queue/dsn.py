"""Delivery status notifications: RFC 3464 ``multipart/report`` messages.

Pure composition: the runner gives the reports and the original message (or its
header section) and gets the bytes to queue.  One DSN covers every recipient that
failed (or was delayed, or was delivered when the sender asked for NOTIFY=SUCCESS) in
one delivery attempt; it is never sent to the null sender (RFC 5321 §6.1, RFC 3461
§6.1) — the caller checks, and :func:`compose_dsn` refuses.  When the original message
used SMTPUTF8, the report is the internationalized form of RFC 6533.

Who may ask for what (RFC 3461 §4 leaves it to the receiver, and Postfix and Exim
limit it alike): a DSN goes to the envelope sender, which on the MX anyone can forge,
so honouring NOTIFY=SUCCESS and RET=FULL there would mail anyone's content to a
chosen victim from our address (backscatter, a content relay).  Mail from the MX
therefore has its success notices dropped unless SPF (or an aligned DMARC pass)
authenticates the return path (:func:`return_path_authenticated`,
:func:`without_success`), and its notices never return more than the header section
(RET=HDRS).  Authenticated submission keeps every choice.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

from correo.mailauth.dmarc import DmarcStatus, aligned
from correo.mailauth.inbound import AuthVerdict
from correo.mailauth.spf import SpfResult

__all__ = [
    "SUCCESS_ACTIONS",
    "RecipientReport",
    "compose_dsn",
    "header_section",
    "return_path_authenticated",
    "without_success",
    "xtext_decode",
]

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
#: RFC 3464 §2.3.3 actions that report success (RFC 3461 §6.2: NOTIFY=SUCCESS).
SUCCESS_ACTIONS: frozenset[str] = frozenset({"delivered", "relayed", "expanded"})
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


def without_success(notify: str | None) -> str | None:
    """``notify`` without SUCCESS (RFC 3461 §4.1); NEVER when nothing else was asked."""
    if not notify or "SUCCESS" not in notify.upper():
        return notify
    kept = [v.strip().upper() for v in notify.split(",") if v.strip().upper() != "SUCCESS"]
    return ",".join(kept) or "NEVER"


def return_path_authenticated(sender: str, verdict: AuthVerdict | None) -> bool:
    """Whether the MX may send a success notice to ``sender``: its domain passed SPF,
    or DMARC passed for a From domain aligned with it (RFC 7208 §2.4, RFC 7489 §3.1)."""
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    if not sender or not domain or verdict is None:
        return False
    spf = verdict.spf
    if spf.result is SpfResult.PASS and spf.domain.lower().rstrip(".") == domain:
        return True
    dmarc = verdict.dmarc
    return (
        dmarc.status is DmarcStatus.PASS
        and bool(verdict.from_domain)
        and aligned(domain, verdict.from_domain, strict=False)
    )


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
    utf8: bool = False,
) -> bytes:
    """The complete DSN message addressed to ``recipient`` (the original envelope sender).

    ``original`` is the returned content: the whole message, or only its header section
    when ``headers_only`` (RET=HDRS, or the message is too large to return).  ``utf8``
    (the original used SMTPUTF8) selects the RFC 6533 media types, whose fields may hold
    UTF-8 addresses; such a DSN must itself travel with SMTPUTF8.
    """
    if not recipient:
        raise ValueError("a DSN is never sent to the null reverse-path (RFC 3461 §6.1)")
    if not reports:
        raise ValueError("a DSN needs at least one recipient report")
    delayed = all(r.action == "delayed" for r in reports)
    success = all(r.action in SUCCESS_ACTIONS for r in reports)
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
    elif success:
        human += [
            "Your message was successfully delivered to the destinations below.",
            "A destination marked relayed did not offer delivery notifications:",
            "you will not receive further notice of delivery from there.",
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
        done = f" {r.action}" if success else ""
        human.append(f"<{r.address}>{done}{where}")
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
        # RFC 3464 §2.3.2; RFC 6533 §3: the utf-8 address type for non-ASCII addresses
        kind = "utf-8" if utf8 and not r.address.isascii() else "rfc822"
        status.append(f"Final-Recipient: {kind}; {r.address}")
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
        # RFC 6522 §4; RFC 6533 §6.3 for a header section that may hold UTF-8
        returned_type = "message/global-headers" if utf8 else "text/rfc822-headers"
        returned = header_section(original)
    else:
        returned_type = "message/global" if utf8 else "message/rfc822"  # RFC 6533 §6.1
        returned = original
    # RFC 6533 §6.2: message/global-delivery-status may carry UTF-8 field values.
    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"
    status_bytes = "\r\n".join(status).encode("utf-8" if utf8 else "ascii", "replace")
    human_bytes = "\r\n".join(human).encode("utf-8" if utf8 else "ascii", "replace")
    charset = "us-ascii" if human_bytes.isascii() else "utf-8"
    description = "Delivered message" if success else "Undelivered message"
    eight_bit = not returned.isascii()
    parts = [
        "\r\n".join(head).encode(),
        f"\r\n--{boundary}\r\n".encode(),
        b"Content-Description: Notification\r\n",
        f"Content-Type: text/plain; charset={charset}\r\n".encode(),
        b"Content-Transfer-Encoding: 8bit\r\n" if not human_bytes.isascii() else b"",
        b"\r\n",
        human_bytes + b"\r\n",
        f"\r\n--{boundary}\r\n".encode(),
        f"Content-Description: Delivery report\r\nContent-Type: {status_type}\r\n".encode(),
        b"Content-Transfer-Encoding: 8bit\r\n" if not status_bytes.isascii() else b"",
        b"\r\n",
        status_bytes + b"\r\n",
        f"\r\n--{boundary}\r\n".encode(),
        f"Content-Description: {description}\r\nContent-Type: {returned_type}\r\n".encode(),
        b"Content-Transfer-Encoding: 8bit\r\n" if eight_bit else b"",
        b"\r\n",
        returned if returned.endswith(b"\r\n") or not returned else returned + b"\r\n",
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts)
