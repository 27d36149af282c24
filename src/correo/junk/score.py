"""The junk filter's pure decisions: what each signal scores, what a verdict says, which
IMAP moves train which way, and the rspamd exchange as data.

Signals, added up into one SpamAssassin-like score (``X-Spam-Score: N.N``):

* our own ``Authentication-Results`` (authserv-id = our host name) saying dmarc=fail
  or spf=fail: ``auth_fail_score`` each — results from anyone else are ignored, they
  can be forged (RFC 8601 §5);
* the peer IP listed in a configured DNS blocklist: ``dnsbl_score`` per zone;
* the recipient's token classifier: ``bayes_weight`` x probability, once it has seen
  ``bayes_min_messages`` of each kind;
* with ``rspamd_url``, rspamd's score replaces the sum (its own checks include these).

The lookups, the HTTP request and the token counts are the delivery service's
(:mod:`correo.delivery.junk`); everything here is arithmetic on what it found.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from correo.message.headers import drop_fields

__all__ = [
    "RSPAMD_PORT",
    "Verdict",
    "auth_score",
    "dnsbl_listed",
    "dnsbl_query",
    "rspamd_headers",
    "rspamd_score",
    "rspamd_target",
    "strip_spam_headers",
    "training_direction",
    "verdict",
]

_SPAM_FIELDS = (b"x-spam-score:", b"x-spam:")
_RESULT = re.compile(r"\b(spf|dmarc)\s*=\s*([a-z]+)", re.IGNORECASE)
RSPAMD_PORT = 11333  # rspamd's normal worker


@dataclass(frozen=True, slots=True)
class Verdict:
    """A message's score for one recipient, and the header fields that record it."""

    score: float
    spam: bool
    reasons: tuple[str, ...] = ()

    @property
    def percent(self) -> float:
        """For Sieve spamtest :percent (RFC 5235 §3.2): score 10 or more is 100%."""
        return min(100.0, max(0.0, self.score * 10.0))

    def header(self) -> bytes:
        tests = ",".join(self.reasons) or "none"
        return (
            f"X-Spam-Score: {self.score:.1f}\r\n"
            f"X-Spam: {'yes' if self.spam else 'no'} (tests={tests})\r\n"
        ).encode()


def verdict(score: float, reasons: Sequence[str], threshold: float) -> Verdict:
    """The verdict for a summed score: spam at or above ``threshold``."""
    score = round(score, 1)
    return Verdict(score, score >= threshold, tuple(reasons))


def strip_spam_headers(header: bytes) -> bytes:
    """Drop X-Spam-Score / X-Spam fields (and their folded lines) a sender supplied."""
    return drop_fields(header, _SPAM_FIELDS)


def _header_values(header: bytes, name: bytes) -> list[str]:
    text = header.replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    out: list[str] = []
    for line in text.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            out.append(value.decode("utf-8", "replace").strip())
    return out


def auth_score(header: bytes, hostname: str, per_fail: float) -> tuple[float, list[str]]:
    """dmarc=fail / spf=fail in Authentication-Results we added (RFC 8601 §5)."""
    hostname = hostname.lower()
    score, reasons = 0.0, []
    for value in _header_values(header, b"authentication-results"):
        authserv = re.sub(r"\([^)]*\)", "", value.partition(";")[0]).strip().split()
        if not authserv or authserv[0].lower() != hostname:
            continue
        for method, result in _RESULT.findall(value.partition(";")[2]):
            if result.lower() == "fail":
                score += per_fail
                reasons.append(f"{method.lower()}_fail")
    return score, reasons


def dnsbl_query(peer_ip: str, zone: str) -> str | None:
    """The name to look up for ``peer_ip`` in ``zone`` (RFC 5782 §2.1), None if no IP."""
    try:
        ip = ipaddress.ip_address(peer_ip)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        reversed_ip = ".".join(reversed(peer_ip.split(".")))
    else:  # RFC 5782 §2.4: IPv6 as reversed nibbles
        reversed_ip = ".".join(reversed(ip.exploded.replace(":", "")))
    return f"{reversed_ip}.{zone}"


def dnsbl_listed(answers: Iterable[str]) -> bool:
    """RFC 5782 §2.3: listings are 127.0.0.0/8; 127.255.255.x are error codes."""
    return any(a.startswith("127.") and not a.startswith("127.255.255.") for a in answers)


def training_direction(source: str, target: str, folder: str) -> bool | None:
    """True (spam) when a message enters the junk folder, False (ham) when it leaves it
    for anything but Trash, None otherwise: deleting spam from Junk is no ham signal."""
    if target == folder and source != folder:
        return True
    if source == folder and target not in (folder, "Trash"):
        return False
    return None


def rspamd_target(url: str) -> tuple[str, int, str] | None:
    """(host, port, path) of rspamd's ``/checkv2`` under ``url``; None unless plain http."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    try:
        port = parts.port or RSPAMD_PORT
    except ValueError:
        return None
    return parts.hostname, port, parts.path.rstrip("/") + "/checkv2"


def rspamd_headers(
    peer_ip: str, helo: str, sender: str, recipients: Sequence[str]
) -> list[tuple[str, str]]:
    """The request fields rspamd reads the SMTP envelope from."""
    headers: list[tuple[str, str]] = []
    if peer_ip:
        headers.append(("IP", peer_ip))
    if helo:
        headers.append(("Helo", helo))
    if sender:
        headers.append(("From", sender))
    headers += [("Rcpt", r) for r in recipients]
    return headers


def rspamd_score(body: bytes) -> float | None:
    """The score in a ``/checkv2`` reply; None when it has none (or not a finite one)."""
    try:
        score = float(json.loads(body)["score"])
    except (ValueError, KeyError, TypeError):
        return None
    return score if math.isfinite(score) else None
