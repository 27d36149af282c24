"""Signed, expiring links to one attachment of a stored message.

A link names the message by account, mailbox, UIDVALIDITY and UID (never reused, RFC
9051 §2.3.1.1) and the attachment by its position; an HMAC-SHA256 under the store's
key (:meth:`MailStore.webhook_key`) covers all of it and the expiry time, so a link
cannot be altered to reach another message or outlive its expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

__all__ = ["PATH", "AttachmentRef", "sign", "verify"]

#: Where the https listener serves attachments (``correo.web.webhook_files``).
PATH = "/webhooks/files/"
_CONTEXT = b"correo webhook attachment\x00"
_MAX_TOKEN = 4096


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    account: str
    mailbox: str
    uidvalidity: int
    uid: int
    index: int  # position among the message's attachments (payload.attachment_parts)
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, _CONTEXT + body.encode("ascii"), hashlib.sha256).digest())


def sign(key: bytes, ref: AttachmentRef) -> str:
    """The token for ``ref`` (the last path segment of its link)."""
    fields = [ref.account, ref.mailbox, ref.uidvalidity, ref.uid, ref.index, int(ref.expires)]
    body = _b64(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{body}.{_mac(key, body)}"


def verify(key: bytes, token: str, now: float) -> AttachmentRef | None:
    """The reference in ``token`` if its signature holds and it has not expired."""
    if len(token) > _MAX_TOKEN or not token.isascii():
        return None
    body, dot, mac = token.rpartition(".")
    if not dot or not hmac.compare_digest(mac, _mac(key, body)):
        return None
    try:
        fields = json.loads(_unb64(body))
        account, mailbox, uidvalidity, uid, index, expires = fields
    except (ValueError, TypeError):
        return None
    if not (isinstance(account, str) and isinstance(mailbox, str)):
        return None
    if not all(isinstance(v, int) for v in (uidvalidity, uid, index, expires)):
        return None
    if expires < now:
        return None
    return AttachmentRef(account, mailbox, uidvalidity, uid, index, float(expires))
