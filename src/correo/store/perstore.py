"""Process-side state kept per store object (caches, memos), dropped with the store.

Two store instances in one process (tests, ``store copy``) never share row ids or
UIDVALIDITYs, so what is remembered about one must not answer for the other.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["PerStore"]

T = TypeVar("T")


class PerStore(Generic[T]):
    """``per(store)`` is this store's ``T``, made by ``factory`` on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._kept: weakref.WeakKeyDictionary[object, T] = weakref.WeakKeyDictionary()

    def __call__(self, store: object) -> T:
        kept = self._kept.get(store)
        if kept is None:
            kept = self._kept[store] = self._factory()
        return kept

    def values(self) -> Iterator[T]:
        """Every store's ``T`` still alive (to apply a new setting to each)."""
        return iter(list(self._kept.values()))
