"""URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524): GENURLAUTH, RESETKEY, URLFETCH.

GENURLAUTH signs a URL of a message in one of the user's own mailboxes, or in one shared
with the user with ``r`` (RFC 4314), with the mailbox access key
(made on first use, kept by the store); URLFETCH checks the signature against the
owner's key and hands out the part, streamed from the store.  RESETKEY forgets keys,
so every URL signed with them stops working at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from correo.imap.responses import quote_string, tagged
from correo.imap.urlauth import FetchUrl, GenUrlAuth, ResetKey, UrlFetch
from correo.imap.urls import ImapUrl, UrlError, parse_url
from correo.message.imapfmt import TransferDecoder, bodystructure
from correo.server.imap.fetch import Rendered
from correo.server.imap.names import normalize
from correo.server.imap.streams import send_streams
from correo.server.imap.urlparts import INTERNAL, Located, locate, sign, url_allowed
from correo.store.api import MailboxError, MailStore

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["cmd_genurlauth", "cmd_resetkey", "cmd_urlfetch"]

# RFC 3516 §4.2: the encodings BINARY can undo; any other one gives NIL (RFC 5524 §4)
_DECODABLE = frozenset({"", "7bit", "8bit", "binary", "base64", "quoted-printable"})


async def cmd_genurlauth(session: ImapSession, tag: str, cmd: GenUrlAuth) -> None:
    """RFC 4467 §7: every URL must name a mailbox of the user and carry an access
    identifier but no token; any failed check is BAD for the whole command."""
    user = session.user
    assert user is not None
    urls: list[str] = []
    for text, mechanism in cmd.requests:
        try:
            url = parse_url(text, relative=False)
        except UrlError as exc:
            session.write(tagged(tag, "BAD", f"Invalid URL: {exc}"))
            return
        if url.access is None or url.token is not None:
            session.write(tagged(tag, "BAD", "Not a rump URL: ;URLAUTH=access without a token"))
            return
        owner = url.owner() or user
        if owner != user and "r" not in await session.ctx.store.acl_rights(
            owner, url.mailbox, user
        ):  # another account's mailbox: only one the user may read (RFC 4314 "r")
            session.write(tagged(tag, "BAD", "The URL must name a mailbox you may read"))
            return
        if mechanism != INTERNAL:
            session.write(tagged(tag, "BAD", "Unsupported URLAUTH mechanism"))
            return
        try:  # RFC 4467 §7: a mailbox without a key gets one now (the owner's key)
            key = await session.ctx.store.urlauth_key(owner, url.mailbox, create=True)
        except MailboxError:
            session.write(tagged(tag, "BAD", "No such mailbox"))
            return
        urls.append(f"{url.rump}:internal:{sign(key, url.rump)}")
    session.write(b"* GENURLAUTH " + b" ".join(quote_string(u) for u in urls) + b"\r\n")
    session.write(tagged(tag, "OK", "GENURLAUTH completed"))


async def cmd_resetkey(session: ImapSession, tag: str, cmd: ResetKey) -> None:
    """RFC 4467 §7: forget one mailbox's key, or all of them; only INTERNAL exists."""
    user = session.user
    assert user is not None
    if any(m != INTERNAL for m in cmd.mechanisms):
        session.write(tagged(tag, "NO", "Unsupported URLAUTH mechanism"))
        return
    if cmd.mailbox is None:
        await session.ctx.store.urlauth_reset(user)
        session.write(tagged(tag, "OK", "All keys removed"))
        return
    try:
        await session.ctx.store.urlauth_reset(user, normalize(cmd.mailbox))
    except MailboxError:
        session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
        return
    session.write(tagged(tag, "OK", "Key removed", "URLMECH INTERNAL"))


async def cmd_urlfetch(session: ImapSession, tag: str, cmd: UrlFetch) -> None:
    """RFC 4467 §7: each URL's data, or NIL when it is not valid for this user."""
    user = session.user
    assert user is not None
    store = session.ctx.store
    now = dt.datetime.now(dt.UTC)
    for item in cmd.urls:
        located: Located | None = None
        try:
            url = parse_url(item.url, relative=False)
        except UrlError:
            pass
        else:
            owner = await url_allowed(store, url, user, now=now)
            if owner is not None:
                located = await locate(store, url, owner)
        head = b"* URLFETCH " + quote_string(item.url)
        out = None if located is None else await _answer(store, head, item, located, url)
        if out is None:
            session.write(head + b" NIL\r\n")
            continue
        await send_streams(session, out, 0)
        await session.conn.flush(session.write_timeout)
    session.write(tagged(tag, "OK", "URLFETCH completed"))


async def _answer(
    store: MailStore, head: bytes, item: FetchUrl, found: Located, url: ImapUrl
) -> Rendered | None:
    """The response for one valid URL; None when what it asks for does not exist."""
    if item.params is None:  # RFC 4467 §8: url SP nstring
        return Rendered([head + b" {%d}\r\n" % found.size, b"", b"\r\n"], {1: found.chunks(store)})
    part = found.part
    text = head
    if "BINARY" in item.params:
        if part is not None and part.is_multipart:
            return None
        # RFC 3516 §6.4.5: BINARY[] of a whole message is the message as it is
        raw = part is None or not url.section
        encoding = "" if raw or part is None else (part.encoding or "").strip().lower()
        if encoding not in _DECODABLE:
            structure = b""
            if "BODYPARTSTRUCTURE" in item.params and part is not None:
                structure = b" (BODYPARTSTRUCTURE (" + bodystructure(part) + b"))"
            return Rendered([text + structure + b" (BINARY NIL)\r\n"])
        size, nul, high = 0, False, False
        async for piece in _decoded(store, found, raw, url.partial):
            size += len(piece)
            nul = nul or b"\x00" in piece
            high = high or max(piece, default=0) >= 0x80
        if "BODYPARTSTRUCTURE" in item.params:
            if part is None:
                return None
            # RFC 5524 §4: the structure of the data returned, decoded (as Dovecot:
            # no line count)
            kind = "binary" if nul else "8bit" if high else "7bit"
            decoded = dataclasses.replace(
                part, encoding=kind, body_end=part.header_end + size, body_lines=0
            )
            text += b" (BODYPARTSTRUCTURE (" + bodystructure(decoded) + b"))"
        lead = b" (BINARY ~{%d}\r\n" if nul else b" (BINARY {%d}\r\n"
        chunks = _decoded(store, found, raw, url.partial)
        return Rendered([text + lead % size, b"", b")\r\n"], {1: chunks})
    if "BODYPARTSTRUCTURE" in item.params:
        if part is None:
            return None
        text += b" (BODYPARTSTRUCTURE (" + bodystructure(part) + b"))"
    if "BODY" not in item.params:
        return Rendered([text + b"\r\n"])
    return Rendered(
        [text + b" (BODY {%d}\r\n" % found.size, b"", b")\r\n"], {1: found.chunks(store)}
    )


async def _decoded(
    store: MailStore, found: Located, raw: bool, partial: tuple[int, int | None] | None
) -> AsyncIterator[bytes]:
    """The part's content with its transfer encoding undone, as it is read; a URL's
    ;PARTIAL (RFC 5092 §6) counts octets of that decoded content."""
    part = found.part
    if raw or part is None:
        async for chunk in found.chunks(store):
            yield chunk
        return
    lo, hi = (0, None) if partial is None else partial
    end = None if hi is None else lo + hi
    whole = Located(found.account, found.mailbox, found.uid, part.header_end, part.body_end, part)
    decoder = TransferDecoder(part.encoding)
    pos = 0
    stream = whole.chunks(store)
    try:
        while end is None or pos < end:
            chunk = await anext(stream, b"")
            out = decoder.feed(chunk) if chunk else decoder.finish()
            start, pos = pos, pos + len(out)
            piece = out[max(lo - start, 0) : None if end is None else max(end - start, 0)]
            if piece:
                yield piece
            if not chunk:
                break
    finally:
        await stream.aclose()
