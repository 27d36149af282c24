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
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from correo.directory.addresses import AddressError, normalize_domain
from correo.dns.api import DnsError, Resolver
from correo.log import Logger
from correo.mtasts.fetch import FetchError, fetch_policy, tls_context
from correo.mtasts.policy import MODES, Policy, PolicyError, parse_policy, parse_record

__all__ = ["CachedPolicy", "MtaSts", "PolicyCache"]

_MAX_DOMAINS = 10_000  # cache entries kept


_REFRESH = 86_400.0  # RFC 8461 §10.2: refetch at least daily, whatever the id says
_RETRY_AFTER = 300.0  # a failed fetch for one (domain, id) is not repeated sooner
_MODE_RANK = {"none": 0, "testing": 1, "enforce": 2}  # evicted first when the cache is full


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    id: str
    policy: Policy
    expires: float  # Unix time
    fetched: float = 0.0  # Unix time of the fetch that produced or confirmed it


class PolicyCache:
    """Policies by domain in one small JSON file, replaced atomically (and fsynced) on
    each change; the write happens in a thread so a big cache never stalls the loop."""

    def __init__(self, path: Path, log: Logger | None = None) -> None:
        self.path = path
        self.log = log
        self._entries: dict[str, CachedPolicy] | None = None
        self._writing = asyncio.Lock()

    def _load(self) -> dict[str, CachedPolicy]:
        if self._entries is None:
            self._entries = {}
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
            except FileNotFoundError:
                return self._entries
            except (OSError, ValueError) as exc:
                self._warn(f"unreadable, policies will be fetched again: {exc}")
                return self._entries
            for domain, e in raw.items():
                try:
                    policy = Policy(MODES[e["mode"]], tuple(map(str, e["mx"])), int(e["max_age"]))
                    self._entries[str(domain)] = CachedPolicy(
                        str(e["id"]), policy, float(e["expires"]), float(e.get("fetched", 0.0))
                    )
                except (KeyError, TypeError, ValueError, AttributeError):
                    self._warn(f"skipped a malformed entry for {str(domain)[:80]!r}")
        return self._entries

    def _warn(self, text: str) -> None:
        if self.log is not None:
            self.log.warning("queue.mta_sts_cache", path=str(self.path), error=text)

    def get(self, domain: str, now: float) -> CachedPolicy | None:
        entry = self._load().get(domain)
        return entry if entry is not None and entry.expires > now else None

    async def put(self, domain: str, entry: CachedPolicy, now: float) -> None:
        """Keep ``entry`` (in memory at once, on disk when the write succeeds)."""
        entries = self._load()
        entries[domain] = entry
        live = {d: e for d, e in entries.items() if e.expires > now}
        if len(live) > _MAX_DOMAINS:
            # "none" and "testing" policies go first: they protect nothing
            ranked = sorted(live, key=lambda d: (_MODE_RANK[live[d].policy.mode], live[d].expires))
            live = {d: live[d] for d in ranked[-_MAX_DOMAINS:]}
        self._entries = live
        data = {
            d: {
                "id": e.id,
                "mode": e.policy.mode,
                "mx": list(e.policy.mx),
                "max_age": e.policy.max_age,
                "expires": e.expires,
                "fetched": e.fetched,
            }
            for d, e in live.items()
        }
        async with self._writing:
            try:
                await asyncio.to_thread(self._write, json.dumps(data, sort_keys=True))
            except OSError as exc:
                self._warn(f"not saved (kept in memory): {exc}")

    def _write(self, text: str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.cache = cache
        self.log = log
        self.port = port
        self.ca_file = ca_file
        self.timeout = timeout
        self.clock = clock
        self._context: ssl.SSLContext | None = None
        self._inflight: dict[str, asyncio.Future[Policy | None]] = {}
        self._failed: dict[tuple[str, str], float] = {}  # (domain, id) -> retry after

    async def policy_for(self, domain: str) -> Policy | None:
        """The policy in force for ``domain`` (``mode: none`` included), None if there is none.

        Concurrent callers for one domain share one discovery. Nothing raises: a local
        failure is logged and leaves the cached policy (or none) in force.
        """
        try:
            domain = normalize_domain(domain.rstrip("."))  # A-labels, as DNS and TLS see it
        except AddressError:
            return None
        running = self._inflight.get(domain)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Policy | None] = asyncio.get_running_loop().create_future()
        self._inflight[domain] = future
        try:
            result = await self._discover(domain)
        except asyncio.CancelledError:
            future.cancel()  # the queue is stopping: so do the callers waiting on this one
            raise
        except Exception as exc:  # a bug or a local fault must not take a queue worker down
            self.log.error("queue.mta_sts_failed", domain=domain, error=repr(exc))
            cached = self.cache.get(domain, self.clock())
            result = cached.policy if cached is not None else None
        finally:
            del self._inflight[domain]
        future.set_result(result)
        return result

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = tls_context(self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise FetchError(f"[outbound] ca_file {self.ca_file}: {exc}") from None
        return self._context

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
        if cached is not None and cached.id == ident and now - cached.fetched < _REFRESH:
            return cached.policy
        if self._failed.get((domain, ident), 0.0) > now:
            return cached.policy if cached is not None else None  # failed a moment ago
        try:
            body = await fetch_policy(
                domain, self.resolver, port=self.port, context=self._tls(), timeout=self.timeout
            )
            policy = parse_policy(body)
        except (FetchError, PolicyError) as exc:
            if len(self._failed) > 10_000:
                self._failed.clear()
            self._failed[(domain, ident)] = now + _RETRY_AFTER
            self.log.warning("queue.mta_sts_unavailable", domain=domain, id=ident, error=str(exc))
            return cached.policy if cached is not None else None  # RFC 8461 §5.1
        self._failed.pop((domain, ident), None)
        await self.cache.put(domain, CachedPolicy(ident, policy, now + policy.max_age, now), now)
        self.log.info(
            "queue.mta_sts_policy",
            domain=domain,
            id=ident,
            mode=policy.mode,
            mx=",".join(policy.mx),
            max_age=policy.max_age,
        )
        return policy
