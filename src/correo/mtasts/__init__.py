"""MTA-STS (RFC 8461): outbound delivery only over authenticated TLS where a domain asks."""

from correo.mtasts.discovery import CachedPolicy, MtaSts, PolicyCache
from correo.mtasts.fetch import FetchError, fetch_policy
from correo.mtasts.policy import Policy, PolicyError, mx_matches, parse_policy, parse_record

__all__ = [
    "CachedPolicy",
    "FetchError",
    "MtaSts",
    "Policy",
    "PolicyCache",
    "PolicyError",
    "fetch_policy",
    "mx_matches",
    "parse_policy",
    "parse_record",
]
