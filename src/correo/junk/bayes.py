"""Robinson's token probabilities combined with Fisher's chi-square (pure arithmetic).

Gary Robinson, "A Statistical Approach to the Spam Problem" (2003): each token's
spamminess f(w) is a Bayesian-adjusted ratio that shrinks rare tokens toward 0.5; the
most interesting tokens are combined with Fisher's inverse chi-square so one strong
token cannot decide alone.  Result in [0, 1]: 0 ham, 1 spam, 0.5 unsure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["spam_probability", "token_probability"]

_S = 1.0  # strength of the prior
_X = 0.5  # prior probability of an unknown token
_MIN_DEVIATION = 0.1  # tokens this close to 0.5 say nothing
_MAX_TOKENS = 150


def token_probability(spam: int, ham: int, nspam: int, nham: int) -> float:
    """Robinson's f(w) for one token seen in ``spam``/``ham`` messages."""
    if nspam <= 0 or nham <= 0:
        return _X
    ps = min(1.0, spam / nspam)
    ph = min(1.0, ham / nham)
    if ps + ph == 0:
        return _X
    p = ps / (ps + ph)
    n = spam + ham
    return (_S * _X + n * p) / (_S + n)


def _chi2q(chi: float, freedom: int) -> float:
    """Survival function of chi-square with even ``freedom`` degrees (series form)."""
    m = chi / 2.0
    term = math.exp(-m)
    total = term
    for i in range(1, freedom // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def spam_probability(counts: Mapping[str, tuple[int, int]], nspam: int, nham: int) -> float:
    """Combined probability that a message with these known tokens is spam."""
    probs = [token_probability(s, h, nspam, nham) for s, h in counts.values()]
    probs = [p for p in probs if abs(p - 0.5) >= _MIN_DEVIATION]
    if not probs:
        return 0.5
    probs.sort(key=lambda p: abs(p - 0.5), reverse=True)
    probs = [min(max(p, 0.0001), 0.9999) for p in probs[:_MAX_TOKENS]]
    n = len(probs)
    ln_spam = sum(math.log(1.0 - p) for p in probs)
    ln_ham = sum(math.log(p) for p in probs)
    spamminess = 1.0 - _chi2q(-2.0 * ln_spam, 2 * n)
    hamminess = 1.0 - _chi2q(-2.0 * ln_ham, 2 * n)
    return (1.0 + spamminess - hamminess) / 2.0
