"""Local delivery: the one path from an accepted message to the recipients' mailboxes.

SMTP (MX and submission), LMTP and the queue runner all end here.  For each local
account this runs the junk filter, then the account's active Sieve script, and turns
the resulting actions into store targets, queued redirects, rejections and vacation
replies.  Rules that keep mail safe:

* one ``store.deliver`` call covers every mailbox copy and every redirect, so the
  message is filed atomically and durably before the caller answers 250;
* any failure while deciding (a broken script, a store read error, a bad mailbox
  name) falls back to the implicit keep into INBOX and is logged — nothing is lost
  (RFC 5228 §2.10.6);
* the script reads the spooled bytes through bounded windows: the header section and
  at most ``[delivery] sieve_body_limit`` bytes for the body test, never the whole of
  a 100 MB message; the body test walks the MIME structure stored with the message and
  decodes each part once per message, and the script is parsed and run in a worker
  thread with a step and time budget, so no message stalls the event loop;
* redirect loops stop after ``max_redirect_hops`` ``X-Correo-Redirected`` markers, and
  the interpreter bounds redirects per run (flood).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from correo import sieve
from correo.config import Config
from correo.delivery.autoreply import rejection_message, vacation_message
from correo.delivery.facts import FactsBuilder, load_tree
from correo.delivery.junk import JunkFilter
from correo.delivery.sieverun import ScriptRunner, SieveMessage
from correo.delivery.textindex import INDEX_IN_HAND, index_delivered
from correo.directory import Directory
from correo.dns import Resolver
from correo.junk import Verdict, strip_spam_headers, tokenize
from correo.log import Logger
from correo.message.structure import shift_tree
from correo.store.api import (
    INBOX,
    DeliveryTarget,
    Envelope,
    MailboxError,
    MailStore,
    MessageFacts,
    QueuedRecipient,
    Spool,
    StoreError,
    spool_insert,
    spool_read,
)
from correo.ttlcache import Missing, TtlCache

if TYPE_CHECKING:
    from correo.metrics import Metrics
    from correo.webhooks.events import WebhookEvents

__all__ = [
    "DeliveryReport",
    "LocalDelivery",
    "LocalRecipient",
    "Outcome",
    "Refusal",
]

#: How rejections (RFC 5429) reach the sender: ``each`` per-recipient reply (LMTP),
#: ``all`` one reply when every recipient refuses, else a notice (SMTP), ``none``
#: always a notice (the queue runner, which has no client to answer).
Refusal = Literal["each", "all", "none"]

_HEADER_LIMIT = 256 * 1024  # the header section read for Sieve (HeaderCollector's bound)
_MARKER = b"X-Correo-Redirected"
_CHUNK = 64 * 1024


_CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class LocalRecipient:
    """One accepted local recipient: the account and the address as the envelope gave it."""

    account: str
    address: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The reply for one recipient (LMTP sends one each, RFC 2033 §4.2)."""

    code: int
    status: str
    text: str

    @property
    def ok(self) -> bool:
        return self.code < 300


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    outcomes: tuple[Outcome, ...]  # one per recipient, in the order given
    queue_id: int | None = None
    refused: Outcome | None = None  # refusal="all": every recipient refused; reply this


DELIVERED = Outcome(250, "2.0.0", "Delivered")
DEFERRED = Outcome(451, "4.3.0", "Temporary local error; try again later")
# RFC 3463 X.2.2 mailbox full; RFC 5321 §4.2.2 452 (insufficient storage, temporary) and
# 552 (exceeded storage allocation: this message can never fit)
OVER_QUOTA = Outcome(452, "4.2.2", "Mailbox full; try again later")
TOO_LARGE = Outcome(552, "5.2.2", "Message too large for the mailbox quota")


@dataclass
class _Plan:
    """What one account's delivery decided."""

    account: str
    address: str
    targets: list[DeliveryTarget] = field(default_factory=list)
    redirects: list[str] = field(default_factory=list)
    reject: sieve.Reject | None = None
    vacation: sieve.Vacation | None = None
    verdict: Verdict | None = None
    quarantine: bool = False  # DMARC p=quarantine (RFC 7489 §6.3): Junk unless Sieve says
    deferred: bool = False  # LMTP only: a temporary failure, this recipient gets 451


def _header_end(data: bytes) -> int:
    end = data.find(b"\r\n\r\n")
    return len(data) if end < 0 else end + 2


def _mailbox_name(name: str) -> str | None:
    """A Sieve fileinto name usable as a store mailbox, or None (RFC 5228 §4.1)."""
    if name.upper() == "INBOX":
        return INBOX
    if (
        not name
        or len(name) > 255
        or any(ord(c) < 32 or c == "\x7f" for c in name)
        or name.startswith("/")
        or name.endswith("/")
        or "//" in name
        or any(c in name for c in "*%")
    ):
        return None
    return name


class LocalDelivery:
    """Delivers accepted messages to local accounts (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        store: MailStore,
        directory: Directory,
        log: Logger,
        *,
        resolver: Resolver | None = None,
        wakeup: asyncio.Event | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics  # junk verdicts
        self.store = store
        self.directory = directory
        self.log = log
        self.wakeup = wakeup
        self.junk: JunkFilter | None = (
            JunkFilter(config.junk, store, log, hostname=config.hostname, resolver=resolver)
            if config.junk.enabled
            else None
        )
        self._sieve = ScriptRunner(store, log, _CACHE_SECONDS)
        # Every delivery asks; a change takes effect within _CACHE_SECONDS.
        self._mailbox_cache: TtlCache[str, set[str]] = TtlCache(_CACHE_SECONDS)
        # Whether an account has a quota limit at all: most have none, and then the
        # early quota answers need no read (the store's write still checks atomically).
        self._limited_cache: TtlCache[str, bool] = TtlCache(_CACHE_SECONDS)
        self._generation = -1  # the directory's, when the caches above were started
        #: Webhooks (received, delivered): set by the server when [[webhooks]] exist.
        self.events: WebhookEvents | None = None

    # -- the entry point ----------------------------------------------------------------

    async def deliver(
        self,
        spool: Spool,
        envelope: Envelope,
        recipients: Sequence[LocalRecipient],
        queued: Sequence[QueuedRecipient] = (),
        *,
        queue_skip: int = 0,
        facts: MessageFacts | None = None,
        refusal: Refusal = "all",
        check_peer: bool = True,
        session: str = "",
        quarantine: bool = False,
    ) -> DeliveryReport:
        """File the message for every recipient; raises StoreError/OSError if it cannot.

        ``spool`` starts with the Return-Path field (``queue_skip`` bytes) that final
        delivery adds; the spool is consumed (committed or discarded) in every case.
        ``check_peer``: look the envelope's peer up in DNS blocklists (not for LMTP,
        whose peer is the MTA handing the mail over).
        """
        self._drop_stale_caches()
        if not check_peer:
            envelope = replace(envelope, peer="")
        try:
            return await self._deliver(
                spool, envelope, recipients, queued, queue_skip, facts, refusal, session, quarantine
            )
        finally:
            spool.discard()  # no-op once the store owns it

    async def _deliver(
        self,
        spool: Spool,
        envelope: Envelope,
        recipients: Sequence[LocalRecipient],
        queued: Sequence[QueuedRecipient],
        queue_skip: int,
        facts: MessageFacts | None,
        refusal: Refusal,
        session: str,
        quarantine: bool = False,
    ) -> DeliveryReport:
        head = await spool_read(spool, 0, _HEADER_LIMIT)
        header_end = _header_end(head)
        header = head[:header_end]
        limit = self.config.delivery.sieve_body_limit
        window = head if limit <= len(head) else await spool_read(spool, 0, max(limit, header_end))
        hops = sum(
            1
            for line in header.split(b"\r\n")
            if line[: len(_MARKER) + 1].lower() == _MARKER.lower() + b":"
        )
        base_score, base_reasons, tokens = await self._message_signals(
            spool, envelope, header, window, recipients
        )
        stored = facts
        body = sieve.MessageBody(  # shared by every account's script, decoded once
            window,
            (lambda: load_tree(stored)) if stored is not None else None,
            sieve.BodyLimits(max_bytes=limit),
        )
        plans: dict[str, _Plan] = {}
        for r in recipients:
            if r.account in plans:
                continue
            plan = _Plan(r.account, r.address, quarantine=quarantine)
            plans[r.account] = plan
            try:
                await self._plan(
                    plan,
                    envelope,
                    window,
                    body,
                    spool.size,
                    hops,
                    base_score,
                    base_reasons,
                    tokens,
                    session,
                )
            except (StoreError, OSError) as exc:
                if refusal != "each":
                    raise
                # LMTP can defer one recipient (RFC 2033 §4.2): the MTA retries it later.
                self.log.error(
                    "delivery.deferred", session=session, account=r.account, error=str(exc)
                )
                plan.deferred = True
                plan.targets, plan.redirects, plan.reject, plan.vacation = [], [], None, None
            except Exception as exc:  # never lose a message: implicit keep (RFC 5228 §2.10.6)
                self.log.error(
                    "delivery.plan_failed", session=session, account=r.account, error=repr(exc)
                )
                plan.targets = [DeliveryTarget(r.account)]
                plan.redirects, plan.reject, plan.vacation = [], None, None

        # Refusals (RFC 5429): per recipient, as one reply, or as a notice afterwards.
        refused = {a for a, p in plans.items() if p.reject is not None}
        if refusal == "all" and refused and len(refused) == len(plans) and not queued:
            self.log.info("delivery.rejected", session=session, accounts=len(refused))
            return DeliveryReport(
                tuple(self._refusal(plans[r.account]) for r in recipients),
                refused=self._refusal(plans[recipients[0].account]),
            )

        if refusal == "all" and not queued:
            full = await self._all_over_quota(plans, spool.size)
            if full is not None:
                self.log.info("delivery.over_quota", session=session, accounts=len(plans))
                return DeliveryReport(tuple(full for _ in recipients), refused=full)
        # SMTP keeps a recipient refused at commit in the queue, whose local delivery
        # tries again (and bounces in the end); LMTP and the queue answer per recipient.
        fallback: dict[str, list[QueuedRecipient]] = {}
        if refusal == "all":
            for r in recipients:
                fallback.setdefault(r.account, []).append(QueuedRecipient(r.address))
        over: dict[str, bool] = {}

        # Group plans by the header block written in front of the message (X-Spam
        # verdicts can differ per recipient); almost always there is one group.
        groups: dict[bytes, list[_Plan]] = {}
        for plan in plans.values():
            groups.setdefault(self._prefix_fields(plan, hops), []).append(plan)
        queue_id: int | None = None
        first = True
        for fields_, members in groups.items():
            targets = [t for p in members for t in p.targets]
            redirects = [
                QueuedRecipient(addr, owner=p.account) for p in members for addr in p.redirects
            ]
            extra = list(queued) if first else []
            if not targets and not redirects and not extra:
                continue
            filed_facts: MessageFacts | None
            if fields_ and len(groups) == 1 and facts is not None:
                filed, filed_facts = await self._splice(
                    spool, queue_skip, fields_, header_end, facts
                )
            elif fields_:
                filed, filed_facts = await self._rewrite(spool, queue_skip, fields_, header_end)
            else:
                filed = spool if len(groups) == 1 else await self._copy(spool)
                filed_facts = facts
            # The indexer gets a small message in hand instead of reading it back.
            in_hand = (
                (filed.read(), filed_facts)
                if filed_facts is not None and filed.in_memory and filed.size <= INDEX_IN_HAND
                else None
            )
            delivered = await self.store.deliver(
                filed,
                envelope,
                targets,
                extra + redirects,
                queue_skip=queue_skip,
                facts=filed_facts,
                quota_fallback=fallback,
            )
            first = False
            over.update(delivered.over_quota)
            index_delivered(self.store, delivered, in_hand)  # SEARCH TEXT, in the background
            if self.events is not None:  # queued after the commit, before the reply
                await self.events.local_delivered(
                    envelope,
                    [(r.account, r.address) for r in recipients],
                    delivered,
                )
            if delivered.queue_id is not None:
                queue_id = delivered.queue_id
        if queue_id is not None and self.wakeup is not None:
            self.wakeup.set()

        outcomes: list[Outcome] = []
        for account in over:  # not delivered: its notices come with the retry
            plans[account].reject = plans[account].vacation = None
            self.log.info(
                "delivery.over_quota",
                session=session,
                account=account,
                queued=refusal == "all",
                permanent=over[account],
            )
        for r in recipients:
            plan = plans[r.account]
            if plan.deferred:
                outcomes.append(DEFERRED)
            elif r.account in over and refusal != "all":
                outcomes.append(TOO_LARGE if over[r.account] else OVER_QUOTA)
            elif plan.reject is not None and refusal == "each":
                outcomes.append(self._refusal(plan))
            else:
                outcomes.append(DELIVERED)
        # After the commit: replies and notices are best effort (logged on failure).
        for plan in plans.values():
            if plan.reject is not None and refusal != "each":
                await self._send_rejection(plan, envelope, header, session)
            if plan.vacation is not None:
                await self._send_vacation(plan, envelope, header, session)
        for plan in plans.values():
            plain = (
                [t.mailbox for t in plan.targets] == [INBOX]
                and not plan.redirects
                and plan.reject is None
                and plan.vacation is None
                and (plan.verdict is None or not plan.verdict.spam)
            )
            # One info line per message is smtp.accepted; say more only when Sieve or the
            # junk filter did something other than keeping the message in INBOX.
            (self.log.debug if plain else self.log.info)(
                "delivery.local",
                session=session,
                account=plan.account,
                mailboxes=",".join(t.mailbox for t in plan.targets) or "-",
                redirects=len(plan.redirects),
                rejected=plan.reject is not None,
                vacation=plan.vacation is not None,
                spam=None if plan.verdict is None else plan.verdict.score,
            )
        return DeliveryReport(tuple(outcomes), queue_id)

    async def _all_over_quota(self, plans: dict[str, _Plan], size: int) -> Outcome | None:
        """The reply when no account that files the message has room for it (SMTP
        then refuses the transaction, RFC 5321 §4.2.2): 552 when it could never fit."""
        permanent = True
        for plan in plans.values():
            counted = [t for t in plan.targets if t.quota]
            if not counted or plan.redirects or not await self.quota_limited(plan.account):
                return None
            # An early answer (a fit may come from the store's recent copy): the
            # delivery checks atomically; a refusal here was read fresh.
            verdict = await self.store.quota_refusal(
                plan.account, size * len(counted), len(counted)
            )
            if verdict is None:
                return None
            permanent = permanent and await self.store.quota_refusal(plan.account, size) is True
        return TOO_LARGE if permanent else OVER_QUOTA

    # -- deciding -----------------------------------------------------------------------

    async def _message_signals(
        self,
        spool: Spool,
        envelope: Envelope,
        header: bytes,
        window: bytes,
        recipients: Sequence[LocalRecipient],
    ) -> tuple[float | None, list[str], set[str]]:
        """Message-wide junk score (None: not scanned) and the classifier's tokens."""
        junk = self.junk
        if junk is None or not junk.applies(spool.size) or envelope.authenticated:
            return None, [], set()  # authenticated submissions are not scored
        if junk.settings.rspamd_url:
            data = await spool_read(spool)
            score = await junk.rspamd_score(
                data,
                peer_ip=envelope.peer,
                helo=envelope.helo,
                sender=envelope.sender,
                recipients=[r.address for r in recipients],
            )
            if score is not None:
                return score, ["rspamd"], set()
        auth, reasons = junk.auth_score(header)
        dnsbl, more = await junk.dnsbl_score(envelope.peer)
        if not await junk.any_trained({r.account for r in recipients}):
            # An untrained classifier has nothing to say: do not spend the tokenizing.
            return auth + dnsbl, reasons + more, set()
        data = window if len(window) >= spool.size else await spool_read(spool)
        return auth + dnsbl, reasons + more, tokenize(data, max_bytes=junk.settings.max_size)

    async def _plan(
        self,
        plan: _Plan,
        envelope: Envelope,
        window: bytes,
        body: sieve.MessageBody,
        size: int,
        hops: int,
        base_score: float | None,
        base_reasons: list[str],
        tokens: set[str],
        session: str,
    ) -> None:
        account = plan.account
        if base_score is not None and self.junk is not None:
            extra, why = 0.0, list[str]()
            if tokens:
                extra, why = await self.junk.bayes_score(account, tokens)
            plan.verdict = self.junk.verdict(base_score + extra, [*base_reasons, *why])
            if self.metrics is not None:
                self.metrics.junk_verdict(plan.verdict.spam)
        mailboxes = await self._mailboxes(account)
        default = self._default_mailbox(plan.address, mailboxes)
        implicit = default
        if plan.verdict is not None and plan.verdict.spam and self.junk is not None:
            implicit = self.junk.settings.folder
        if plan.quarantine:
            implicit = self.junk.settings.folder if self.junk is not None else "Junk"
        result = await self._sieve.run(
            sieve.Envelope(
                sender=envelope.sender,
                recipient=plan.address,
                original_recipient=plan.address,
                auth=envelope.authenticated,
            ),
            SieveMessage(window, size, plan.verdict, body),
            account=account,
            mailboxes=mailboxes,
            session=session,
        )
        targets: dict[str, DeliveryTarget] = {}

        def add(mailbox: str, flags: tuple[str, ...]) -> None:
            if mailbox not in targets:
                targets[mailbox] = DeliveryTarget(account, mailbox, flags)

        keep = result is None or result.implicit_keep
        if result is not None:
            for action in result.actions:
                match action:
                    case sieve.Keep(flags=flags):
                        add(default, flags)  # an explicit keep overrides the junk verdict
                    case sieve.FileInto(mailbox=name, flags=flags, create=create):
                        box = await self._fileinto(account, name, create, mailboxes, session)
                        add(box if box is not None else INBOX, flags)
                    case sieve.Redirect(address=address):
                        if hops >= self.config.delivery.max_redirect_hops:
                            self.log.warning(  # a loop: keep it here instead
                                "delivery.redirect_loop", session=session, account=account
                            )
                            keep = True
                        else:
                            plan.redirects.append(address)
                    case sieve.Discard():
                        pass
                    case sieve.Reject():
                        plan.reject = action
                    case sieve.Vacation():
                        plan.vacation = action
        if keep:
            flags = result.implicit_keep_flags if result is not None else ()
            add(implicit, flags)
        if implicit not in mailboxes and implicit in targets:
            await self._ensure_mailbox(account, implicit, "\\Junk")
        plan.targets = list(targets.values())

    def _default_mailbox(self, address: str, mailboxes: set[str]) -> str:
        """``user+folder@domain`` files into ``folder`` when it exists."""
        if not self.config.delivery.subaddress_folders:
            return INBOX
        local = address.rpartition("@")[0]
        delimiter = self.config.smtp.recipient_delimiter
        if not delimiter or delimiter not in local:
            return INBOX
        detail = local.split(delimiter, 1)[1]
        if detail in mailboxes:
            return detail
        for name in mailboxes:  # a case-insensitive match, since addresses are
            if name.lower() == detail.lower():
                return name
        return INBOX

    def _drop_stale_caches(self) -> None:
        """After a directory change an address may name a new account (``correo user del``
        then ``user add``): nothing cached under the old one's name may reach it."""
        if self.directory.generation != self._generation:
            self._generation = self.directory.generation
            self._sieve.clear()
            self._mailbox_cache = TtlCache(_CACHE_SECONDS)
            self._limited_cache = TtlCache(_CACHE_SECONDS)

    def forget(self, account: str) -> None:
        """Drop what is cached about an account (its script or folders just changed)."""
        self._sieve.forget(account)
        self._mailbox_cache.forget(account)
        self._limited_cache.forget(account)

    async def quota_limited(self, account: str) -> bool:
        """Whether the account has a storage or message limit (cached briefly).

        Only the early answers (RCPT, and the refusal before filing) skip their fresh
        read for an account with no limit; a limit set meanwhile is still enforced by
        the store's delivery, which checks atomically (RFC 9208 §5).
        """
        limited = self._limited_cache.get(account)
        if isinstance(limited, Missing):
            quota = await self.store.get_quota(account)
            limited = self._limited_cache.put(
                account, quota.storage is not None or quota.messages is not None
            )
        return limited

    async def _mailboxes(self, account: str) -> set[str]:
        """The account's mailbox names, cached briefly: every delivery asks."""
        names = self._mailbox_cache.get(account)
        if isinstance(names, Missing):
            listed = {m.name for m in await self.store.list_mailboxes(account)}
            names = self._mailbox_cache.put(account, listed | {INBOX})
        return names

    async def _fileinto(
        self, account: str, name: str, create: bool, mailboxes: set[str], session: str
    ) -> str | None:
        box = _mailbox_name(name)
        if box is None:
            self.log.warning("delivery.bad_mailbox", session=session, account=account, name=name)
            return None
        if box in mailboxes:
            return box
        if create or self.config.delivery.fileinto_create:  # RFC 5490 §3.2
            limit = self.config.limits.mailboxes_per_account
            if not await self._ensure_mailbox(account, box, None, limit=limit):
                self.log.warning(
                    "delivery.mailbox_limit", session=session, account=account, name=box
                )
                return None  # over the account's mailbox limit: implicit keep
            mailboxes.add(box)
            return box
        # RFC 5228 §4.1: a missing mailbox makes fileinto fail: implicit keep instead.
        self.log.info("delivery.no_mailbox", session=session, account=account, name=box)
        return None

    async def _ensure_mailbox(
        self, account: str, name: str, special: str | None, *, limit: int = 0
    ) -> bool:
        """False only when the mailbox would pass the account's mailbox limit."""
        try:
            await self.store.create_mailbox(account, name, special, limit=limit)
        except MailboxError as exc:
            return exc.code != "LIMIT"  # otherwise: created meanwhile
        return True

    # -- writing ------------------------------------------------------------------------

    def _prefix_fields(self, plan: _Plan, hops: int) -> bytes:
        out = b"" if plan.verdict is None else plan.verdict.header()
        if plan.redirects:
            out += _MARKER + f": {hops + 1} {plan.account}\r\n".encode()
        return out

    async def _rewrite(
        self, spool: Spool, queue_skip: int, fields_: bytes, header_end: int
    ) -> tuple[Spool, MessageFacts]:
        """A copy: Return-Path, our fields, the header without forged X-Spam, the body."""
        if spool.in_memory:
            return self._rewrite_now(spool, queue_skip, fields_, header_end)
        return await asyncio.to_thread(self._rewrite_now, spool, queue_skip, fields_, header_end)

    def _rewrite_now(
        self, spool: Spool, queue_skip: int, fields_: bytes, header_end: int
    ) -> tuple[Spool, MessageFacts]:
        out = self.store.new_spool()
        builder = FactsBuilder()
        try:
            header = spool.read(0, header_end)
            for data in (
                header[:queue_skip],
                fields_,
                strip_spam_headers(header[queue_skip:]),
            ):
                out.write(data)
                builder.feed(data)
            for chunk in spool.chunks(header_end, _CHUNK):
                out.write(chunk)
                builder.feed(chunk)
        except BaseException:
            out.discard()
            raise
        return out, builder.finish()

    async def _splice(
        self, spool: Spool, queue_skip: int, fields_: bytes, header_end: int, facts: MessageFacts
    ) -> tuple[Spool, MessageFacts]:
        """The common case in place: insert our fields after Return-Path, shift the offsets.

        Only when the sender supplied no X-Spam fields to remove; otherwise a full copy.
        """
        header = await spool_read(spool, queue_skip, header_end)
        if strip_spam_headers(header) != header:
            return await self._rewrite(spool, queue_skip, fields_, header_end)
        await spool_insert(spool, queue_skip, fields_)
        tree = shift_tree(json.loads(facts.tree), queue_skip, len(fields_))  # offsets only
        return spool, replace(facts, tree=json.dumps(tree, separators=(",", ":")).encode())

    async def _copy(self, spool: Spool) -> Spool:
        """Another spool with the same bytes (a file copy runs off the event loop)."""
        if spool.in_memory:
            return self._copy_now(spool)
        return await asyncio.to_thread(self._copy_now, spool)

    def _copy_now(self, spool: Spool) -> Spool:
        out = self.store.new_spool()
        try:
            for chunk in spool.chunks(0, _CHUNK):
                out.write(chunk)
        except BaseException:
            out.discard()
            raise
        return out

    # -- rejections and vacation replies ------------------------------------------------

    @staticmethod
    def _refusal(plan: _Plan) -> Outcome:
        reason = plan.reject.reason if plan.reject is not None else ""
        text = " ".join(reason.split())[:200] or "Message rejected"
        return Outcome(550, "5.7.1", text)  # RFC 5429 §2.1 / §2.2

    async def _send_rejection(
        self, plan: _Plan, envelope: Envelope, header: bytes, session: str
    ) -> None:
        if not envelope.sender or plan.reject is None:
            return  # RFC 5429 §2.1: never notify the null reverse-path
        data = rejection_message(
            to=envelope.sender,
            recipient=plan.address,
            reason=plan.reject.reason,
            original_header=header,
            hostname=self.config.hostname,
        )
        await self._send_generated(data, envelope.sender, "rejection", plan.account, session)

    async def _send_vacation(
        self, plan: _Plan, envelope: Envelope, header: bytes, session: str
    ) -> None:
        action = plan.vacation
        assert action is not None
        own = set(self.directory.owned_addresses(plan.account)) | {plan.account}

        def inspect() -> tuple[sieve.BytesMessageView, bool]:
            """The RFC 3834 / RFC 5230 §4.5 checks read every address in the sender's
            header (up to 256 KiB of them): a worker thread's job, not the loop's."""
            view = sieve.BytesMessageView(header + b"\r\n")
            return view, sieve.vacation_allowed(
                view,
                sieve.Envelope(envelope.sender, plan.address, plan.address),
                [*own, *action.addresses],
            )

        view, allowed = await asyncio.to_thread(inspect)
        if not allowed:
            self.log.info("delivery.vacation_skipped", session=session, account=plan.account)
            return
        try:
            if await self.store.vacation_seen(
                plan.account, action.handle, envelope.sender, action.days
            ):
                self.log.debug("delivery.vacation_suppressed", session=session)
                return
        except StoreError as exc:
            self.log.error("delivery.vacation_failed", session=session, error=str(exc))
            return
        subject = action.subject
        if subject is None:
            subject = "Auto: " + (view.header("subject") or ["Your message"])[0]
        msgid = next(iter(view.header("message-id")), None)
        refs = next(iter(view.header("references")), None)
        data = vacation_message(
            from_=self._vacation_from(plan, action, session),
            to=envelope.sender,
            subject=subject,
            reason=action.reason,
            mime=action.mime,
            in_reply_to=msgid,
            references=refs,
            hostname=self.config.hostname,
        )
        await self._send_generated(data, envelope.sender, "vacation", plan.account, session)

    def _vacation_from(self, plan: _Plan, action: sieve.Vacation, session: str) -> str:
        """The reply's From: ``:from`` only when it is one of the account's own
        addresses (RFC 5230 §4.2 leaves it to policy), else the account's address."""
        if action.from_ is None:
            return plan.account
        sender = sieve.parse_sender(action.from_)
        if sender is not None and self.directory.may_send_as(plan.account, sender[1]):
            return email.utils.formataddr(sender)  # written as checked, nothing more
        self.log.warning(
            "delivery.vacation_from_refused",
            session=session,
            account=plan.account,
            requested=action.from_[:200],
        )
        return plan.account

    async def _send_generated(
        self, data: bytes, to: str, kind: str, account: str, session: str
    ) -> None:
        """File a generated message from ``<>``: locally if ``to`` is ours, else queued."""
        envelope = Envelope(sender="", helo=self.config.hostname, body="8BITMIME")
        domain = to.rpartition("@")[2]
        spool = self.store.new_spool()
        try:
            resolution = (
                self.directory.resolve(to) if self.directory.is_local_domain(domain) else None
            )
            if resolution is not None and resolution.account is not None:
                prefix = b"Return-Path: <>\r\n"
                spool.write(prefix + data)
                await self.store.deliver(
                    spool, envelope, [DeliveryTarget(resolution.account)], queue_skip=len(prefix)
                )
            elif self.directory.is_local_domain(domain):
                spool.discard()
                return
            else:
                spool.write(data)
                await self.store.deliver(spool, envelope, [], [QueuedRecipient(to)])
                if self.wakeup is not None:
                    self.wakeup.set()
        except (StoreError, OSError) as exc:
            spool.discard()
            self.log.error(f"delivery.{kind}_failed", session=session, error=str(exc))
            return
        self.log.info(f"delivery.{kind}", session=session, account=account, to=to)
