"""The ``received`` payload: a stored message as JSON, read in bounded pieces.

Nothing here holds a whole message: the MIME part tree stored beside it (its facts,
with byte offsets) says where the header, the text and HTML bodies and each attachment
lie, and only those ranges are read — the bodies up to ``text_limit`` characters, the
attachments inlined up to ``inline_limit`` bytes in all; every other attachment becomes
a signed, expiring link.  Decoding runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

from correo.config import WebhookSettings
from correo.delivery.facts import load_tree
from correo.message.encoded import decode_header
from correo.message.headers import parse_fields
from correo.message.imapfmt import decode_transfer
from correo.message.mime import decode_param
from correo.message.structure import Part, parse_structure
from correo.message.text import decode_text
from correo.store.api import MailStore

__all__ = [
    "HEADER_LIMIT",
    "attachment_parts",
    "body_parts",
    "filename_of",
    "message_payload",
    "message_tree",
    "read_range",
]

HEADER_LIMIT = 256 * 1024  # bytes of the header section sent as fields
#: Messages stored without facts (older stores) are parsed from at most this much.
_FALLBACK_LIMIT = 16 * 1024 * 1024
#: Link maker: attachment position -> (URL, expiry as Unix time).
LinkMaker = Callable[[int], tuple[str | None, float]]


async def read_range(
    store: MailStore, account: str, mailbox: str, uid: int, start: int, end: int
) -> bytes:
    """Bytes ``start``..``end`` of a stored message (StoreError once it is gone)."""
    out = bytearray()
    async for chunk in store.read_message(account, mailbox, uid, start=start, end=end):
        out += chunk
    return bytes(out)


async def message_tree(store: MailStore, account: str, mailbox: str, uid: int) -> Part:
    """The stored MIME part tree (computed again, bounded, for a message without one)."""
    facts = (await store.fetch_facts(account, mailbox, [uid])).get(uid)
    if facts is not None and facts.tree:
        return await asyncio.to_thread(load_tree, facts)
    data = await read_range(store, account, mailbox, uid, 0, _FALLBACK_LIMIT)
    return await asyncio.to_thread(parse_structure, data)


def _leaves(part: Part) -> list[Part]:
    """Parts with content of their own, in order; a message/rfc822 part is one leaf."""
    out: list[Part] = []
    stack = [part]
    while stack:
        p = stack.pop()
        if p.is_multipart and p.children:
            stack.extend(reversed(p.children))
        else:
            out.append(p)
    return out


def _attached(p: Part) -> bool:
    return (p.disposition or "").lower() == "attachment"


def body_parts(tree: Part) -> tuple[Part | None, Part | None]:
    """The text/plain and text/html parts a reader sees as the message body."""
    text = html = None
    for p in _leaves(tree):
        if _attached(p):
            continue
        if text is None and p.media_type == "text/plain":
            text = p
        elif html is None and p.media_type == "text/html":
            html = p
    return text, html


def attachment_parts(tree: Part) -> list[Part]:
    """Every other part with content: the attachments, inline images included.  Links
    name an attachment by its position here."""
    text, html = body_parts(tree)
    return [p for p in _leaves(tree) if p is not text and p is not html]


def filename_of(p: Part) -> str:
    name = decode_param(p.disposition_params, "filename") or decode_param(p.params, "name")
    return decode_header(name) if name else ""


def _decoded_size(p: Part) -> int:
    """The size after transfer decoding, estimated from the encoded one (base64: 3/4)."""
    size = max(0, p.body_size)
    return size * 3 // 4 if (p.encoding or "").strip().lower() == "base64" else size


def _decode_body(raw: bytes, p: Part, limit: int) -> tuple[str, bool]:
    text = decode_text(decode_transfer(raw, p.encoding), decode_param(p.params, "charset"))
    text = text.replace("\r\n", "\n")
    return (text[:limit], True) if len(text) > limit else (text, False)


def _headers(raw: bytes) -> list[list[str]]:
    return [[name, decode_header(value.strip())] for name, value in parse_fields(raw)]


async def message_payload(
    store: MailStore,
    account: str,
    mailbox: str,
    uid: int,
    hook: WebhookSettings,
    link: LinkMaker,
) -> dict[str, Any]:
    """The message part of a ``received`` payload (docs/webhooks.md); StoreError when the
    message is no longer stored."""
    tree = await message_tree(store, account, mailbox, uid)
    head = await read_range(
        store, account, mailbox, uid, tree.header_start, min(tree.header_end, HEADER_LIMIT)
    )
    headers = await asyncio.to_thread(_headers, head)
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name, value)
    out: dict[str, Any] = {
        "size": tree.body_end,
        "headers": headers,
        "subject": first.get("subject", ""),
        "from": first.get("from", ""),
        "to": first.get("to", ""),
        "cc": first.get("cc", ""),
        "date": first.get("date", ""),
        "message_id": first.get("message-id", ""),
    }
    text, html = body_parts(tree)
    for key, p in (("text", text), ("html", html)):
        out[key], out[f"{key}_truncated"] = None, False
        if p is None:
            continue
        # the encoded form of text_limit characters: at most 4 bytes each, and base64
        # or quoted-printable spend up to 3 bytes per byte
        cap = min(p.body_end, p.header_end + hook.text_limit * 12)
        raw = await read_range(store, account, mailbox, uid, p.header_end, cap)
        out[key], truncated = await asyncio.to_thread(_decode_body, raw, p, hook.text_limit)
        out[f"{key}_truncated"] = truncated or cap < p.body_end
    budget = hook.inline_limit
    attachments: list[dict[str, Any]] = []
    for index, p in enumerate(attachment_parts(tree)):
        entry: dict[str, Any] = {
            "filename": filename_of(p),
            "content_type": p.media_type,
            "disposition": (p.disposition or "").lower() or None,
            "content_id": (p.id or "").strip("<> ") or None,
            "size": _decoded_size(p),
        }
        if p.body_size <= budget * 4 // 3 + 4:
            raw = await read_range(store, account, mailbox, uid, p.header_end, p.body_end)
            data = await asyncio.to_thread(decode_transfer, raw, p.encoding)
            if len(data) <= budget:
                budget -= len(data)
                entry["size"] = len(data)
                entry["content"] = base64.b64encode(data).decode("ascii")
                attachments.append(entry)
                continue
        entry["url"], expires = link(index)  # None: no https listener to serve it
        entry["url_expires"] = int(expires) if entry["url"] else None
        attachments.append(entry)
    out["attachments"] = attachments
    return out
