"""MTA-STS discovery for the queue (RFC 8461 §3, §5.1): DNS, the HTTPS fetch, the cache file.

The ``_mta-sts`` TXT record says whether the domain has a policy and which version
(``id``); the policy itself is fetched over HTTPS only when the id is new or the
cached copy expired, and kept on disk so that a restart, a vanished TXT record or an
unreachable policy host (all of which an attacker can cause) do not switch it off
before its ``max_age`` runs out.  What to believe is decided by the pure rules of
:mod:`correo.mtasts`; this module does the effects.

The policy host's name is resolved through correo's own resolver (the one the queue
uses for MX records), and its certificate must be valid for ``mta-sts.<domain>``.
Redirects are not followed (§3.3) and only a ``200`` with ``text/plain`` counts.
HTTP itself is aiohttp's client (:mod:`correo.httpclient`).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from correo.directory.addresses import AddressError, normalize_domain
from correo.dns.api import DnsError, Resolver
from correo.httpclient import StoreResolver, read_capped
from correo.log import Logger
from correo.mtasts.cache import (
    CachedPolicy,
    Fetch,
    decode_cache,
    encode_cache,
    prune,
    without_fetch,
)
from correo.mtasts.policy import Policy, PolicyError, parse_policy, parse_record

__all__ = ["FetchError", "MtaSts", "PolicyCache", "fetch_policy", "tls_context"]

_RETRY_AFTER = 300.0  # a failed fetch for one (domain, id) is not repeated sooner

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_BODY = 64 * 1024  # RFC 8461 §3.3: senders may limit a policy's size (64 KB suggested)
_MAX_HEAD = 16 * 1024


class FetchError(Exception):
    """The policy could not be fetched: the domain is treated as having none (or the
    cached policy is kept, RFC 8461 §5.1).  ``webpki``: the policy host's certificate
    failed validation (RFC 8460 §4.3.2.2 ``sts-webpki-invalid``)."""

    def __init__(self, text: str, *, webpki: bool = False) -> None:
        super().__init__(text)
        self.webpki = webpki


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The system's trust store (plus ``ca_file``), TLS 1.2 or later, names checked."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.hostname_checks_common_name = False  # RFC 8461 §3.3, RFC 6125: a DNS-ID in the SAN
    return ctx


async def fetch_policy(
    domain: str,
    resolver: Resolver,
    *,
    port: int = 443,
    context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> bytes:
    """The body of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; FetchError if not.

    ``domain`` is in A-labels. ``timeout`` bounds the whole fetch, every address tried
    included, so a policy host that drops packets costs one timeout, not one per address.
    """
    host = f"mta-sts.{domain}"
    if not host.isascii():
        raise FetchError(f"{host!r} is not an A-label name")
    ctx = context if context is not None else tls_context()
    if not ctx.check_hostname or ctx.verify_mode != ssl.CERT_REQUIRED:
        raise FetchError("the policy host's certificate must be verified")  # RFC 8461 §3.3
    connector = aiohttp.TCPConnector(
        ssl=ctx, resolver=StoreResolver(resolver), use_dns_cache=False, force_close=True
    )
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=timeout),
                max_line_size=_MAX_HEAD,
                max_field_size=_MAX_HEAD,
            ) as session,
            session.get(
                f"https://{host}:{port}{POLICY_PATH}",
                allow_redirects=False,  # RFC 8461 §3.3: a 3xx is not followed
                headers={"Accept": "text/plain", "User-Agent": "correo"},
            ) as response,
        ):
            if response.status != 200:
                raise FetchError(f"{host}: HTTP status {response.status}")
            if response.content_type != "text/plain":  # RFC 8461 §3.2
                raise FetchError(f"{host}: policy served as {response.content_type or 'nothing'}")
            return await read_capped(response, MAX_BODY)
    except TimeoutError:
        raise FetchError(f"{host}: no answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        webpki = isinstance(
            exc, (aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError)
        )
        raise FetchError(f"{host}: {exc or type(exc).__name__}", webpki=webpki) from None


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
            except FileNotFoundError:
                return self._entries
            except (OSError, ValueError) as exc:
                self._warn(f"unreadable, policies will be fetched again: {exc}")
                return self._entries
            self._entries, problems = decode_cache(raw)
            for problem in problems:
                self._warn(problem)
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
        live = prune(entries, now)
        self._entries = live
        data = encode_cache(live)
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
        #: Told (domain, RFC 8460 §4.3.2.2 result type, why) of each failed policy fetch:
        #: the TLS reports count them.
        self.on_failure: Callable[[str, str, str], None] | None = None

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
        failed_until = self._failed.get((domain, ident), 0.0) if ident is not None else 0.0
        decided = without_fetch(cached, ident, now, failed_until)
        if not isinstance(decided, Fetch):
            return decided
        assert ident is not None  # a fetch is only ever due for a record's id
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
            if self.on_failure is not None:
                kind = (
                    "sts-policy-invalid"
                    if isinstance(exc, PolicyError)
                    else ("sts-webpki-invalid" if exc.webpki else "sts-policy-fetch-error")
                )
                self.on_failure(domain, kind, str(exc))
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
