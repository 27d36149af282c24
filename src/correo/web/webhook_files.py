"""Attachment links of ``received`` webhooks, on the https listener.

``GET /webhooks/files/{token}``: the token (``correo.webhooks.links``) is checked for
its signature and expiry before the store is asked anything; the attachment is then
streamed from its byte range, transfer-decoded as it goes, so a 50 MB attachment costs
64 KiB of memory.  It is served as a download in a sandbox (no script of a mail runs
on this origin).  A bad or expired link and a message gone since are all ``404``.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import quote

from aiohttp import web

from correo.message.imapfmt import TransferDecoder
from correo.store.api import StoreError
from correo.web.app import CTX, DEADLINE
from correo.webhooks.links import PATH, verify
from correo.webhooks.payload import attachment_parts, filename_of, message_tree

__all__ = ["add_routes"]

_KEY = web.AppKey("webhook_key", bytearray)
_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_OCTETS = "application/octet-stream"
_PIECE_SECONDS = 60.0  # for each 64 KiB piece of a download to be taken


def add_routes(app: web.Application) -> None:
    app[_KEY] = bytearray()  # the store's link key, read on first use
    app.router.add_get(PATH + "{token}", _download)


async def _download(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    cached = request.app[_KEY]
    if not cached:
        cached += await ctx.store.webhook_key()
    ref = verify(bytes(cached), request.match_info["token"], time.time())
    if ref is None:
        raise web.HTTPNotFound(text="no such link, or it has expired\n")
    store = ctx.store
    try:
        state = await store.mailbox_state(ref.account, ref.mailbox)
        if state.uidvalidity != ref.uidvalidity:
            raise StoreError("mailbox replaced")
        parts = attachment_parts(await message_tree(store, ref.account, ref.mailbox, ref.uid))
    except StoreError:
        raise web.HTTPNotFound(text="the message is no longer stored\n") from None
    if not 0 <= ref.index < len(parts):
        raise web.HTTPNotFound(text="no such attachment\n")
    part = parts[ref.index]
    name = filename_of(part) or f"attachment-{ref.index + 1}"
    response = web.StreamResponse(
        headers={
            "Content-Type": part.media_type if _TYPE.fullmatch(part.media_type) else _OCTETS,
            # RFC 6266 §4.3 with RFC 8187's UTF-8 form of the name
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        }
    )
    decoder = TransferDecoder(part.encoding)
    chunks = store.read_message(
        ref.account, ref.mailbox, ref.uid, start=part.header_end, end=part.body_end
    )
    try:
        first = decoder.feed(await anext(chunks, b""))
    except StoreError:
        raise web.HTTPNotFound(text="the message is no longer stored\n") from None
    await response.prepare(request)
    await response.write(first)
    deadline = request.get(DEADLINE)
    loop = asyncio.get_running_loop()
    try:
        async for chunk in chunks:
            if deadline is not None:  # a large file on a slow line: a deadline per piece
                deadline.reschedule(loop.time() + _PIECE_SECONDS)
            await response.write(decoder.feed(chunk))
    except StoreError:  # deleted while streaming: cut the answer short, visibly
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write(decoder.finish())
    await response.write_eof()
    return response
