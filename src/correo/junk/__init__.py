"""The junk filter's pure part: a verdict per message and recipient from authentication
results, DNS blocklist answers, a per-user token classifier and, optionally, rspamd.

``tokens``, ``bayes`` and ``score`` do no I/O; the lookups, the rspamd request and the
token counts in the store are the delivery service's (:mod:`correo.delivery.junk`).
"""

from __future__ import annotations

from .bayes import spam_probability
from .score import Verdict, strip_spam_headers
from .tokens import tokenize

__all__ = ["Verdict", "spam_probability", "strip_spam_headers", "tokenize"]
