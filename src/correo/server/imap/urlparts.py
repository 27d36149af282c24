"""What an IMAP URL names, read with the access rules of FETCH (RFC 5092, RFC 4467 §6).

CATENATE (RFC 4469 §3) and URLFETCH (RFC 4467 §7) both turn a URL into a message part
of the store.  A URL without URLAUTH reaches only the session's own mailboxes, exactly
what FETCH could read after SELECT; a URLAUTH URL is checked against the mailbox access
key of its owner and its access identifier.  Failures are one answer, None: a caller
tells a client only that the URL is not valid (BADURL, NIL), never why, so a URL does
not reveal whether another account's mailbox or message exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from correo.delivery.facts import facts_from_bytes, tree_of
from correo.imap.urls import ImapUrl
from correo.message.imapfmt import header_fields, resolve_part, section
from correo.message.structure import Part
from correo.store.api import MailStore, StoreError

__all__ = ["Located", "locate", "sign", "url_allowed"]

#: The URLAUTH mechanism this server implements (RFC 4467 §2.4.1).
INTERNAL = "INTERNAL"
_MIN_TOKEN = 32  # RFC 4467 §9: enc-urlauth = 32*HEXDIG


def sign(key: bytes, rump: str) -> str:
    """The INTERNAL token of a rump URL: HMAC-SHA-256 with the mailbox access key."""
    return hmac.new(key, rump.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Located:
    """A readable part: bytes ``start``..``end`` of a stored message (after HEADER.FIELDS
    filtering, ``data`` holds them), and the MIME part a section number names."""

    account: str
    mailbox: str
    uid: int
    start: int
    end: int
    part: Part | None  # the addressed body part (None for HEADER, TEXT, MIME sections)
    data: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.end - self.start

    async def chunks(self, store: MailStore) -> AsyncGenerator[bytes, None]:
        """The bytes, read from the store piece by piece (never the whole message)."""
        if self.data is not None:
            if self.data:
                yield self.data
            return
        if self.end <= self.start:
            return
        stream = store.read_message(
            self.account, self.mailbox, self.uid, 65536, self.start, self.end
        )
        try:
            async for chunk in stream:
                yield chunk
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()


async def url_allowed(store: MailStore, url: ImapUrl, user: str, *, now: dt.datetime) -> str | None:
    """The account whose mailbox ``url`` may be read from by ``user``, or None.

    Without URLAUTH only ``user``'s own mailboxes and those shared with ``r`` (RFC 4469
    §3: the same access as FETCH); with it, the token must match the owner's key
    (RFC 4467 §6) and the access identifier must admit ``user`` (§3).
    """
    owner = url.owner() or user
    if url.access is None:
        if owner == user:
            return user
        # another account's mailbox: what FETCH could read there, so "r" (RFC 4314)
        return owner if "r" in await store.acl_rights(owner, url.mailbox, user) else None
    if url.mechanism != INTERNAL or url.token is None or len(url.token) < _MIN_TOKEN:
        return None
    if url.expire is not None and url.expire <= now:
        return None  # RFC 4467 §3: expired
    access = url.access.lower()
    if access.startswith(("user+", "submit+")):
        # user+: sessions of that userid; submit+: its submission, which acts as it
        if url.access_user() != user:
            return None
    elif access not in ("authuser", "anonymous"):
        return None
    try:
        key = await store.urlauth_key(owner, url.mailbox)
    except StoreError:
        return None
    if not key or not hmac.compare_digest(sign(key, url.rump), url.token):
        return None  # RFC 4467 §6: no key (RESETKEY) or a token it did not make
    return owner


async def locate(store: MailStore, url: ImapUrl, account: str) -> Located | None:
    """The part ``url`` names in ``account``'s mailbox, or None if there is none."""
    try:
        state = await store.mailbox_state(account, url.mailbox)
    except StoreError:
        return None
    if url.uidvalidity is not None and url.uidvalidity != state.uidvalidity:
        return None  # RFC 5092 §6: the UID names another message now
    try:
        facts = (await store.fetch_facts(account, url.mailbox, [url.uid])).get(url.uid)
        if facts is None:  # stored without facts (or not there at all)
            chunks = store.read_message(account, url.mailbox, url.uid)
            facts = facts_from_bytes(b"".join([c async for c in chunks]))
            await store.save_facts(account, url.mailbox, url.uid, facts)
    except StoreError:
        return None
    tree = await tree_of(facts)
    spec = url.section or ""
    rng = section(tree, spec)
    if rng is None:
        return None
    start, end = rng
    head, _, fields = spec.partition("(")
    items = head.strip().split(".") if head.strip() else []
    numbers: list[int] = []
    while items and items[0].isdigit():
        numbers.append(int(items.pop(0)))
    text = ".".join(items).upper()
    part: Part | None = None
    if not text:  # a body part (or the whole message), not HEADER/TEXT/MIME
        found = resolve_part(tree, numbers) if numbers else (tree, True)
        part = found[0] if found is not None else None
    data: bytes | None = None
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        names = fields.rstrip(") ").split()
        if not names:
            return None
        try:
            chunks = store.read_message(account, url.mailbox, url.uid, 65536, start, end)
            raw = b"".join([c async for c in chunks])
        except StoreError:
            return None
        data = header_fields(raw, names, text.endswith(".NOT"))
    if url.partial is not None:  # RFC 5092 §6: ;PARTIAL=offset[.length]
        offset, length = url.partial
        if data is not None:
            data = data[offset : None if length is None else offset + length]
        else:
            start = min(start + offset, end)
            end = end if length is None else min(end, start + length)
    return Located(account, url.mailbox, url.uid, start, end, part, data)
