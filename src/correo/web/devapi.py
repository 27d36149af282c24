"""The JSON message API of ``correo dev`` on the https listener (docs/testing.md).

* ``GET /api/v1/messages[?limit=N&offset=M]`` — summaries, newest first;
* ``GET /api/v1/messages/{id}`` — one message: headers, text and HTML bodies, attachments;
* ``GET /api/v1/messages/{id}/raw`` — the message as stored (``message/rfc822``);
* ``DELETE /api/v1/messages`` — empty the catch-all mailbox (``/{id}``: one message).

Ids are the IMAP UIDs of the catch-all INBOX, so the API and an IMAP client name the
same messages.  The routes exist only on a server started by ``correo dev``.  Parsing
runs in a worker thread: a message is whatever a sender chose to send, up to
``[limits] message_size``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from aiohttp import web

from correo.message.encoded import raw_utf8
from correo.message.mime import parse_address_list
from correo.message.structure import parse_structure
from correo.server.devmode import ENVELOPE_FIELD, DevMode, read_message_bytes
from correo.store.api import INBOX, MailStore, MessageInfo, StoreError
from correo.web.app import CTX

__all__ = ["PREFIX", "add_routes", "message_detail", "message_summary"]

PREFIX = "/api/v1/messages"
_ID = "{id:[0-9]{1,10}}"  # ASCII digits: "\d" would take any Unicode digit
_HEAD_BYTES = 64 * 1024  # what a summary reads of each message: its header section
_MAX_LIMIT = 500
_DEFAULT_LIMIT = 50
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
# RecursionError too: the stdlib's readers recurse per nested comment, group or part
# (a To: of 5,000 "(" or a message 1,000 parts deep), here in a worker thread
_PARSE_ERRORS = (LookupError, ValueError, TypeError, AssertionError, RecursionError)
_MAX_NESTING = 16  # parts within parts beyond what mail uses: read as header and one body


def add_routes(app: web.Application) -> None:
    """The message API (GET also answers HEAD)."""
    app.router.add_get(PREFIX, _list)
    app.router.add_delete(PREFIX, _delete_all)
    app.router.add_get(f"{PREFIX}/{_ID}", _one)
    app.router.add_delete(f"{PREFIX}/{_ID}", _delete_one)
    app.router.add_get(f"{PREFIX}/{_ID}/raw", _raw)


def _addresses(message: EmailMessage, name: str) -> list[str]:
    try:
        header = message.get(name)
        return [] if header is None else [str(a.addr_spec) for a in header.addresses]
    except RecursionError:  # nested a thousand deep: correo's own reader, linear
        values = [str(v) for k, v in message.raw_items() if k.lower() == name.lower()]
        found = (a for v in values for a in parse_address_list(v))
        return [f"{a.mailbox}@{a.host}" for a in found if a.mailbox and a.host]
    except (*_PARSE_ERRORS, AttributeError, IndexError):  # beyond the parser's reading
        return []


def _text(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (*_PARSE_ERRORS, IndexError):
        return ""
    return "" if value is None else _UNFOLD.sub("", str(value))


def message_summary(head: bytes, info: MessageInfo) -> dict[str, Any]:
    """The list entry for one message, from its header section."""
    end = head.find(b"\r\n\r\n")
    message = BytesHeaderParser(policy=email.policy.default).parsebytes(
        head if end < 0 else head[: end + 4]
    )
    assert isinstance(message, EmailMessage)
    envelope = _text(message, ENVELOPE_FIELD)
    return {
        "id": info.uid,
        "envelope_from": _text(message, "Return-Path").strip().strip("<>"),
        "envelope_to": [a.strip() for a in envelope.split(",") if a.strip()],
        "from": _addresses(message, "From"),
        "to": _addresses(message, "To"),
        "cc": _addresses(message, "Cc"),
        "subject": _text(message, "Subject"),
        "date": _text(message, "Date"),
        "message_id": _text(message, "Message-ID"),
        "received_at": datetime.fromtimestamp(info.internal_date, UTC).isoformat(),
        "size": info.size,
        "seen": "\\Seen" in info.flags,
    }


def message_detail(raw: bytes, info: MessageInfo) -> dict[str, Any]:
    """One message in full: the summary, every header field, bodies and attachments."""
    detail = message_summary(raw[:_HEAD_BYTES], info)
    message = _parse(raw)
    # RFC 5322 §2.2.3: unfolded, as a reader sees the value
    detail["headers"] = [
        [raw_utf8(name), raw_utf8(_UNFOLD.sub("", str(value)))]
        for name, value in message.raw_items()
    ]
    detail["text"] = _body(message, "plain")
    detail["html"] = _body(message, "html")
    attachments = []
    try:
        for part in message.iter_attachments():
            payload = part.get_payload(decode=True)
            attachments.append(
                {
                    "filename": str(part.get_filename() or ""),
                    "content_type": part.get_content_type(),
                    "size": len(payload) if isinstance(payload, bytes) else 0,
                }
            )
    except _PARSE_ERRORS:
        pass  # a part the parser cannot walk: the raw message still has it
    detail["attachments"] = attachments
    return detail


def _nesting(raw: bytes) -> int:
    """How deep parts nest in ``raw``, by correo's own parser (linear, no recursion); a
    bare CR, a line end to the stdlib and not to correo, counts as too deep."""
    if raw.count(b"\r") != raw.count(b"\r\n"):
        return _MAX_NESTING + 1
    deepest = 0
    stack = [(parse_structure(raw), 0)]
    while stack and deepest <= _MAX_NESTING:
        part, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in part.children)
        if part.message is not None:
            stack.append((part.message, depth + 1))
    return deepest


def _parse(raw: bytes) -> EmailMessage:
    """The stdlib's tree, or the header and one opaque body for a message nested deeper
    than mail goes: the stdlib parser recurses per level (RecursionError at about a
    thousand) and its cost grows faster than the message."""
    if _nesting(raw) <= _MAX_NESTING:
        try:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            return message
        except RecursionError:  # not expected under the bound; still a clean answer
            pass
    head = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    assert isinstance(head, EmailMessage)
    return head


def _body(message: EmailMessage, kind: str) -> str | None:
    try:
        part = message.get_body(preferencelist=(kind,))
        content = None if part is None else part.get_content()
    except (*_PARSE_ERRORS, KeyError):
        return None  # an unknown charset or a broken part: the raw message still has it
    # lines end in "\n" here, as text does in JSON consumers; raw keeps the CRLFs
    return content.replace("\r\n", "\n") if isinstance(content, str) else None


def _json(value: object, status: int = 200) -> web.Response:
    body = json.dumps(value, ensure_ascii=False, indent=1) + "\n"
    return web.Response(status=status, text=body, content_type="application/json")


def _mailbox(request: web.Request) -> tuple[MailStore, str]:
    ctx = request.app[CTX]
    dev: DevMode | None = ctx.dev
    if dev is None:  # the routes are only added in dev mode; never serve them otherwise
        raise web.HTTPNotFound()
    return ctx.store, dev.account


def _count(request: web.Request, name: str, default: int, most: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise web.HTTPBadRequest(text=f"{name} must be a whole number\n")
    return min(int(text), most)


async def _list(request: web.Request) -> web.Response:
    store, account = _mailbox(request)
    limit = _count(request, "limit", _DEFAULT_LIMIT, _MAX_LIMIT)
    offset = _count(request, "offset", 0, 10**9)
    infos = await store.list_messages(account, INBOX)
    entries = []
    for info in list(reversed(infos))[offset : offset + limit]:
        try:
            head = await read_message_bytes(store, account, INBOX, info.uid, _HEAD_BYTES)
        except StoreError:
            continue  # deleted meanwhile
        entries.append(await asyncio.to_thread(message_summary, head, info))
    return _json(
        {"total": len(infos), "offset": offset, "count": len(entries), "messages": entries}
    )


async def _delete_all(request: web.Request) -> web.Response:
    store, account = _mailbox(request)
    infos = await store.list_messages(account, INBOX)
    return _json({"deleted": await store.expunge(account, INBOX, [i.uid for i in infos])})


async def _find(request: web.Request) -> tuple[MailStore, str, MessageInfo]:
    store, account = _mailbox(request)
    uid = int(request.match_info["id"])
    for info in await store.list_messages(account, INBOX):
        if info.uid == uid:
            return store, account, info
    raise web.HTTPNotFound(text=f"no message {uid}\n")


async def _delete_one(request: web.Request) -> web.Response:
    store, account, info = await _find(request)
    return _json({"deleted": await store.expunge(account, INBOX, [info.uid])})


async def _read(request: web.Request) -> tuple[bytes, MessageInfo]:
    store, account, info = await _find(request)
    try:
        return await read_message_bytes(store, account, INBOX, info.uid), info
    except StoreError:
        raise web.HTTPNotFound(text=f"no message {info.uid}\n") from None


async def _one(request: web.Request) -> web.Response:
    raw, info = await _read(request)
    return _json(await asyncio.to_thread(message_detail, raw, info))


async def _raw(request: web.Request) -> web.Response:
    raw, _ = await _read(request)
    return web.Response(body=raw, content_type="message/rfc822")
