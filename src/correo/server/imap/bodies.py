"""Small message bodies for FETCH: read many in one store call, keep recent ones.

A FETCH of bodies for many messages read one by one costs one store round trip per
message (a network round trip on PostgreSQL). :func:`prefetch` reads the inline bodies
of a group of messages at once, the group bounded in bytes so that memory stays
bounded; big bodies are left to the streaming path.

:class:`BodyCache` keeps recently read small bodies, shared by a store's sessions (like
the :class:`~correo.server.imap.fetch.WireCache`): ``(account, mailbox, UIDVALIDITY, UID)``
names a message's content for good (RFC 9051 §2.3.1.1), so nothing is ever invalidated;
the bound is in bytes, least recently used out first.

:func:`read_one` serves a FETCH of one message: a client that walks a mailbox one UID
FETCH at a time (mbsync, offlineimap) gets the next few bodies read with the one it
asks for, in one store call, instead of a round trip per command.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import OrderedDict
from collections.abc import Sequence

from correo.server.imap.view import MailboxView
from correo.store.api import MailStore
from correo.store.perstore import PerStore

__all__ = [
    "BodyCache",
    "Prefetcher",
    "body_cache",
    "configure",
    "key_of",
    "prefetch",
    "read_one",
]

#: Bodies up to this size are cached (a typical mail; the bound keeps the cache useful).
CACHED_MAX = 128 << 10
#: Bytes of bodies :func:`prefetch` asks the store for in one call.
GROUP_BYTES = 4 << 20
GROUP_MESSAGES = 250
#: The first group of a :class:`Prefetcher` is this small, so that the first bytes go
#: out after a short read; each next group is twice the last, up to :data:`GROUP_BYTES`.
FIRST_GROUP_BYTES = 256 << 10
#: Bigger bodies are never asked for in a group (no store keeps them inline).
INLINE_MAX = 256 << 10

#: A walk's read-ahead: at most this many bodies, this many bytes, beyond the one asked.
WALK_MESSAGES = 16
WALK_BYTES = 512 << 10

Key = tuple[str, str, int, int]  # account, mailbox, UIDVALIDITY, UID


class BodyCache:
    """Recently read small bodies, bounded in bytes."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._bodies: OrderedDict[Key, bytes] = OrderedDict()

    def get(self, key: Key) -> bytes | None:
        data = self._bodies.get(key)
        if data is not None:
            self._bodies.move_to_end(key)
        return data

    def put(self, key: Key, data: bytes) -> None:
        if len(data) > CACHED_MAX or len(data) > self.max_bytes or key in self._bodies:
            return
        self._bodies[key] = data
        self.size += len(data)
        self.trim()

    def trim(self) -> None:
        """Drop the least recently used bodies until the cache fits its bound."""
        while self.size > self.max_bytes:
            _, old = self._bodies.popitem(last=False)
            self.size -= len(old)


#: Bytes each store's cache may hold: ``[limits] body_cache`` (:func:`configure`).
_max_bytes = 64 << 20


def configure(max_bytes: int) -> None:
    """Bound every body cache to ``max_bytes`` (0: keep none), set from the configuration.

    On PostgreSQL a body not in the cache is a database round trip per FETCH; the bound
    is what a node spends in memory to save it.
    """
    global _max_bytes
    _max_bytes = max_bytes
    for cache in body_cache.values():
        cache.max_bytes = max_bytes
        cache.trim()


#: The cache of a store's sessions (one per store object, dropped with it).
body_cache: PerStore[BodyCache] = PerStore(lambda: BodyCache(_max_bytes))


def key_of(view: MailboxView, uid: int) -> Key:
    return (view.account, view.name, view.uidvalidity, uid)


async def read_one(store: MailStore, view: MailboxView, uid: int) -> bytes | None:
    """The whole message ``uid`` if it is small enough to be kept inline, else None.

    From the cache, else from the store. When the session asked for the previous
    message of the view just before (a client walking the mailbox UID by UID), the
    next small bodies come in the same store call, bounded by :data:`WALK_MESSAGES` and
    :data:`WALK_BYTES`, and wait in the cache for the commands that will ask for them:
    one round trip per group instead of one per command on PostgreSQL. A client that
    jumps around pays nothing extra.
    """
    cache = body_cache(store)
    key = (view.account, view.name, view.uidvalidity, uid)  # key_of(view, uid)
    uids = view.uids
    at = bisect.bisect_left(uids, uid)
    walking = view.walk_next == uid
    view.walk_next = uids[at + 1] if at + 1 < len(uids) else 0
    data = cache.get(key)
    if data is not None:
        return data
    if walking and cache.max_bytes >= WALK_BYTES:
        wanted = [uid]
        total = 0
        for nxt in uids[at + 1 : at + 1 + WALK_MESSAGES]:
            info = view.info.get(nxt)
            if info is None or info.size > CACHED_MAX or cache.get(key_of(view, nxt)):
                continue
            if total + info.size > WALK_BYTES:
                break
            wanted.append(nxt)
            total += info.size
        if len(wanted) > 1:
            read = await store.read_inlines(view.account, view.name, wanted)
            for got, body in read.items():
                cache.put(key_of(view, got), body)
            data = read.get(uid)
            if data is not None:
                return data
    data = await store.read_inline(view.account, view.name, uid)
    if data is not None:
        cache.put(key, data)
    return data


async def prefetch(
    store: MailStore, view: MailboxView, uids: Sequence[int], budget: int = GROUP_BYTES
) -> tuple[dict[int, bytes], int]:
    """The small bodies among the first messages of ``uids``, and how many of ``uids``
    that covers: cached ones, the rest (at most ``budget`` bytes by the sizes the view
    knows) in one store call. Bodies the store streams (big) are not in the answer."""
    cache = body_cache(store)
    found: dict[int, bytes] = {}
    wanted: list[int] = []
    total = 0
    covered = 0
    for uid in uids:
        info = view.info.get(uid)
        if info is not None:
            data = cache.get(key_of(view, uid))
            if data is not None:
                found[uid] = data
            elif info.size <= INLINE_MAX:
                if wanted and (total + info.size > budget or len(wanted) >= GROUP_MESSAGES):
                    break
                wanted.append(uid)
                total += info.size
        covered += 1
    if wanted:
        read = await store.read_inlines(view.account, view.name, wanted)
        for uid, data in read.items():
            cache.put(key_of(view, uid), data)
        found.update(read)
    return found, covered


class Prefetcher:
    """:func:`prefetch` over a list of UIDs, the next group read while this one is sent:
    the store's read (a worker thread, or the database) overlaps the encryption and
    writing on the event loop. At most two groups are held.

    The groups grow from :data:`FIRST_GROUP_BYTES` to :data:`GROUP_BYTES`: the client
    gets its first bytes after a short read instead of a 4 MiB one, and once writing
    is under way the bigger reads cost fewer store calls."""

    def __init__(self, store: MailStore, view: MailboxView, uids: Sequence[int]) -> None:
        self.store, self.view, self.uids = store, view, uids
        self._ahead: asyncio.Future[tuple[dict[int, bytes], int]] | None = None
        self._at = -1
        self._budget = FIRST_GROUP_BYTES

    async def group(self, i: int) -> tuple[dict[int, bytes], int]:
        """The bodies of the first group of ``uids[i:]``, and how many UIDs it covers."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and self._at == i:
            found, n = await ahead
        else:
            if ahead is not None:
                ahead.cancel()
            found, n = await prefetch(self.store, self.view, self.uids[i:], self._next_budget())
        following = i + max(n, 1)
        if following < len(self.uids):
            self._at = following
            self._ahead = asyncio.ensure_future(
                prefetch(self.store, self.view, self.uids[following:], self._next_budget())
            )
            self._ahead.add_done_callback(_retrieved)
        return found, n

    def _next_budget(self) -> int:
        budget = self._budget
        self._budget = min(budget * 2, GROUP_BYTES)
        return budget


def _retrieved(future: asyncio.Future[tuple[dict[int, bytes], int]]) -> None:
    """A read ahead that is never used (the FETCH ended early) leaves no warning behind;
    the failure of one that is used is raised where it is awaited."""
    if not future.cancelled():
        future.exception()
