"""The quota warning: one message to the account when its usage passes 90 % of a limit.

The store tells (``MailStore.observe_quota``) when a commit took an account's usage
across 90 % from below — exactly once per crossing, whichever write did it (a delivery,
an APPEND, a COPY), because the crossing is decided inside that write's transaction.
So a user gets one warning, and another only after usage fell below 90 % and rose past
it again.  The warning itself is filed with ``quota=False``: a notice from the server
is never refused, and it never counts as a new crossing.
"""

from __future__ import annotations

import asyncio
import email.utils
import secrets
from datetime import UTC, datetime

from correo.config_rules import parse_size
from correo.log import Logger
from correo.store.api import DeliveryTarget, Envelope, MailStore, Quota, StoreError

__all__ = ["QuotaWarner", "default_limits", "usage_text", "warning_message"]


def default_limits(quota: str, messages: int) -> tuple[int | None, int | None]:
    """``[delivery] quota`` and ``quota_messages`` as the store's default limits."""
    return (parse_size(quota) if quota else None), (messages or None)


def _size(octets: int) -> str:
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if octets >= factor:
            return f"{octets / factor:.1f} {unit}"
    return f"{octets} bytes"


def usage_text(quota: Quota) -> str:
    """``storage 1.2 MB of 500.0 MB (0%), messages 3 of 100 (3%)`` for the limits set;
    "" when there are none (POP3 shows it at login)."""
    parts = []
    if quota.storage is not None:
        percent = 100 * quota.used_storage // max(1, quota.storage)
        parts.append(f"storage {_size(quota.used_storage)} of {_size(quota.storage)} ({percent}%)")
    if quota.messages is not None:
        percent = 100 * quota.used_messages // max(1, quota.messages)
        parts.append(f"messages {quota.used_messages} of {quota.messages} ({percent}%)")
    return ", ".join(parts)


def warning_message(
    account: str, quota: Quota, hostname: str, now: datetime | None = None
) -> bytes:
    """The warning as RFC 5322 bytes (Auto-Submitted, RFC 3834 §5: no auto-reply to it)."""
    lines = []
    if quota.storage is not None:
        percent = 100 * quota.used_storage // max(1, quota.storage)
        lines.append(f"Storage: {_size(quota.used_storage)} of {_size(quota.storage)} ({percent}%)")
    if quota.messages is not None:
        percent = 100 * quota.used_messages // max(1, quota.messages)
        lines.append(f"Messages: {quota.used_messages} of {quota.messages} ({percent}%)")
    body = (
        "Your mailbox is almost full.\r\n\r\n"
        + "".join(line + "\r\n" for line in lines)
        + "\r\nWhen it is full, new mail is refused or held back until you delete some\r\n"
        "messages (and empty the Trash or expunge deleted messages).\r\n"
    )
    header = (
        f"From: Mail System <postmaster@{hostname}>\r\n"
        f"To: <{account}>\r\n"
        "Subject: Your mailbox is almost full\r\n"
        f"Date: {email.utils.format_datetime(now or datetime.now(UTC))}\r\n"
        f"Message-ID: <{secrets.token_hex(12)}@{hostname}>\r\n"
        "Auto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
    )
    return (header + "\r\n" + body).encode("ascii")


class QuotaWarner:
    """The store's quota observer: files the warning into the account's INBOX."""

    def __init__(self, store: MailStore, hostname: str, log: Logger) -> None:
        self.store = store
        self.hostname = hostname
        self.log = log
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, account: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send(account))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, account: str) -> None:
        prefix = b"Return-Path: <>\r\n"
        spool = self.store.new_spool()
        try:
            quota = await self.store.get_quota(account)
            spool.write(prefix + warning_message(account, quota, self.hostname))
            await self.store.deliver(
                spool,
                Envelope(sender="", helo=self.hostname),
                [DeliveryTarget(account, quota=False)],
                queue_skip=len(prefix),
            )
        except (StoreError, OSError) as exc:
            spool.discard()
            self.log.error("quota.warning_failed", account=account, error=str(exc))
            return
        self.log.info(
            "quota.warning",
            account=account,
            used=quota.used_storage,
            limit=quota.storage,
            messages=quota.used_messages,
        )
