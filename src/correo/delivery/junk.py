"""The junk-filter service: the effects behind the pure scores of :mod:`correo.junk`.

It asks the DNS blocklists (through the resolver it is given, each lookup bounded by
``[junk] dnsbl_timeout``), POSTs the message to rspamd, reads and updates the
per-account token counts in the store, and logs what failed.  Delivery scores with it;
IMAP moves into and out of the junk folder train it (:func:`train_on_move`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import aiohttp
from yarl import URL

from correo.config import JunkSettings
from correo.dns import DnsError, Resolver
from correo.httpclient import read_capped
from correo.junk import score as rules
from correo.junk.bayes import spam_probability
from correo.junk.score import Verdict
from correo.junk.tokens import tokenize
from correo.log import Logger
from correo.store.api import MailStore, StoreError
from correo.ttlcache import Missing, TtlCache

__all__ = ["JunkFilter", "train_on_move"]

_MAX_TRAIN = 200  # messages trained per IMAP move (the rest are skipped, logged)
_MAX_RSPAMD_REPLY = 1024 * 1024  # bytes of an rspamd /checkv2 reply we read


class JunkFilter:
    """Scores messages and trains the per-account classifiers (docs/mda.md)."""

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
        return rules.auth_score(header, self.hostname, self.settings.auth_fail_score)

    async def dnsbl_score(self, peer_ip: str) -> tuple[float, list[str]]:
        if not self.settings.dnsbl or not peer_ip or self.resolver is None:
            return 0.0, []
        score, reasons = 0.0, []
        for zone in self.settings.dnsbl:
            name = rules.dnsbl_query(peer_ip, zone)
            if name is None:
                return 0.0, []
            try:
                answers = await asyncio.wait_for(self.resolver.a(name), self.settings.dnsbl_timeout)
            except (DnsError, TimeoutError):
                continue  # RFC 5782 §2.1: NXDOMAIN = not listed; failure = not listed
            if rules.dnsbl_listed(answers):
                score += self.settings.dnsbl_score
                reasons.append(f"dnsbl:{zone}")
        return score, reasons

    async def rspamd_score(
        self, data: bytes, *, peer_ip: str, helo: str, sender: str, recipients: Sequence[str]
    ) -> float | None:
        """POST the message to rspamd's ``/checkv2``; None when it cannot answer."""
        where = rules.rspamd_target(self.settings.rspamd_url)
        if where is None:
            return None
        host, port, path = where
        target = URL.build(scheme="http", host=host, port=port, path=path)
        headers = rules.rspamd_headers(peer_ip, helo, sender, recipients)
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
        score = rules.rspamd_score(body)
        if score is None:
            self.log.warning("junk.rspamd_failed", error="reply without a score")
        return score

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
        return rules.verdict(score, reasons, self.settings.threshold)

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


async def train_on_move(
    junk: JunkFilter | None,
    store: MailStore,
    log: Logger,
    account: str,
    source_mailbox: str,
    target_mailbox: str,
    uids: Sequence[int],
) -> None:
    """Train the account's classifier when a message enters (spam) or leaves (ham) Junk.

    ``uids`` are the messages' UIDs in ``target_mailbox``.  Moving to Trash is not a
    ham signal (deleting spam from Junk is common), so it trains nothing.
    """
    if junk is None or not uids:
        return
    spam = rules.training_direction(source_mailbox, target_mailbox, junk.settings.folder)
    if spam is None:
        return
    limit = junk.settings.max_size or 512 * 1024
    trained = 0
    for uid in list(uids)[:_MAX_TRAIN]:
        try:
            data = await _read_prefix(store, account, target_mailbox, uid, limit)
            await junk.train(account, data, spam)
            trained += 1
        except (StoreError, OSError) as exc:
            log.warning("junk.train_failed", account=account, uid=uid, error=str(exc))
    log.info(
        "junk.trained", account=account, spam=spam, messages=trained, skipped=len(uids) - trained
    )
