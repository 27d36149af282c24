"""CATENATE (RFC 4469): APPEND a message assembled from TEXT literals and URL parts.

The parts go into the message's spool as they come, exactly like a plain APPEND's
literal: TEXT octets as the core hands them over, a URL's part read from the store
in pieces.  Nothing holds the assembled message in memory; its size is checked
against APPENDLIMIT part by part (``NO [TOOBIG]``).  A URL reaches what FETCH could
(the user's own mailboxes) or what a URLAUTH token grants; anything else is
``NO [BADURL url]`` and nothing of the command is stored (RFC 3502 §6).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from correo.imap.events import CatenateText, CatenateUrl
from correo.imap.urls import UrlError, parse_url
from correo.server.imap.appends import drop_appends
from correo.server.imap.urlparts import locate, url_allowed
from correo.store.api import StoreError

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["catenate_text", "catenate_url"]

# RFC 4469 §6: url-resp-text is text without "]"; anything else is left out of the code
_CODE_SAFE = re.compile(r"[!-\\^-~]{1,1024}")


def _limit(session: ImapSession) -> int:
    return session.core.limits.max_append


async def catenate_text(session: ImapSession, event: CatenateText) -> None:
    """Let a TEXT part in if the message stays within APPENDLIMIT (RFC 4469 §5 TOOBIG)."""
    appends = session.appends
    if appends and appends[-1].spool.size + event.size > _limit(session):
        drop_appends(session)
        session.write(session.core.append_reject("NO", "Message grows too big", "TOOBIG"))
        return
    session.write(session.core.append_accept())
    await session.conn.flush(session.write_timeout)


async def catenate_url(session: ImapSession, event: CatenateUrl) -> None:
    """Copy what the URL names into the message, or refuse the whole APPEND."""
    user = session.user
    assert user is not None
    text = event.url.decode("utf-8", "replace")
    append = session.appends[-1] if session.appends else None
    located = None
    try:
        url = parse_url(text, relative=True)
    except UrlError:
        pass
    else:
        store = session.ctx.store
        owner = await url_allowed(store, url, user, now=dt.datetime.now(dt.UTC))
        if owner is not None:
            located = await locate(store, url, owner)
    if append is None or located is None:
        _refuse(session, "CATENATE failed: invalid URL", text)
        return
    if append.spool.size + located.size > _limit(session):
        drop_appends(session)
        session.write(session.core.append_abort("NO", "Message grows too big", "TOOBIG"))
        return
    try:
        async for chunk in located.chunks(session.ctx.store):
            if append.failed is None:
                try:
                    append.spool.write(chunk)
                except OSError as exc:  # answered at the end, as a plain APPEND does
                    append.failed = exc
                    continue
                append.facts.feed(chunk)
                append.nul = append.nul or b"\x00" in chunk
    except StoreError:  # expunged while it was read
        _refuse(session, "CATENATE failed: the message went away", text)


def _refuse(session: ImapSession, why: str, url: str) -> None:
    drop_appends(session)
    code = f"BADURL {url}" if _CODE_SAFE.fullmatch(url) else "BADURL"
    session.write(session.core.append_abort("NO", why, code))
