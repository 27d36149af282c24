"""The text of the Emails a full-text filter may match, found through the store's index.

``text``/``body`` conditions (RFC 8621 §4.4.1) first ask the store's text index
(:meth:`MailStore.text_candidates`, the one IMAP SEARCH TEXT uses) which messages may
hold each term; only those are read and parsed (in a worker thread) to decide.  Messages
the index has not seen yet are candidates too.  At most
``MAX_READ`` messages are read for one request: a broader search is refused with
``unsupportedFilter`` rather than holding the server.
"""

from __future__ import annotations

import asyncio

from correo.delivery.textindex import index_needles
from correo.jmap.core import MethodError
from correo.jmap.search import Searchable, searchable
from correo.store.api import StoreError
from correo.web.jmap_mail import EmailRow, MailView

__all__ = ["MAX_READ", "texts_for"]

MAX_READ = 2000  # messages one search may read and parse
_READ_LIMIT = 2 << 20  # octets of one message read for matching
_BATCH = 50  # messages parsed per worker-thread hop


async def _read_all(view: MailView, emails: list[EmailRow]) -> dict[str, Searchable]:
    out: dict[str, Searchable] = {}
    for start in range(0, len(emails), _BATCH):
        batch = emails[start : start + _BATCH]
        raws: list[tuple[str, bytes]] = []
        for email in batch:
            try:
                raws.append((email.digest, await view.raw(email.first, _READ_LIMIT)))
            except StoreError:
                continue  # expunged meanwhile

        def parse(items: list[tuple[str, bytes]] = raws) -> list[tuple[str, Searchable]]:
            return [(digest, searchable(raw)) for digest, raw in items]

        out.update(await asyncio.to_thread(parse))
    return out


async def texts_for(
    view: MailView, terms: list[str], emails: list[EmailRow] | None = None
) -> dict[str, Searchable]:
    """Searchable text of every Email that may contain one of ``terms`` (by digest);
    of ``emails`` alone when given (SearchSnippet/get)."""
    if emails is not None:
        if len(emails) > MAX_READ:
            raise MethodError("requestTooLarge", "too many Emails")
        return await _read_all(view, emails)
    everything = await view.emails()
    by_uid: dict[tuple[int, int], str] = {}
    for email in everything.values():
        for row in email.rows:
            by_uid[(row.box.status.uidvalidity, row.info.uid)] = email.digest
    maybe: set[str] = set()
    store, account = view.store, view.account
    for term in terms:
        needles = index_needles([term])
        for box in await view.boxes():
            try:
                uids, _ = await store.text_candidates(account, box.name, needles)
            except StoreError:
                continue
            uv = box.status.uidvalidity
            maybe.update(d for d in (by_uid.get((uv, u)) for u in uids) if d is not None)
            if len(maybe) > MAX_READ:
                raise MethodError("unsupportedFilter", "the words are in too many messages")
    return await _read_all(view, [everything[d] for d in sorted(maybe) if d in everything])
