"""A small, bounded cache whose entries expire: for per-account facts asked on every
delivery (folder names, the active Sieve script, whether the junk classifier is trained)
that may change in another process and need only be a few seconds fresh."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["MISSING", "Missing", "TtlCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Missing:
    """Marks a miss, since ``None`` can be a cached value."""


MISSING = Missing()


class TtlCache(Generic[K, V]):
    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | Missing:
        hit = self._entries.get(key)
        if hit is None or self._clock() - hit[0] >= self.ttl:
            return MISSING
        return hit[1]

    def put(self, key: K, value: V) -> V:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # bounded: a cache, not a directory
        self._entries[key] = (self._clock(), value)
        return value

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
