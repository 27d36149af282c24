"""What MTA-STS discovery keeps and when it fetches again (RFC 8461 §5.1, §10.2), pure.

The queue's service (:mod:`correo.queue.mtasts`) asks DNS, fetches over HTTPS and
writes the cache file; the rules for what is cached, evicted and believed are here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from correo.mtasts.policy import MODES, Policy

__all__ = [
    "FETCH",
    "MAX_DOMAINS",
    "REFRESH",
    "CachedPolicy",
    "Fetch",
    "decode_cache",
    "encode_cache",
    "prune",
    "without_fetch",
]

MAX_DOMAINS = 10_000  # cache entries kept
REFRESH = 86_400.0  # RFC 8461 §10.2: refetch at least daily, whatever the id says
_MODE_RANK = {"none": 0, "testing": 1, "enforce": 2}  # evicted first when the cache is full


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    id: str
    policy: Policy
    expires: float  # Unix time
    fetched: float = 0.0  # Unix time of the fetch that produced or confirmed it


class Fetch:
    """Marks "fetch the policy": the cache cannot answer."""


FETCH = Fetch()


def without_fetch(
    cached: CachedPolicy | None, ident: str | None, now: float, failed_until: float
) -> Policy | Fetch | None:
    """The policy in force without a fetch, or FETCH when one is due.

    ``ident`` is the ``_mta-sts`` record's id (None: no record, or DNS failed);
    ``failed_until`` is when a fetch of that id that failed may be tried again.
    """
    keep = cached.policy if cached is not None else None
    if ident is None:
        # RFC 8461 §5.1: an unexpired cached policy stays in force even when the
        # record is gone (removing MTA-STS is done by publishing mode "none").
        return keep
    if cached is not None and cached.id == ident and now - cached.fetched < REFRESH:
        return keep
    if failed_until > now:
        return keep  # failed a moment ago
    return FETCH


def prune(
    entries: Mapping[str, CachedPolicy], now: float, cap: int = MAX_DOMAINS
) -> dict[str, CachedPolicy]:
    """The unexpired entries, at most ``cap``: "none" and "testing" go first (they
    protect nothing), then those expiring soonest."""
    live = {d: e for d, e in entries.items() if e.expires > now}
    if len(live) > cap:
        ranked = sorted(live, key=lambda d: (_MODE_RANK[live[d].policy.mode], live[d].expires))
        live = {d: live[d] for d in ranked[-cap:]}
    return live


def encode_cache(entries: Mapping[str, CachedPolicy]) -> dict[str, dict[str, Any]]:
    """The cache as a JSON object."""
    return {
        d: {
            "id": e.id,
            "mode": e.policy.mode,
            "mx": list(e.policy.mx),
            "max_age": e.policy.max_age,
            "expires": e.expires,
            "fetched": e.fetched,
        }
        for d, e in entries.items()
    }


def decode_cache(raw: object) -> tuple[dict[str, CachedPolicy], list[str]]:
    """The entries of a parsed cache file and what was wrong with it (skipped)."""
    if not isinstance(raw, dict):
        return {}, ["unreadable, policies will be fetched again: not a JSON object"]
    entries: dict[str, CachedPolicy] = {}
    problems: list[str] = []
    for domain, e in raw.items():
        try:
            policy = Policy(MODES[e["mode"]], tuple(map(str, e["mx"])), int(e["max_age"]))
            entries[str(domain)] = CachedPolicy(
                str(e["id"]), policy, float(e["expires"]), float(e.get("fetched", 0.0))
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            problems.append(f"skipped a malformed entry for {str(domain)[:80]!r}")
    return entries, problems
