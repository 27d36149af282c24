"""MTA-STS (RFC 8461): outbound delivery only over authenticated TLS where a domain asks.

Pure: the record and policy grammar, MX matching and the caching rules. Discovery,
the HTTPS fetch and the cache file are the queue's (:mod:`correo.queue.mtasts`).
"""

from correo.mtasts.cache import CachedPolicy
from correo.mtasts.policy import Policy, PolicyError, mx_matches, parse_policy, parse_record

__all__ = [
    "CachedPolicy",
    "Policy",
    "PolicyError",
    "mx_matches",
    "parse_policy",
    "parse_record",
]
