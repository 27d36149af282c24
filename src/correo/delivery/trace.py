"""Trace fields added at acceptance and final delivery (RFC 5321 §4.4, RFC 3848)."""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import format_datetime

__all__ = ["protocol_name", "received_field", "return_path_field"]


def protocol_name(*, extended: bool, tls: bool, authenticated: bool, lmtp: bool = False) -> str:
    """The ``with`` keyword of a Received: field, per the RFC 3848 registry."""
    base = "LMTP" if lmtp else "ESMTP" if extended else "SMTP"
    if extended or lmtp:
        if tls:
            base += "S"
        if authenticated:
            base += "A"
    return base


def received_field(
    *,
    helo: str,
    peer_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    tls: str | None = None,
    authenticated: str | None = None,
    recipient: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """A folded ``Received:`` field ending in CRLF (RFC 5321 §4.4, RFC 5322 §3.6.7)."""
    helo_safe = "".join(c for c in helo if 32 < ord(c) < 127 and c not in "()") or "unknown"
    parts = [f"from {helo_safe} ([{peer_ip}])", f"by {hostname} (correo)"]
    if tls:
        parts.append(f"(using {tls})")
    if authenticated:
        parts.append(f"(authenticated as {authenticated})")
    parts.append(f"with {protocol}")
    parts.append(f"id {queue_id}")
    if recipient:
        parts.append(f"for <{recipient}>")
    stamp = format_datetime(now) if now is not None else _now_stamp()
    return ("Received: " + "\r\n\t".join(parts) + f";\r\n\t{stamp}\r\n").encode()


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_stamp_cache: tuple[int, str] = (-1, "")


def _now_stamp() -> str:
    """The current RFC 5322 §3.3 date-time in UTC, formatted once per second.

    ``email.utils.format_datetime`` costs more than the rest of the field; every message
    accepted in the same second carries the same stamp anyway.
    """
    global _stamp_cache
    sec = int(time.time())
    cached = _stamp_cache
    if cached[0] == sec:
        return cached[1]
    t = time.gmtime(sec)
    stamp = (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    _stamp_cache = (sec, stamp)  # one tuple: a reader on another thread sees old or new
    return stamp


def return_path_field(sender: str) -> bytes:
    """``Return-Path:`` added by the final delivery (RFC 5321 §4.4)."""
    return f"Return-Path: <{sender}>\r\n".encode()
