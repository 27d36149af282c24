"""Authentication-failure throttling, pure: the clock is injected.

Counts failed logins per client network and per account. A few failures are
free (typos); then each one doubles the delay before the next attempt is
answered, up to a cap; at ``lockout_failures`` the key is locked for
``lockout_seconds``, refused even with the right password. Both keys are
checked: one IP guessing many accounts and many IPs guessing one account are
both slowed. IPv6 clients are counted per /64 (``ipv6_prefix``), since one host
usually owns a whole /64 (RFC 4291 §2.5.4) and could otherwise rotate addresses
freely. The account key is the canonical account (the directory's spelling), so
a domain typed in fullwidth letters or with an ideographic full stop (U+3002)
shares the counter of its ASCII spelling.

An attempt is counted when it *begins*, before the slow password hash: a burst of
simultaneous attempts can run at most ``lockout_failures`` verifications per key,
since every verification in flight already counts toward the lock.

Entries idle for ``lockout_seconds`` are forgotten, and at most
``max_tracked`` are kept (oldest evicted), so memory stays bounded under a
spray from many addresses.

The rules are here; the counters live behind a seam: in this process's memory
(one node), or in the database every node shares (``[store] url``), so a guesser
spreading attempts over the nodes of a cluster gets one budget, not one per node.

Usage by a session::

    verdict = throttle.begin(ip, account)    # reserves the attempt
    if verdict.locked: refuse                # nothing reserved
    ok = verify(...)
    throttle.success(ip, account) if ok else throttle.failure(ip, account)
    if not ok: sleep(verdict.delay)

:class:`PeerLimit` counts open connections per client network with the same
grouping, for ``[limits] connections_per_ip``.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from correo.directory.api import DirectoryError, LoginCounter, LoginCounters

__all__ = ["SHARED_RETRY", "AuthThrottle", "PeerLimit", "ThrottlePolicy", "Verdict", "ip_key"]

_MAX_KEY = 320  # longer "accounts" are truncated: a key, not a store for peer data


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Limits; the defaults allow typos and make online guessing hopeless."""

    free_failures: int = 3
    base_delay: float = 1.0
    max_delay: float = 15.0
    lockout_failures: int = 10
    lockout_seconds: float = 300.0
    max_tracked: int = 100_000
    ipv6_prefix: int = 64  # IPv6 clients are counted per network of this length

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.lockout_failures < 1 or self.max_tracked < 1:
            raise ValueError("throttle counts must be positive")
        if not 1 <= self.ipv6_prefix <= 128:
            raise ValueError("throttle ipv6_prefix must be 1 to 128")
        if self.base_delay < 0 or self.max_delay < 0 or self.lockout_seconds <= 0:
            raise ValueError("throttle durations must not be negative")


@dataclass(frozen=True, slots=True)
class Verdict:
    """``delay``: seconds to wait before answering (also when locked, so a
    locked key is no fast oracle); ``retry_after``: seconds until unlocked."""

    locked: bool
    delay: float
    retry_after: float = 0.0


_OPEN = Verdict(False, 0.0)
#: Seconds this node counts alone after the shared counters failed to answer.
SHARED_RETRY = 5.0

T = TypeVar("T")
Counters = dict[str, LoginCounter]


def ip_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The counter key for a client address: IPv4 as is, IPv6 per network of
    ``ipv6_prefix`` bits (/64: one host usually owns a whole /64, RFC 4291 §2.5.4)."""
    text = ip.strip("[]").split("%", 1)[0]  # brackets and zone ids vary per connection
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return "ip:" + ip[:_MAX_KEY]  # e.g. a Unix socket path: counted as given
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return f"ip:{addr.ipv4_mapped}"
        bits = 128 - ipv6_prefix
        network = ipaddress.IPv6Address(int(addr) >> bits << bits)
        return f"ip:{network}/{ipv6_prefix}"
    return f"ip:{addr}"


def _account_key(account: str) -> str:
    return "acct:" + account[:_MAX_KEY].lower()


class _MemoryCounters:
    """This process's counters, ordered by last activity: the front is the oldest, for
    decay and eviction; at most ``max_tracked`` are kept."""

    def __init__(self, max_tracked: int) -> None:
        self._max = max_tracked
        self._entries: OrderedDict[str, LoginCounter] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def update(
        self, keys: tuple[str, ...], now: float, idle: float, step: Callable[[Counters], T]
    ) -> T:
        entries = self._entries
        # An entry's lock ends no later than last + lockout_seconds, so idle = gone.
        while entries:
            first = next(iter(entries.values()))
            if now - first.last < idle:
                break
            entries.popitem(last=False)
        view = {key: entries[key] for key in keys if key in entries}
        result = step(view)
        for key in keys:
            entry = view.get(key)
            if entry is None:
                entries.pop(key, None)
            elif entries.get(key) is not entry or entry.last == now:
                entries[key] = entry
                entries.move_to_end(key)  # active now: the back
        while len(entries) > self._max:
            entries.popitem(last=False)  # evict the oldest
        return result


class AuthThrottle:
    """Per-IP and per-account failure counters with delays and lockout.

    ``counters``: where the counters live when several nodes must share them (the
    directory's :meth:`~correo.directory.api.Directory.login_counters`); its calls block
    on I/O (:attr:`blocking`: call this throttle from a worker thread), and ``clock``
    must then be wall-clock time, the same on every node.  When the shared counters
    cannot be reached, this process's own count answers meanwhile.
    """

    def __init__(
        self,
        policy: ThrottlePolicy = ThrottlePolicy(),  # frozen, safe to share
        clock: Callable[[], float] = time.monotonic,
        counters: LoginCounters | None = None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._memory = _MemoryCounters(policy.max_tracked)
        self._shared = counters
        self._shared_away_until = 0.0  # monotonic time before which not to try them again

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def blocking(self) -> bool:
        """True when the counters are shared: each call waits on the database."""
        return self._shared is not None

    def _update(self, keys: tuple[str, ...], now: float, step: Callable[[Counters], T]) -> T:
        idle = self._policy.lockout_seconds
        if self._shared is not None and time.monotonic() >= self._shared_away_until:
            try:
                return self._shared.update(keys, now, idle, step)
            except DirectoryError:
                # The shared counters are away: count here, and do not make every login
                # wait for the database's timeout again before SHARED_RETRY has passed.
                self._shared_away_until = time.monotonic() + SHARED_RETRY
        return self._memory.update(keys, now, idle, step)

    def _keys(self, ip: str, account: str | None) -> tuple[str, ...]:
        network = ip_key(ip, self._policy.ipv6_prefix)
        if account is None:
            return (network,)
        return (network, _account_key(account))

    def _delay(self, failures: int) -> float:
        p = self._policy
        extra = failures - p.free_failures
        if extra <= 0:
            return 0.0
        return float(min(p.max_delay, p.base_delay * 2.0 ** min(extra - 1, 64)))

    def _verdict(self, now: float, keys: tuple[str, ...], entries: Counters) -> Verdict:
        p = self._policy
        verdict = _OPEN
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                continue
            if now < entry.locked_until:
                return Verdict(True, p.max_delay, entry.locked_until - now)
            # Attempts in flight count as failures until they end: no more may run than
            # would reach the lock; after a lock has run out, one at a time (a failure
            # locks again).
            if entry.pending >= max(1, p.lockout_failures - entry.failures):
                return Verdict(True, p.max_delay, p.lockout_seconds)
            delay = self._delay(entry.failures + entry.pending)
            if delay > verdict.delay:
                verdict = Verdict(False, delay)
        return verdict

    def check(self, ip: str, account: str | None) -> Verdict:
        """What :meth:`begin` would answer now, without reserving anything."""
        now = self._clock()
        keys = self._keys(ip, account)
        return self._update(keys, now, lambda entries: self._verdict(now, keys, entries))

    def begin(self, ip: str, account: str | None) -> Verdict:
        """Start an attempt for ``account`` from ``ip``: unless the verdict is locked,
        the attempt counts toward the lock until :meth:`failure` or :meth:`success`
        ends it. ``delay`` is what to wait before answering a failure."""
        now = self._clock()
        keys = self._keys(ip, account)

        def step(entries: Counters) -> Verdict:
            verdict = self._verdict(now, keys, entries)
            if verdict.locked:
                return verdict
            for key in keys:
                entry = entries.setdefault(key, LoginCounter())
                entry.pending += 1
                entry.last = now
            return verdict

        return self._update(keys, now, step)

    def failure(self, ip: str, account: str | None) -> None:
        """Record a failed authentication (``account`` None if none was named); ends
        the attempt :meth:`begin` started, if any."""
        now = self._clock()
        p = self._policy

        def step(entries: Counters) -> None:
            for key in keys:
                entry = entries.get(key)
                if entry is None:
                    entry = entries[key] = LoginCounter()
                else:
                    entry.pending = max(0, entry.pending - 1)
                entry.failures += 1
                entry.last = now
                if entry.failures >= p.lockout_failures and now >= entry.locked_until:
                    entry.locked_until = now + p.lockout_seconds

        keys = self._keys(ip, account)
        self._update(keys, now, step)

    def success(self, ip: str, account: str | None) -> None:
        """Forget the failures of this account and this IP (a lock still runs out);
        ends the attempt :meth:`begin` started, if any."""
        now = self._clock()

        def step(entries: Counters) -> None:
            for key in keys:
                entry = entries.get(key)
                if entry is None:
                    continue
                entry.pending = max(0, entry.pending - 1)
                if now >= entry.locked_until:
                    entry.failures = 0
                    if not entry.pending:
                        del entries[key]

        keys = self._keys(ip, account)
        self._update(keys, now, step)


class PeerLimit:
    """Open connections per client network: IPv4 per address, IPv6 per ``ipv6_prefix``
    network (one host with a /64 would otherwise fill every slot with its addresses)."""

    def __init__(self, per_peer: int, ipv6_prefix: int = 64) -> None:
        self._per_peer = per_peer  # 0: no limit
        self._prefix = ipv6_prefix
        self._open: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, ip: str) -> str | None:
        """The key to :meth:`release` later, or None if this network is at its limit."""
        key = ip_key(ip, self._prefix)
        count = self._open.get(key, 0)
        if self._per_peer and count >= self._per_peer:
            return None
        self._open[key] = count + 1
        return key

    def release(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)
