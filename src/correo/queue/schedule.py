"""When to try a queued recipient again: a pure function of attempts and ``now``.

The defaults follow Postfix's spirit (``minimal_backoff_time`` 5 min doubling to
``maximal_backoff_time`` 1 h, ``maximal_queue_lifetime`` 5 days, ``delay_warning_time``
4 h): polite to a server in trouble, quick to recover from a short outage.  Tests pass
a policy measured in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Decision", "RetryPolicy", "decide", "next_attempt", "should_warn"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial: float = 300.0  # first retry interval
    factor: float = 2.0  # each failure multiplies the interval
    maximum: float = 3600.0  # interval cap
    give_up: float = 5 * 86400.0  # queue lifetime: then bounce (RFC 5321 §4.5.4.1: 4-5 days)
    delay_warning: float = 4 * 3600.0  # 0 = never send a "delayed" DSN


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a recipient after a transient failure."""

    action: Literal["retry", "give_up"]
    at: float = 0.0


def next_attempt(policy: RetryPolicy, attempts: int, now: float) -> float:
    """``now`` plus the backoff after ``attempts`` failed tries (1 = the first failure)."""
    # RFC 5321 §4.5.4.1: at least 30 minutes is suggested; the interval grows with each try.
    exponent = max(0, attempts - 1)
    interval = policy.initial * policy.factor ** min(exponent, 64)
    return now + min(interval, policy.maximum)


def decide(policy: RetryPolicy, created: float, attempts: int, now: float) -> Decision:
    """Retry later, or give up once the message is older than the queue lifetime."""
    if now - created >= policy.give_up:
        return Decision("give_up")
    at = next_attempt(policy, attempts, now)
    # Do not sleep past the lifetime: one last try at the deadline, then bounce.
    return Decision("retry", min(at, created + policy.give_up))


def should_warn(policy: RetryPolicy, created: float, now: float, warned: bool) -> bool:
    """A "delayed" DSN is due once (RFC 3464 Action: delayed)."""
    return bool(policy.delay_warning) and not warned and now - created >= policy.delay_warning
