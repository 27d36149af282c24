"""JMAP blob downloads of messages and their parts, streamed (RFC 8620 §6.2).

A message's blob is sent from the store in chunks. A part's blob of a big message is
found in the part tree stored with the message (byte offsets, as IMAP's BODY[section]
uses) and decoded as it is read, so a 40 MB attachment never sits whole in memory.
The tree must number the leaves as RFC 8621 partIds are numbered from the parsed
message (:func:`correo.jmap.mail.find_part`); where it might not (a defect, a depth
past the parser's bound, a message/* other than rfc822), ``part_leaf`` says so and
the caller reads the message whole, as for small messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from correo.delivery.facts import tree_of
from correo.message.imapfmt import TransferDecoder
from correo.message.structure import Part
from correo.store.api import StoreError
from correo.web.jmap_mail import MailView, Row

__all__ = ["STREAM_MIN", "part_leaf", "stream_message", "stream_part"]

#: Messages at least this big have their parts streamed; smaller ones are read whole.
STREAM_MIN: Final = 1 << 20
_CHUNK: Final = 1 << 16
#: find_part's bounds: multiparts this deep are leaves, and at most this many leaves
_DEPTH: Final = 20
_LEAVES: Final = 1000


def part_leaf(tree: Part, part_id: str) -> Part | None:
    """The leaf that ``part_id`` names, or None when the tree may number otherwise."""
    if not part_id.isdigit() or not 1 <= int(part_id) <= _LEAVES:
        return None
    want = int(part_id)
    count = 0
    stack: list[tuple[Part, int]] = [(tree, 0)]
    while stack:
        part, depth = stack.pop()
        if part.defects or depth >= _DEPTH:
            return None
        kind = part.type.lower()
        if kind == "multipart":
            if not part.children:
                return None
            stack.extend((child, depth + 1) for child in reversed(part.children))
            continue
        if kind == "message":
            if part.subtype.lower() != "rfc822" or part.message is None:
                return None
            stack.append((part.message, depth + 1))
            continue
        count += 1
        if count == want:
            return part
    return None


async def _first(chunks: AsyncIterator[bytes]) -> bytes:
    """The first chunk, before the answer starts: a vanished message is still a 404."""
    try:
        return await anext(chunks, b"")
    except StoreError:
        raise web.HTTPNotFound(text="no such blob\n") from None


async def stream_message(
    request: web.Request, view: MailView, row: Row, headers: dict[str, str]
) -> web.StreamResponse:
    """A whole message as its blob, from the store in chunks (never held whole).

    A message expunged while it is sent cuts the response short of its length.
    """
    chunks = view.store.read_message(view.account, row.box.name, row.info.uid, _CHUNK)
    first = await _first(chunks)
    response = web.StreamResponse(headers=headers)
    response.content_length = row.info.size
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def stream_part(
    request: web.Request, view: MailView, row: Row, part_id: str, headers: dict[str, str]
) -> web.StreamResponse | None:
    """A part's decoded content, read and decoded in chunks; None: read it whole."""
    box, uid = row.box.name, row.info.uid
    facts = (await view.store.fetch_facts(view.account, box, [uid])).get(uid)
    if facts is None or not facts.tree:
        return None
    leaf = part_leaf(await tree_of(facts), part_id)
    if leaf is None:
        return None
    decoder = TransferDecoder(leaf.encoding)
    chunks = view.store.read_message(view.account, box, uid, _CHUNK, leaf.header_end, leaf.body_end)
    first = await _first(chunks)
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()  # the decoded length is known only at the end
    await response.prepare(request)
    await response.write(decoder.feed(first))
    async for chunk in chunks:
        out = decoder.feed(chunk)
        if out:
            await response.write(out)
    await response.write(decoder.finish())
    await response.write_eof()
    return response
