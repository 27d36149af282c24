"""The small expiring cache behind per-account delivery facts."""

from __future__ import annotations

from correo.ttlcache import MISSING, TtlCache


def test_entries_expire_are_forgotten_and_stay_bounded() -> None:
    now = [0.0]
    cache: TtlCache[str, object] = TtlCache(1.0, max_entries=2, clock=lambda: now[0])
    assert cache.get("a") is MISSING
    assert cache.put("a", None) is None
    assert cache.get("a") is None  # None is a value, not a miss
    now[0] = 0.99
    assert cache.get("a") is None
    now[0] = 1.0
    assert cache.get("a") is MISSING  # expired
    cache.put("a", 1)
    cache.forget("a")
    assert cache.get("a") is MISSING
    cache.put("b", 2)
    cache.put("c", 3)
    cache.put("d", 4)  # full: cleared, then d
    assert cache.get("b") is MISSING and cache.get("d") == 4
