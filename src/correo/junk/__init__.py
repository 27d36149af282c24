"""The junk filter: a verdict per message and recipient from authentication results,
DNS blocklists, a per-user token classifier and, optionally, rspamd.

``tokens`` and ``bayes`` are pure (no I/O); ``filter`` owns the effects (store counts,
DNS, HTTP) and is what delivery and IMAP call.
"""

from __future__ import annotations

from .bayes import spam_probability
from .filter import JunkFilter, Verdict, on_imap_move, strip_spam_headers
from .tokens import tokenize

__all__ = [
    "JunkFilter",
    "Verdict",
    "on_imap_move",
    "spam_probability",
    "strip_spam_headers",
    "tokenize",
]
