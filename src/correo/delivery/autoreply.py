"""Messages the MDA writes itself: vacation replies (RFC 5230, RFC 3834) and Sieve
rejection notices (RFC 5429 §2.1, in the form of a delivery status notification).

Pure: bytes in, bytes out, so both are checked by unit tests without a server.
"""

from __future__ import annotations

import email.utils
import secrets
from datetime import UTC, datetime

from correo.message.encoded import encode_header

__all__ = ["rejection_message", "vacation_message"]


def _now(now: datetime | None) -> str:
    return email.utils.format_datetime(now or datetime.now(UTC))


def _clean(value: str) -> str:
    """One header line: no CR/LF (header injection from script text)."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def _msgid(hostname: str) -> str:
    return f"<{secrets.token_hex(12)}@{hostname}>"


def _text_body(text: str) -> tuple[str, bytes]:
    """A text/plain body: 8bit UTF-8 with CRLF lines (RFC 5322 §2.3 line bound kept)."""
    body = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    if not body.endswith("\r\n"):
        body += "\r\n"
    ascii_only = body.isascii()
    cte = "7bit" if ascii_only else "8bit"
    return cte, body.encode("utf-8")


def _mime_entity(reason: str) -> bytes:
    """The ``:mime`` reason as an entity whose header holds only Content-* fields.

    RFC 5230 §4.4 makes the reason a MIME part: its header fields land in the reply's
    header, so anything else (From, To, Bcc, Subject...) would let a script forge them.
    """
    text = reason.replace("\r\n", "\n").replace("\r", "\n")
    head, sep, body = text.partition("\n\n")
    if not sep:
        head, body = (text, "") if text.lower().startswith("content-") else ("", text)
    kept: list[str] = []
    keep = False
    for line in head.split("\n"):
        if line[:1] in (" ", "\t"):  # a folded continuation of the field before
            if keep:
                kept.append(line)
            continue
        name = line.partition(":")[0].strip().lower()
        keep = name.startswith("content-") and ":" in line  # RFC 2045 §9: MIME fields
        if keep:
            kept.append(line)
    if not any(k.lower().startswith("content-type") for k in kept):
        kept.append("Content-Type: text/plain; charset=utf-8")  # RFC 2045 §5.2 made explicit
    entity = "\r\n".join(kept) + "\r\n\r\n" + body.replace("\n", "\r\n")
    if not entity.endswith("\r\n"):
        entity += "\r\n"
    return entity.encode("utf-8")


def vacation_message(
    *,
    from_: str,
    to: str,
    subject: str,
    reason: str,
    mime: bool,
    in_reply_to: str | None,
    references: str | None,
    hostname: str,
    now: datetime | None = None,
) -> bytes:
    """The auto-reply (RFC 5230 §5): Auto-Submitted, In-Reply-To and References set."""
    head = [
        f"From: {_clean(from_)}",
        f"To: <{_clean(to)}>",
        f"Subject: {encode_header(_clean(subject))}",
        f"Date: {_now(now)}",
        f"Message-ID: {_msgid(hostname)}",
        "Auto-Submitted: auto-replied (vacation)",  # RFC 3834 §5, RFC 5230 §5.1
        "MIME-Version: 1.0",
    ]
    msgid = _clean(in_reply_to or "")
    if msgid:  # RFC 5230 §5.8
        head.append(f"In-Reply-To: {msgid}")
        refs = _clean(references or "")
        head.append(f"References: {(refs + ' ' + msgid).strip() if msgid not in refs else refs}")
    if mime:  # RFC 5230 §4.4: the reason is a MIME entity, its own headers included
        return ("\r\n".join(head) + "\r\n").encode() + _mime_entity(reason)
    cte, body = _text_body(reason)
    head += ["Content-Type: text/plain; charset=utf-8", f"Content-Transfer-Encoding: {cte}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def rejection_message(
    *,
    to: str,
    recipient: str,
    reason: str,
    original_header: bytes,
    hostname: str,
    now: datetime | None = None,
) -> bytes:
    """A DSN (RFC 3464) refusing the message for ``recipient`` with the script's reason."""
    boundary = "rej-" + secrets.token_hex(10)
    reason_line = _clean(reason) or "Message rejected by the recipient's filter"
    _, human = _text_body(
        f"Your message to <{recipient}> was rejected by the recipient's mail filter.\n\n"
        f"Reason: {reason}\n"
    )
    status = (
        f"Reporting-MTA: dns; {hostname}\r\n\r\n"
        f"Final-Recipient: rfc822; {_clean(recipient)}\r\n"
        "Action: failed\r\n"
        "Status: 5.7.1\r\n"  # RFC 5429 §2.1: rejected by Sieve
        f"Diagnostic-Code: smtp; 550 5.7.1 {reason_line[:200]}\r\n"
    ).encode()
    parts = [
        (
            f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
            f"To: <{_clean(to)}>\r\n"
            f"Subject: Rejected: message to {_clean(recipient)}\r\n"
            f"Date: {_now(now)}\r\n"
            f"Message-ID: {_msgid(hostname)}\r\n"
            "Auto-Submitted: auto-replied (rejected)\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            f'\tboundary="{boundary}"\r\n\r\n'
        ).encode(),
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n".encode(),
        human,
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n".encode(),
        status,
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n".encode(),
        original_header if original_header.endswith(b"\r\n") else original_header + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts)
