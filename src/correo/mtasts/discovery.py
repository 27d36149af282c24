"""Which MTA-STS policy applies to a destination domain now (RFC 8461 §3, §5.1).

The ``_mta-sts`` TXT record says whether the domain has a policy and which version
(``id``); the policy itself is fetched over HTTPS only when the id is new or the
cached copy expired, and kept on disk so that a restart, a vanished TXT record or an
unreachable policy host (all of which an attacker can cause) do not switch it off
before its ``max_age`` runs out.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from correo.dns.api import DnsError, Resolver
from correo.log import Logger
from correo.mtasts.fetch import FetchError, fetch_policy
from correo.mtasts.policy import MODES, Policy, PolicyError, parse_policy, parse_record

__all__ = ["CachedPolicy", "MtaSts", "PolicyCache"]

_MAX_DOMAINS = 10_000  # cache entries kept; the soonest to expire go first


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    id: str
    policy: Policy
    expires: float  # Unix time


class PolicyCache:
    """Policies by domain in one small JSON file, replaced atomically on each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, CachedPolicy] | None = None

    def _load(self) -> dict[str, CachedPolicy]:
        if self._entries is None:
            self._entries = {}
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                for domain, e in raw.items():
                    policy = Policy(MODES[e["mode"]], tuple(e["mx"]), int(e["max_age"]))
                    self._entries[domain] = CachedPolicy(str(e["id"]), policy, float(e["expires"]))
            except FileNotFoundError:
                pass
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self._entries = {}  # unreadable: policies are fetched again
        return self._entries

    def get(self, domain: str, now: float) -> CachedPolicy | None:
        entry = self._load().get(domain)
        return entry if entry is not None and entry.expires > now else None

    def put(self, domain: str, entry: CachedPolicy, now: float) -> None:
        entries = self._load()
        entries[domain] = entry
        live = {d: e for d, e in entries.items() if e.expires > now}
        if len(live) > _MAX_DOMAINS:
            keep = sorted(live, key=lambda d: live[d].expires)[-_MAX_DOMAINS:]
            live = {d: live[d] for d in keep}
        self._entries = live
        data = {
            d: {
                "id": e.id,
                "mode": e.policy.mode,
                "mx": list(e.policy.mx),
                "max_age": e.policy.max_age,
                "expires": e.expires,
            }
            for d, e in live.items()
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)


class MtaSts:
    """The policy for a domain, or None: what the queue asks before each route."""

    def __init__(
        self,
        resolver: Resolver,
        cache: PolicyCache,
        log: Logger,
        *,
        port: int = 443,
        ca_file: str = "",
        timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.cache = cache
        self.log = log
        self.port = port
        self.ca_file = ca_file
        self.timeout = timeout
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    async def policy_for(self, domain: str) -> Policy | None:
        """The policy in force for ``domain`` (``mode: none`` included), None if there is none."""
        domain = domain.lower().rstrip(".")
        lock = self._locks.setdefault(domain, asyncio.Lock())
        try:
            async with lock:  # one discovery per domain at a time, however many workers ask
                return await self._discover(domain)
        finally:
            if not lock.locked() and self._locks.get(domain) is lock:
                del self._locks[domain]

    async def _discover(self, domain: str) -> Policy | None:
        now = self.clock()
        cached = self.cache.get(domain, now)
        try:
            ident = parse_record(await self.resolver.txt(f"_mta-sts.{domain}"))
        except DnsError:  # none, or not now: either way the cache decides
            ident = None
        if ident is None:
            # RFC 8461 §5.1: an unexpired cached policy stays in force even when the
            # record is gone (removing MTA-STS is done by publishing mode "none").
            return cached.policy if cached is not None else None
        if cached is not None and cached.id == ident:
            return cached.policy
        try:
            body = await fetch_policy(
                domain, self.resolver, port=self.port, ca_file=self.ca_file, timeout=self.timeout
            )
            policy = parse_policy(body)
        except (FetchError, PolicyError) as exc:
            self.log.warning("queue.mta_sts_unavailable", domain=domain, id=ident, error=str(exc))
            return cached.policy if cached is not None else None  # RFC 8461 §5.1
        self.cache.put(domain, CachedPolicy(ident, policy, now + policy.max_age), now)
        self.log.info(
            "queue.mta_sts_policy",
            domain=domain,
            id=ident,
            mode=policy.mode,
            mx=",".join(policy.mx),
            max_age=policy.max_age,
        )
        return policy
