"""The junk-filter service: scores messages, trains per-user classifiers.

Signals, added up into one SpamAssassin-like score (``X-Spam-Score: N.N``):

* our own ``Authentication-Results`` (authserv-id = our host name) saying dmarc=fail
  or spf=fail: ``auth_fail_score`` each — results from anyone else are ignored, they
  can be forged (RFC 8601 §5);
* the peer IP listed in a configured DNS blocklist: ``dnsbl_score`` per zone;
* the recipient's token classifier: ``bayes_weight`` x probability, once it has seen
  ``bayes_min_messages`` of each kind;
* with ``rspamd_url``, rspamd's score replaces the sum (its own checks include these).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from correo.config import JunkSettings
from correo.dns import DnsError, Resolver
from correo.log import Logger
from correo.message.headers import drop_fields
from correo.store.api import MailStore, StoreError
from correo.ttlcache import Missing, TtlCache
from correo.web.client import read_capped

from .bayes import spam_probability
from .tokens import tokenize

if TYPE_CHECKING:
    from correo.server.context import ServerContext

__all__ = ["JunkFilter", "Verdict", "on_imap_move", "strip_spam_headers"]

_SPAM_FIELDS = (b"x-spam-score:", b"x-spam:")
_RESULT = re.compile(r"\b(spf|dmarc)\s*=\s*([a-z]+)", re.IGNORECASE)
_MAX_TRAIN = 200  # messages trained per IMAP move (the rest are skipped, logged)
_MAX_RSPAMD_REPLY = 1024 * 1024  # bytes of an rspamd /checkv2 reply we read


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


class JunkFilter:
    def __init__(
        self,
        settings: JunkSettings,
        store: MailStore,
        log: Logger,
        *,
        hostname: str,
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.hostname = hostname.lower()
        self.resolver = resolver
        self._trained: TtlCache[str, bool] = TtlCache(5.0)  # training is rarely urgent

    def applies(self, size: int) -> bool:
        return self.settings.enabled and (
            not self.settings.max_size or size <= self.settings.max_size
        )

    # -- message-wide signals -----------------------------------------------------------

    def auth_score(self, header: bytes) -> tuple[float, list[str]]:
        """dmarc=fail / spf=fail in Authentication-Results we added (RFC 8601 §5)."""
        score, reasons = 0.0, []
        for value in _header_values(header, b"authentication-results"):
            authserv = re.sub(r"\([^)]*\)", "", value.partition(";")[0]).strip().split()
            if not authserv or authserv[0].lower() != self.hostname:
                continue
            for method, result in _RESULT.findall(value.partition(";")[2]):
                if result.lower() == "fail":
                    score += self.settings.auth_fail_score
                    reasons.append(f"{method.lower()}_fail")
        return score, reasons

    async def dnsbl_score(self, peer_ip: str) -> tuple[float, list[str]]:
        if not self.settings.dnsbl or not peer_ip or self.resolver is None:
            return 0.0, []
        try:
            ip = ipaddress.ip_address(peer_ip)
        except ValueError:
            return 0.0, []
        if isinstance(ip, ipaddress.IPv4Address):
            reversed_ip = ".".join(reversed(peer_ip.split(".")))
        else:  # RFC 5782 §2.4: IPv6 as reversed nibbles
            reversed_ip = ".".join(reversed(ip.exploded.replace(":", "")))
        score, reasons = 0.0, []
        for zone in self.settings.dnsbl:
            try:
                answers = await asyncio.wait_for(self.resolver.a(f"{reversed_ip}.{zone}"), 5.0)
            except (DnsError, TimeoutError):
                continue  # RFC 5782 §2.1: NXDOMAIN = not listed; failure = not listed
            # RFC 5782 §2.3: listings are 127.0.0.0/8; 127.255.255.x are error codes.
            if any(a.startswith("127.") and not a.startswith("127.255.255.") for a in answers):
                score += self.settings.dnsbl_score
                reasons.append(f"dnsbl:{zone}")
        return score, reasons

    async def rspamd_score(
        self, data: bytes, *, peer_ip: str, helo: str, sender: str, recipients: Sequence[str]
    ) -> float | None:
        """POST the message to rspamd's ``/checkv2``; None when it cannot answer."""
        url = urlsplit(self.settings.rspamd_url)
        if url.scheme != "http" or not url.hostname:
            return None
        headers: list[tuple[str, str]] = []
        if peer_ip:
            headers.append(("IP", peer_ip))
        if helo:
            headers.append(("Helo", helo))
        if sender:
            headers.append(("From", sender))
        headers += [("Rcpt", r) for r in recipients]
        target = URL.build(
            scheme="http",
            host=url.hostname,
            port=url.port or 11333,  # rspamd's normal worker
            path=url.path.rstrip("/") + "/checkv2",
        )
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.settings.rspamd_timeout)
                ) as session,
                session.post(target, data=data, headers=headers, allow_redirects=False) as reply,
            ):
                body = await read_capped(reply, _MAX_RSPAMD_REPLY)
                status = reply.status
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.log.warning("junk.rspamd_failed", error=str(exc) or type(exc).__name__)
            return None
        if status != 200:
            self.log.warning("junk.rspamd_failed", status=status)
            return None
        try:
            score = float(json.loads(body)["score"])
        except (ValueError, KeyError, TypeError):
            self.log.warning("junk.rspamd_failed", error="reply without a score")
            return None
        return score if math.isfinite(score) else None

    # -- per recipient ------------------------------------------------------------------

    async def any_trained(self, accounts: Iterable[str]) -> bool:
        """Whether any account has enough spam and ham learnt for Bayes to speak."""
        minimum = self.settings.bayes_min_messages
        for account in accounts:
            trained = self._trained.get(account)
            if isinstance(trained, Missing):
                try:
                    nspam, nham, _ = await self.store.junk_counts(account, ())
                except StoreError:
                    continue
                trained = self._trained.put(account, nspam >= minimum and nham >= minimum)
            if trained:
                return True
        return False

    async def bayes_score(self, account: str, tokens: set[str]) -> tuple[float, list[str]]:
        try:
            nspam, nham, counts = await self.store.junk_counts(account, tokens)
        except StoreError as exc:
            self.log.warning("junk.counts_failed", account=account, error=str(exc))
            return 0.0, []
        minimum = self.settings.bayes_min_messages
        if nspam < minimum or nham < minimum:
            return 0.0, []
        p = spam_probability(counts, nspam, nham)
        return round(self.settings.bayes_weight * p, 1), [f"bayes={p:.2f}"]

    def verdict(self, score: float, reasons: Sequence[str]) -> Verdict:
        score = round(score, 1)
        return Verdict(score, score >= self.settings.threshold, tuple(reasons))

    # -- training -----------------------------------------------------------------------

    async def train(self, account: str, data: bytes, spam: bool) -> int:
        """Learn one message; returns the number of tokens counted."""
        tokens = tokenize(data, max_bytes=self.settings.max_size or 512 * 1024)
        await self.store.junk_learn(account, tokens, spam)
        self._trained.forget(account)
        return len(tokens)


async def _read_prefix(store: MailStore, account: str, mailbox: str, uid: int, limit: int) -> bytes:
    data = bytearray()
    async for chunk in store.read_message(account, mailbox, uid, end=limit):
        data += chunk
    return bytes(data)


async def on_imap_move(
    ctx: ServerContext, account: str, source_mailbox: str, target_mailbox: str, uids: Sequence[int]
) -> None:
    """Train the account's classifier when a message enters (spam) or leaves (ham) Junk.

    ``uids`` are the messages' UIDs in ``target_mailbox``.  Moving to Trash is not a
    ham signal (deleting spam from Junk is common), so it trains nothing.
    """
    mda = ctx.mda
    if mda is None or mda.junk is None or not uids:
        return
    junk = mda.junk
    folder = junk.settings.folder
    if target_mailbox == folder and source_mailbox != folder:
        spam = True
    elif source_mailbox == folder and target_mailbox not in (folder, "Trash"):
        spam = False
    else:
        return
    limit = junk.settings.max_size or 512 * 1024
    trained = 0
    for uid in list(uids)[:_MAX_TRAIN]:
        try:
            data = await _read_prefix(ctx.store, account, target_mailbox, uid, limit)
            await junk.train(account, data, spam)
            trained += 1
        except (StoreError, OSError) as exc:
            ctx.log.warning("junk.train_failed", account=account, uid=uid, error=str(exc))
    ctx.log.info(
        "junk.trained", account=account, spam=spam, messages=trained, skipped=len(uids) - trained
    )
